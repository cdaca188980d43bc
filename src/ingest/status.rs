//! OPA's Status API report (`POST /status`), parsed for the few fields edict uses.
//!
//! A real report is 57–60 KB, almost all of it `metrics.prometheus`. The types here name only
//! `labels` and, per bundle, the revision, activation and download times and the error; serde
//! skips everything else while it reads (`metrics`, `plugins`, `decision_logs`, error
//! `details`, ...) without building it. Strings borrow from the request body unless they
//! contain escapes. [`StatusReport::summary`] then copies out the small, owned
//! [`ReportSummary`] that the fleet keeps.
//!
//! Accepted shapes: OPA 0.6x–1.x send `bundles.<name>`; OPA before multi-bundle support sent
//! one `bundle` object, read here as a bundle of that name. A report with no bundles is what OPA
//! sends at start (its bundle plugin is `NOT_READY`) and is valid.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;

/// Go's zero `time.Time`, which OPA reports for a download or activation that never happened.
const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// The parts of a Status API report edict reads, borrowing from the body.
#[derive(Debug, Deserialize)]
pub struct StatusReport<'a> {
    /// The OPA's labels: `id` and `version` from OPA, `system_id` and `tenant` from the
    /// configuration edict renders.
    #[serde(borrow)]
    pub labels: Option<Labels<'a>>,
    /// Each configured bundle's state, by bundle name.
    #[serde(borrow, default)]
    pub bundles: BTreeMap<Text<'a>, BundleStatus<'a>>,
    /// The single bundle of OPAs that predate `bundles` (still accepted).
    #[serde(borrow, default)]
    pub bundle: Option<BundleStatus<'a>>,
}

/// The labels of a report.
#[derive(Debug, Deserialize)]
pub struct Labels<'a> {
    /// The OPA instance's unique id (a UUID OPA generates at start).
    #[serde(borrow)]
    pub id: Option<Text<'a>>,
    /// `<cluster>/<namespace>/<name>` of the System this OPA serves (set by edict's config).
    #[serde(borrow)]
    pub system_id: Option<Text<'a>>,
    /// The Tenant of that System (set by edict's config).
    #[serde(borrow)]
    pub tenant: Option<Text<'a>>,
    /// OPA's version (`1.9.0`).
    #[serde(borrow)]
    pub version: Option<Text<'a>>,
}

/// One bundle's state as an OPA reports it.
#[derive(Debug, Deserialize)]
pub struct BundleStatus<'a> {
    /// The bundle name (also the key in `bundles`).
    #[serde(borrow)]
    pub name: Option<Text<'a>>,
    /// The `.manifest` revision of the bundle the OPA runs.
    #[serde(borrow)]
    pub active_revision: Option<Text<'a>>,
    /// When the OPA last activated a bundle (RFC 3339).
    #[serde(borrow)]
    pub last_successful_activation: Option<Text<'a>>,
    /// When the OPA last downloaded a bundle (RFC 3339).
    #[serde(borrow)]
    pub last_successful_download: Option<Text<'a>>,
    /// Set when the last download or activation failed (`bundle_error`, ...).
    #[serde(borrow)]
    pub code: Option<Text<'a>>,
    /// What failed, in OPA's words.
    #[serde(borrow)]
    pub message: Option<Text<'a>>,
    /// The individual errors (compile errors with their location), when OPA has them.
    #[serde(borrow, default)]
    pub errors: Vec<ErrorDetail<'a>>,
}

/// One of OPA's errors (`ast.Error`): code, message, location.
#[derive(Debug, Deserialize)]
pub struct ErrorDetail<'a> {
    /// `rego_type_error`, `rego_parse_error`, ...
    #[serde(borrow)]
    pub code: Option<Text<'a>>,
    /// What is wrong.
    #[serde(borrow)]
    pub message: Option<Text<'a>>,
    /// Where, when OPA knows.
    #[serde(borrow)]
    pub location: Option<LocationDetail<'a>>,
}

/// An error's place in a bundle file.
#[derive(Debug, Deserialize)]
pub struct LocationDetail<'a> {
    /// The file in the bundle.
    #[serde(borrow)]
    pub file: Option<Text<'a>>,
    /// 1-based line.
    pub row: Option<u32>,
    /// 1-based column.
    pub col: Option<u32>,
}

/// Why a report is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StatusError {
    /// The body is not JSON of the Status API's shape.
    #[error("not an OPA status report: {0}")]
    Malformed(String),
    /// No `labels` object, so the OPA cannot be identified.
    #[error("status report has no labels: OPA always sends labels.id and labels.version")]
    NoLabels,
    /// A label edict needs is missing.
    #[error("status report has no labels.{0}{hint}", hint = label_hint(.0))]
    MissingLabel(&'static str),
}

fn label_hint(label: &str) -> &'static str {
    if label == "system_id" {
        " (the OPA configuration edict renders sets it; this OPA is not configured by edict)"
    } else {
        ""
    }
}

