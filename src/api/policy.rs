//! `Policy`: one Rego module attached to a Stack or a System.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Condition;

/// A Policy: one Rego module (and optional Rego tests) attached to a Stack or System in the same namespace.
#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "edict.dev",
    version = "v1alpha1",
    kind = "Policy",
    namespaced,
    shortname = "pol",
    category = "edict",
    status = "PolicyStatus",
    doc = "A Policy: one Rego module (rego.v1) attached to a Stack or a System in the same namespace, with optional Rego tests (test_ rules).",
    printcolumn = r#"{"name":"Target","type":"string","jsonPath":".spec.target.name"}"#,
    printcolumn = r#"{"name":"Kind","type":"string","jsonPath":".spec.target.kind"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Package","type":"string","jsonPath":".status.package"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason","priority":1}"#,
    printcolumn = r#"{"name":"Message","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message","priority":1}"#
)]
#[serde(rename_all = "camelCase")]
pub struct PolicySpec {
    /// The Stack or System (in this namespace) the Policy belongs to.
    pub target: PolicyTarget,
    /// A sentence for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The Rego module (Rego v1). Stack policies use packages under `stacks.<stack_id>`; System policies
    /// any package not under `stacks`, `main`, `system`, `context` or `metadata`. `enforce` and `deny`
    /// rules decide, `monitor` rules are reported; a package ending in `system.log` contributes `mask` rules.
    #[schemars(length(min = 1))]
    pub rego: String,
    /// Optional Rego tests for the module (`test_` rules), run before any bundle containing it is published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests: Option<String>,
}

/// What a Policy is attached to.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyTarget {
    /// `Stack` or `System`.
    pub kind: TargetKind,
    /// The name of the Stack or System, in the Policy's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// The kinds a Policy can attach to.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TargetKind {
    /// A Stack.
    Stack,
    /// A System.
    System,
}

/// Counts of a Policy's Rego tests.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TestSummary {
    /// Tests that passed.
    pub passed: u32,
    /// Tests that failed or errored.
    pub failed: u32,
}

/// What edict observed about a Policy.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling`, `Stalled`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The package the module declares (`data.…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// Results of the Policy's Rego tests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests: Option<TestSummary>,
}
