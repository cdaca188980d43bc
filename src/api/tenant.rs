//! `Tenant`: the isolation unit.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Condition;

/// A Tenant owns a set of namespaces, an admin namespace for its Stacks, and (later) its storage and keys.
#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "edict.dev",
    version = "v1alpha1",
    kind = "Tenant",
    shortname = "tnt",
    category = "edict",
    status = "TenantStatus",
    doc = "A Tenant: the isolation unit of edict. It names the namespaces whose Systems it governs and the admin namespace that holds its Stacks.",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Admin","type":"string","jsonPath":".spec.adminNamespace"}"#,
    printcolumn = r#"{"name":"Systems","type":"integer","jsonPath":".status.systems"}"#,
    printcolumn = r#"{"name":"Stacks","type":"integer","jsonPath":".status.stacks"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct TenantSpec {
    /// Namespaces whose Systems belong to this tenant, as glob patterns (`team-a-*`; `**` crosses `-`).
    /// A namespace must belong to exactly one Tenant.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// The namespace holding the tenant's Stacks. It belongs to the tenant too.
    #[schemars(length(min = 1, max = 63))]
    pub admin_namespace: String,
    /// How much bundle history to keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
}

/// History kept per System.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Retention {
    /// Number of bundle revisions kept per System for rollback (the live one included).
    #[schemars(range(min = 1, max = 1000))]
    pub revisions: u32,
}

/// What edict observed about a Tenant.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TenantStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling`, `Stalled`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Number of Systems in the tenant's namespaces.
    #[serde(default)]
    pub systems: u32,
    /// Number of Stacks in the tenant's admin namespace.
    #[serde(default)]
    pub stacks: u32,
}