/// What the fleet keeps of one report: owned and small.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportSummary {
    /// The OPA instance id (`labels.id`).
    pub opa_id: String,
    /// The System the OPA says it serves (`labels.system_id`).
    pub system_id: String,
    /// The Tenant the OPA says it belongs to (`labels.tenant`).
    pub tenant: Option<String>,
    /// OPA's version (`labels.version`).
    pub version: Option<String>,
    /// Each bundle, sorted by name.
    pub bundles: Vec<BundleSummary>,
}

/// One bundle of a [`ReportSummary`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleSummary {
    /// The bundle name.
    pub name: String,
    /// The revision the OPA runs, if it activated one.
    pub active_revision: Option<String>,
    /// When it last activated a bundle (RFC 3339, as OPA wrote it).
    pub last_successful_activation: Option<String>,
    /// When it last downloaded a bundle (RFC 3339, as OPA wrote it).
    pub last_successful_download: Option<String>,
    /// The failure of the last download or activation, if any.
    pub error: Option<OpaError>,
}

/// A failure an OPA reported, reduced to its most specific error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpaError {
    /// OPA's code: the first detailed error's (`rego_type_error`) or the bundle's (`bundle_error`).
    pub code: String,
    /// OPA's message for that code.
    pub message: String,
    /// `file:row:col` when the error has a location.
    pub location: Option<String>,
    /// How many further detailed errors OPA listed.
    pub more: usize,
}

impl std::fmt::Display for OpaError {
    /// `rego_type_error: count: invalid argument(s) (policies/x.rego:4:7)`, plus `(and N more)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if let Some(location) = &self.location {
            write!(f, " ({location})")?;
        }
        if self.more > 0 {
            write!(f, " (and {} more)", self.more)?;
        }
        Ok(())
    }
}

impl<'a> StatusReport<'a> {
    /// Parse a report body (JSON), reading only what edict uses.
    pub fn parse(body: &'a [u8]) -> Result<Self, StatusError> {
        serde_json::from_slice(body).map_err(|e| StatusError::Malformed(e.to_string()))
    }

    /// The owned summary the fleet keeps; refuses reports without `labels.id` or
    /// `labels.system_id`.
    pub fn summary(&self) -> Result<ReportSummary, StatusError> {
        let labels = self.labels.as_ref().ok_or(StatusError::NoLabels)?;
        let opa_id = labels.id.as_deref().filter(|s| !s.is_empty()).ok_or(StatusError::MissingLabel("id"))?;
        let system_id = labels
            .system_id
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or(StatusError::MissingLabel("system_id"))?;
        let mut bundles: Vec<BundleSummary> = self.bundles.iter().map(|(name, b)| b.summary(name)).collect();
        if let Some(legacy) = &self.bundle {
            bundles.push(legacy.summary(legacy.name.as_deref().unwrap_or_default()));
        }
        Ok(ReportSummary {
            opa_id: opa_id.to_string(),
            system_id: system_id.to_string(),
            tenant: labels.tenant.as_deref().map(str::to_string),
            version: labels.version.as_deref().map(str::to_string),
            bundles,
        })
    }
}

impl BundleStatus<'_> {
    fn summary(&self, name: &str) -> BundleSummary {
        BundleSummary {
            name: name.to_string(),
            active_revision: known(&self.active_revision),
            last_successful_activation: known(&self.last_successful_activation).filter(|t| t != GO_ZERO_TIME),
            last_successful_download: known(&self.last_successful_download).filter(|t| t != GO_ZERO_TIME),
            error: self.error(),
        }
    }

    /// The most specific error: the first of `errors`, else the bundle's own code and message.
    fn error(&self) -> Option<OpaError> {
        let code = known(&self.code)?;
        let Some(first) = self.errors.first() else {
            return Some(OpaError {
                code,
                message: known(&self.message).unwrap_or_default(),
                location: None,
                more: 0,
            });
        };
        let location = first.location.as_ref().and_then(|l| {
            let file = l.file.as_deref().filter(|f| !f.is_empty())?;
            Some(match (l.row, l.col) {
                (Some(row), Some(col)) => format!("{file}:{row}:{col}"),
                (Some(row), None) => format!("{file}:{row}"),
                _ => file.to_string(),
            })
        });
        Some(OpaError {
            code: known(&first.code).unwrap_or(code),
            message: known(&first.message).or_else(|| known(&self.message)).unwrap_or_default(),
            location,
            more: self.errors.len() - 1,
        })
    }
}

/// A non-empty string field, owned.
fn known(field: &Option<Text<'_>>) -> Option<String> {
    field.as_deref().filter(|s| !s.is_empty()).map(str::to_string)
}

