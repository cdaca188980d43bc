//! `System`: one software system governed by one OPA configuration.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Condition, DefaultDecision, Enforcement, SystemType};

/// A System: one OPA configuration (a cluster's admission control, a service's Envoy, ...).
#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "edict.dev",
    version = "v1alpha1",
    kind = "System",
    namespaced,
    shortname = "sys",
    category = "edict",
    status = "SystemStatus",
    doc = "A System: one software system governed by one OPA configuration. edict compiles its Policies and those of every Stack that selects it into one bundle (signed when the Tenant has a signing key). Only tenant admins create or delete Systems or change their labels and features; system owners edit the rest.",
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.type"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Revision","type":"string","description":"The live bundle's revision, shortened to 12 hex digits.","jsonPath":".status.shortRevision"}"#,
    printcolumn = r#"{"name":"Live","type":"string","description":"OPAs on the live revision / OPAs reporting.","jsonPath":".status.opas.live"}"#,
    printcolumn = r#"{"name":"Stacks","type":"integer","jsonPath":".status.stackCount"}"#,
    printcolumn = r#"{"name":"Policies","type":"integer","jsonPath":".status.policies"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Full Revision","type":"string","description":"The live bundle's revision (sha256 of its content).","jsonPath":".status.revision","priority":1}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason","priority":1}"#,
    printcolumn = r#"{"name":"Message","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message","priority":1}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SystemSpec {
    /// What kind of system this is; fixes the package root and the response shape.
    #[serde(rename = "type")]
    pub type_: SystemType,
    /// A sentence for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `enforce` (default) or `monitor` (dry run: this System's decisions are only reported).
    #[serde(default)]
    pub enforcement: Enforcement,
    /// The answer when no rule decides: `deny` (default, fail closed) or `allow`.
    #[serde(default)]
    pub default_decision: DefaultDecision,
    /// Free-form facts about the system that Stack rules read as
    /// `data.metadata[data.context.system_id].features`. Reserved to tenant admins.
    #[serde(default)]
    #[schemars(schema_with = "super::free_form_object")]
    pub features: serde_json::Map<String, serde_json::Value>,
    /// Free-form options passed to the policies as `data.context.options`.
    #[serde(default)]
    #[schemars(schema_with = "super::free_form_object")]
    pub options: serde_json::Map<String, serde_json::Value>,
    /// The ServiceAccount (in this namespace) the System's OPA runs as. When the Tenant has
    /// `identity`, edict annotates it with the System's IAM role (IRSA); edict never creates it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
}

/// What edict observed about a System.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SystemStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling`, `Stalled` (kstatus: `Ready` means built, checked and published),
    /// and `Live` when the System's OPAs report to edict: `True` when every reporting OPA runs
    /// the live revision, `False` with `Progressing` or `Degraded`, `Unknown` with `NoOpas`.
    /// `kubectl wait --for=condition=Live system/NAME` waits for a rollout.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The revision of the live bundle (sha256 of its content, 64 hex digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The first 12 hex digits of `revision`, as `kubectl get` shows it (like a short Git commit
    /// id; `edict rollback --to` accepts it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_revision: Option<String>,
    /// Where OPA downloads the bundle: `s3://<bucket>/<prefix>/bundles/…` for a Tenant with
    /// storage, the path on edict's bundle API (`bundles/…`) otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<String>,
    /// The Stacks that select this System (`namespace/name`).
    #[serde(default)]
    pub stacks: Vec<String>,
    /// Number of bound Stacks.
    #[serde(default)]
    pub stack_count: u32,
    /// Number of Policies attached to the System itself.
    #[serde(default)]
    pub policies: u32,
    /// The ConfigMap (in the System's namespace) holding its OPA configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<String>,
    /// The ServiceAccount edict annotated with the IAM role (IRSA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// The IAM role the System's OPA assumes to read its bundles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// A digest of what edict applied beside the bundle (ConfigMap, annotation, role), so that a
    /// restarted operator applies them again only when they differ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wiring_digest: Option<String>,
    /// What the System's OPAs report (OPA's Status API), when they report to edict; the `Live`
    /// condition says whether every reporting OPA runs the live revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opas: Option<OpaFleetStatus>,
}

/// How a System's OPAs stand against its live revision, from their status reports.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OpaFleetStatus {
    /// `<OPAs on the live revision>/<OPAs reporting>`, as `kubectl get` shows it (`3/3`).
    pub live: String,
    /// OPAs that reported within the last three reporting intervals (silent ones age out).
    pub reporting: u32,
    /// Reporting OPAs whose active revision is the live one.
    pub on_live_revision: u32,
    /// Reporting OPAs not on the live revision whose last download or activation failed.
    pub failed: u32,
    /// The newest failure among them: OPA's code and message, with the OPA's id
    /// (e.g. `rego_type_error: count: invalid argument(s) (policy.rego:4:7) (OPA 3f2a…)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest_error: Option<String>,
}
