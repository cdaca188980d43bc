//! kstatus-compatible conditions.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The three condition types every edict object reports (kstatus).
pub const READY: &str = "Ready";
/// Work is under way (or being retried after a transient failure).
pub const RECONCILING: &str = "Reconciling";
/// The object cannot make progress until its spec (or something it references) changes.
pub const STALLED: &str = "Stalled";
/// A System only: every OPA that reports runs the live revision. `Ready` keeps its meaning
/// (built, checked and published), so kstatus tools are not confused by a slow rollout.
pub const LIVE: &str = "Live";

/// Status of a condition.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// Not known yet.
    Unknown,
}

/// One observation about an object, as in `metav1.Condition`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`, `Reconciling` or `Stalled`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// A CamelCase word saying why, for machines (e.g. `InvalidRego`, `Published`).
    pub reason: String,
    /// What happened and where, for people (file:line:col for Rego errors).
    #[serde(default)]
    pub message: String,
    /// The `metadata.generation` this condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When `status` last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}
