//! `Stack`: rules that apply to many Systems at once.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Condition, Enforcement, SelectorTerms, SystemType};

/// A Stack: rules for every System of its tenant and type that its selector picks. Stack rules outrank System rules.
#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "edict.dev",
    version = "v1alpha1",
    kind = "Stack",
    namespaced,
    shortname = "stk",
    category = "edict",
    status = "StackStatus",
    doc = "A Stack: rules that apply to every System of its tenant and type that its label selector picks. Lives in the tenant's admin namespace; its policies use packages under stacks.<name with - replaced by _>.",
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.type"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Systems","type":"integer","jsonPath":".status.systems"}"#,
    printcolumn = r#"{"name":"Policies","type":"integer","jsonPath":".status.policies"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason","priority":1}"#,
    printcolumn = r#"{"name":"Message","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message","priority":1}"#,
    validation = "size(self.metadata.name) <= 63 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')"
)]
#[serde(rename_all = "camelCase")]
pub struct StackSpec {
    /// The type of System this Stack applies to.
    #[serde(rename = "type")]
    pub type_: SystemType,
    /// A sentence for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Label key → glob patterns (OPA `glob.match` with separators `.`, `_`, `-`). A System matches when it
    /// has every key and, for each key, the list is empty or one pattern matches the value.
    /// An empty selector selects every System of the tenant and type.
    #[serde(default)]
    pub selector: SelectorTerms,
    /// Same form as `selector`; Systems it matches are removed. Empty excludes nothing.
    #[serde(default, skip_serializing_if = "SelectorTerms::is_empty")]
    pub exclude: SelectorTerms,
    /// `enforce` (default) or `monitor` (dry run: this Stack's decisions are only reported).
    #[serde(default)]
    pub enforcement: Enforcement,
    /// For `kubernetes` Stacks: mask Secret data and annotations in decision logs (default true).
    #[serde(default = "default_true")]
    pub default_masks: bool,
}

fn default_true() -> bool {
    true
}

/// What edict observed about a Stack.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StackStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling`, `Stalled`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Number of Systems the Stack selects.
    #[serde(default)]
    pub systems: u32,
    /// Number of Policies attached to the Stack.
    #[serde(default)]
    pub policies: u32,
}
