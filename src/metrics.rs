//! The operator's Prometheus metrics (`/metrics`): reconciles and their durations, errors by
//! category, bundle sizes and publish latency.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::engine::problem::Reason;

/// A reconcile's outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    /// `System`, `Cleanup`, `Wiring`.
    pub kind: String,
    /// `published`, `unchanged`, `invalid`, `failed`, `applied`, `retired`.
    pub result: String,
}

/// An error's category.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Category {
    /// `rego`, `selector`, `tenancy`, `reference`, `storage`, `identity`, `kubernetes`, `test`.
    pub category: String,
}

/// Objects known, by kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Kind {
    /// `Tenant`, `Stack`, `System`, `Policy`.
    pub kind: String,
}

/// Every metric edict exports. Cheap to clone (shared handles).
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Arc<Registry>,
    reconciles: Family<Outcome, Counter>,
    errors: Family<Category, Counter>,
    round: Histogram,
    publish: Histogram,
    bundle_bytes: Histogram,
    objects: Family<Kind, Gauge>,
    reports: Family<Report, Counter>,
    acknowledge: Histogram,
}

/// Labels of `edict_opa_reports_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Report {
    /// `status` or `decisions`.
    pub kind: String,
    /// `accepted`, `rejected`, `busy` (429), `stored`, `duplicate` or `remasked`.
    pub result: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh set of metrics.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("edict");
        let reconciles = Family::<Outcome, Counter>::default();
        let errors = Family::<Category, Counter>::default();
        let round = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let publish = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let bundle_bytes = Histogram::new(exponential_buckets(1024.0, 2.0, 16));
        let objects = Family::<Kind, Gauge>::default();
        registry.register("reconciles", "Reconciles by kind and result", reconciles.clone());
        registry.register("errors", "Problems found by category", errors.clone());
        registry.register(
            "reconcile_duration_seconds",
            "Time to rebuild, publish and wire a batch of changes",
            round.clone(),
        );
        registry.register("publish_duration_seconds", "Time to publish one System's bundle", publish.clone());
        registry.register("bundle_bytes", "Uncompressed size of each bundle built", bundle_bytes.clone());
        registry.register("objects", "Objects known, by kind", objects.clone());
        let reports = Family::<Report, Counter>::default();
        let acknowledge = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "opa_reports",
            "OPA status reports and decisions: accepted, rejected, busy (429), stored, duplicate, re-masked",
            reports.clone(),
        );
        registry.register(
            "decision_batch_ack_seconds",
            "From a decision batch received to its acknowledgement (stored)",
            acknowledge.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            reconciles,
            errors,
            round,
            publish,
            bundle_bytes,
            objects,
            reports,
            acknowledge,
        }
    }

    /// Count a reconcile.
    pub fn reconciled(&self, kind: &str, result: &str) {
        self.reconciles.get_or_create(&Outcome { kind: kind.into(), result: result.into() }).inc();
    }

    /// Count an object going from Ready (or new) to failing, by its condition's reason.
    pub fn error(&self, reason: &str) {
        self.errors.get_or_create(&Category { category: category(reason).into() }).inc();
    }

    /// Time a batch.
    pub fn round(&self, took: Duration) {
        self.round.observe(took.as_secs_f64());
    }

    /// Time a publish and record the bundle's size.
    pub fn published(&self, took: Duration, bundle_bytes: usize) {
        self.publish.observe(took.as_secs_f64());
        self.bundle_bytes.observe(bundle_bytes as f64);
    }

    /// Set how many objects of a kind are known.
    pub fn objects(&self, kind: &str, count: usize) {
        self.objects.get_or_create(&Kind { kind: kind.into() }).set(count as i64);
    }

    /// Count OPA reports (`kind` `status` or `decisions`) by result.
    pub fn reports(&self, kind: &str, result: &str, n: u64) {
        if n > 0 {
            self.reports.get_or_create(&Report { kind: kind.into(), result: result.into() }).inc_by(n);
        }
    }

    /// Time a decision batch's acknowledgement.
    pub fn acknowledged(&self, took: Duration) {
        self.acknowledge.observe(took.as_secs_f64());
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The category of a condition reason, for `edict_errors_total`.
pub fn category(reason: &str) -> &'static str {
    let Some(reason) = Reason::ALL.iter().find(|r| r.as_str() == reason) else { return "other" };
    match reason {
        Reason::InvalidManifest | Reason::UnknownKind | Reason::DuplicateName => "manifest",
        Reason::InvalidRego | Reason::PackageOutsideRoot | Reason::InvalidMask => "rego",
        Reason::TestFailed => "test",
        Reason::InvalidSelector => "selector",
        Reason::NoTenant | Reason::AmbiguousTenant | Reason::WrongNamespace | Reason::UnknownOpaVersion => {
            "tenancy"
        }
        Reason::MissingTarget | Reason::DependencyFailed => "reference",
        Reason::Unavailable => "storage",
        Reason::MissingServiceAccount | Reason::InvalidIdentity => "identity",
        Reason::Forbidden | Reason::Rejected => "kubernetes",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_what_was_recorded() {
        let m = Metrics::new();
        m.reconciled("System", "published");
        m.reconciled("System", "published");
        m.error("InvalidRego");
        m.error("SomethingNew");
        m.published(Duration::from_millis(30), 4096);
        m.objects("System", 3);
        m.reports("decisions", "stored", 100);
        m.reports("decisions", "busy", 0);
        m.acknowledged(Duration::from_millis(3));
        let text = m.render();
        assert!(text.contains(r#"edict_opa_reports_total{kind="decisions",result="stored"} 100"#), "{text}");
        assert!(!text.contains(r#"result="busy""#), "nothing counted, nothing shown: {text}");
        assert!(text.contains("edict_decision_batch_ack_seconds_count 1"), "{text}");
        assert!(text.contains(r#"edict_reconciles_total{kind="System",result="published"} 2"#), "{text}");
        assert!(text.contains(r#"edict_errors_total{category="rego"} 1"#), "{text}");
        assert!(text.contains(r#"edict_errors_total{category="other"} 1"#), "{text}");
        assert!(text.contains("edict_publish_duration_seconds_count 1"), "{text}");
        assert!(text.contains("edict_bundle_bytes_sum 4096.0"), "{text}");
        assert!(text.contains(r#"edict_objects{kind="System"} 3"#), "{text}");
    }
}
