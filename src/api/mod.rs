//! The custom resources of `edict.dev/v1alpha1`: data only, no behaviour.
//!
//! Field doc comments become `kubectl explain` text, so they are written for users.

pub mod conditions;
pub mod policy;
pub mod stack;
pub mod system;
pub mod tenant;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use conditions::{Condition, ConditionStatus};
pub use policy::{Policy, PolicySpec, PolicyStatus, PolicyTarget, TargetKind, TestSummary};
pub use stack::{Stack, StackSpec, StackStatus};
pub use system::{System, SystemSpec, SystemStatus};
pub use tenant::{
    DynamoDbStorage, KmsStorage, Retention, S3Storage, Storage, Tenant, TenantSpec, TenantStatus,
};

/// The API group of every edict kind.
pub const GROUP: &str = "edict.dev";
/// The API version of every edict kind.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` as written in manifests.
pub const API_VERSION: &str = "edict.dev/v1alpha1";

/// The kind of software a System is, which fixes the shape of its OPA's answer.
#[derive(
    Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
#[serde(rename_all = "lowercase")]
pub enum SystemType {
    /// A Kubernetes admission controller: `data.main.main` is an `AdmissionReview`.
    #[default]
    Kubernetes,
    /// An Envoy external authorization filter: `data.main.main` has `allowed`, `headers`, `http_status`, `body`.
    Envoy,
    /// Anything else: `data.main.main` is the structured outcome itself.
    Custom,
}

impl SystemType {
    /// The wire name (`kubernetes`, `envoy`, `custom`).
    pub fn as_str(self) -> &'static str {
        match self {
            SystemType::Kubernetes => "kubernetes",
            SystemType::Envoy => "envoy",
            SystemType::Custom => "custom",
        }
    }
}

impl std::fmt::Display for SystemType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a Stack's or System's `enforce` and `deny` rules decide, or are only reported.
#[derive(
    Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
#[serde(rename_all = "lowercase")]
pub enum Enforcement {
    /// Decisions are enforced.
    #[default]
    Enforce,
    /// Dry run: enforce and deny decisions are reported as monitored and never decide.
    Monitor,
}

impl Enforcement {
    /// The wire name (`enforce`, `monitor`).
    pub fn as_str(self) -> &'static str {
        match self {
            Enforcement::Enforce => "enforce",
            Enforcement::Monitor => "monitor",
        }
    }
}

/// The answer when no rule decides.
#[derive(
    Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
#[serde(rename_all = "lowercase")]
pub enum DefaultDecision {
    /// Fail closed: deny when nothing decides.
    #[default]
    Deny,
    /// Fail open: allow when nothing decides.
    Allow,
}

impl DefaultDecision {
    /// Whether the default lets the request through.
    pub fn allowed(self) -> bool {
        matches!(self, DefaultDecision::Allow)
    }
}

/// Label selector as written in a Stack: label key → glob patterns.
pub type SelectorTerms = std::collections::BTreeMap<String, Vec<String>>;

/// Schema for a free-form JSON object (`x-kubernetes-preserve-unknown-fields`).
pub(crate) fn free_form_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}