/// A JSON string that borrows from the body unless it has escapes (serde's own borrowing of
/// `Cow` does not reach through `Option` or map keys).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Text<'a>(pub Cow<'a, str>);

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/opa-wire/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    const REVISION: &str = "ad04ca06ddc608fa1ec8768d110ccb81c8cd81c4f060aa19631a0c885aa4c8b1";

    #[test]
    fn a_starting_opa_is_identified_and_runs_no_bundle_yet() {
        let body = fixture("status-starting.json");
        let summary = StatusReport::parse(&body).expect("parse").summary().expect("summary");
        assert_eq!(summary.opa_id, "c522fd0f-a67f-4466-b48d-e1d27340e774");
        assert_eq!(summary.system_id, "local/acme-payments/payments-cluster");
        assert_eq!(summary.tenant.as_deref(), Some("acme"));
        assert_eq!(summary.version.as_deref(), Some("1.9.0"));
        assert!(summary.bundles.is_empty());
    }

    #[test]
    fn an_active_opa_reports_the_revision_it_runs_and_no_error() {
        let body = fixture("status-active.json");
        let summary = StatusReport::parse(&body).expect("parse").summary().expect("summary");
        assert_eq!(
            summary.bundles,
            [BundleSummary {
                name: "payments-cluster".into(),
                active_revision: Some(REVISION.into()),
                last_successful_activation: Some("2026-11-30T17:01:36.116210586Z".into()),
                last_successful_download: Some("2026-11-30T17:01:36.088065828Z".into()),
                error: None,
            }]
        );
    }

    #[test]
    fn a_refused_bundle_keeps_the_old_revision_and_names_the_compile_error_and_where() {
        let body = fixture("status-activation-failed.json");
        let summary = StatusReport::parse(&body).expect("parse").summary().expect("summary");
        let bundle = &summary.bundles[0];
        assert_eq!(bundle.active_revision.as_deref(), Some(REVISION));
        let error = bundle.error.clone().expect("error");
        assert_eq!(
            error.to_string(),
            "rego_type_error: count: invalid argument(s) \
             (/stacks/kubernetes_baseline/superusers/superusers.rego:8:2)"
        );
        assert_eq!(bundle.last_successful_download.as_deref(), Some("2026-11-30T17:02:18.974129106Z"));
    }

    #[test]
    fn a_bundle_error_without_details_keeps_the_bundle_code_and_message() {
        let body = br#"{"labels":{"id":"o1","system_id":"c/ns/s"},
            "bundles":{"s":{"code":"bundle_error","message":"server replied with HTTP 404",
            "last_successful_activation":"0001-01-01T00:00:00Z"}}}"#;
        let summary = StatusReport::parse(body).expect("parse").summary().expect("summary");
        let bundle = &summary.bundles[0];
        assert_eq!(bundle.last_successful_activation, None, "Go's zero time means never");
        assert_eq!(
            bundle.error.as_ref().map(|e| e.to_string()).as_deref(),
            Some("bundle_error: server replied with HTTP 404")
        );
    }

    #[test]
    fn an_old_opa_with_a_single_bundle_object_is_understood() {
        let body = br#"{"labels":{"id":"o1","system_id":"c/ns/s","version":"0.10.5"},
            "bundle":{"name":"s","active_revision":"r1"}}"#;
        let summary = StatusReport::parse(body).expect("parse").summary().expect("summary");
        assert_eq!(summary.bundles[0].name, "s");
        assert_eq!(summary.bundles[0].active_revision.as_deref(), Some("r1"));
    }

    #[test]
    fn escaped_strings_and_unknown_fields_are_accepted() {
        let body = br#"{"labels":{"id":"o\"1","system_id":"c/ns/s","extra":"x"},"future":{"a":[1,2]},
            "bundles":{"s":{"active_revision":"r\u0031","size":3}}}"#;
        let summary = StatusReport::parse(body).expect("parse").summary().expect("summary");
        assert_eq!(summary.opa_id, "o\"1");
        assert_eq!(summary.bundles[0].active_revision.as_deref(), Some("r1"));
    }

    #[test]
    fn reports_without_labels_or_an_id_or_a_system_are_refused_with_the_reason() {
        let no_labels = StatusReport::parse(br#"{"bundles":{}}"#).expect("parse").summary();
        assert_eq!(no_labels, Err(StatusError::NoLabels));
        let no_id = StatusReport::parse(br#"{"labels":{"system_id":"c/n/s"}}"#).expect("parse").summary();
        assert_eq!(no_id, Err(StatusError::MissingLabel("id")));
        let no_system = StatusReport::parse(br#"{"labels":{"id":"o1"}}"#).expect("parse").summary();
        let error = no_system.expect_err("refused");
        assert!(error.to_string().contains("labels.system_id"), "{error}");
        assert!(matches!(StatusReport::parse(b"not json"), Err(StatusError::Malformed(_))));
        assert!(matches!(StatusReport::parse(b"[1]"), Err(StatusError::Malformed(_))));
    }
}
