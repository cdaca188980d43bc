//! What each System's OPAs run, from their status reports: a pure, clock-free aggregate.
//!
//! [`Fleet::record`] keeps, per System and OPA instance, the revisions the OPA last reported,
//! its current error and when it last reported. [`Fleet::summary`] turns that into the
//! [`OpaSummary`] the System's status shows (`status.opas`) and its `Live` condition
//! ([`OpaSummary::live_condition`]). Every call takes `now`; nothing here reads a clock.
//!
//! A summary only depends on what changed in the fleet, not on how often OPAs report (an
//! error keeps the time it was first seen while the OPA repeats it), so the caller writes a
//! System's status when its summary differs from the last one written, not per report.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::SystemKey;
use super::status::{OpaError, ReportSummary};
use crate::api::conditions::LIVE;
use crate::api::{Condition, ConditionStatus};

/// An OPA counts as reporting while its last report is at most this many intervals old.
pub const REPORTING_INTERVALS: u32 = 3;

/// What the OPAs of every System last reported.
#[derive(Clone, Debug)]
pub struct Fleet {
    forget_after: Duration,
    systems: BTreeMap<SystemKey, BTreeMap<String, Opa>>,
}

/// One OPA instance, as its last report left it.
#[derive(Clone, Debug)]
struct Opa {
    last_report: SystemTime,
    revisions: Vec<String>,
    error: Option<SeenError>,
}

/// An error and when this OPA first reported it (unchanged while it repeats it).
#[derive(Clone, Debug, PartialEq, Eq)]
struct SeenError {
    error: OpaError,
    since: SystemTime,
}

/// How a System's OPAs stand against its live revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpaSummary {
    /// The revision edict published for the System, if any.
    pub live_revision: Option<String>,
    /// OPAs that reported within the last [`REPORTING_INTERVALS`] intervals.
    pub reporting: u32,
    /// Reporting OPAs whose active revision is the live one.
    pub on_live: u32,
    /// Reporting OPAs not on the live revision whose last download or activation failed.
    pub failed: u32,
    /// The most recent failure among the failed OPAs.
    pub newest_error: Option<NewestError>,
}

/// The most recent failure of a System's OPAs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewestError {
    /// The OPA instance id that reported it.
    pub opa: String,
    /// When that OPA first reported it.
    pub at: SystemTime,
    /// OPA's code, message and location.
    pub error: OpaError,
}

impl Fleet {
    /// An empty fleet; [`Fleet::expire`] forgets OPAs silent for longer than `forget_after`.
    pub fn new(forget_after: Duration) -> Self {
        Fleet { forget_after, systems: BTreeMap::new() }
    }

    /// Record a report from one OPA of `system`, received at `now`.
    pub fn record(&mut self, system: &SystemKey, report: &ReportSummary, now: SystemTime) {
        let opas = self.systems.entry(system.clone()).or_default();
        let revisions = report.bundles.iter().filter_map(|b| b.active_revision.clone()).collect();
        let error = report.bundles.iter().find_map(|b| b.error.clone());
        let previous = opas.get(&report.opa_id).and_then(|o| o.error.as_ref());
        let error = error.map(|error| match previous {
            Some(seen) if seen.error == error => seen.clone(),
            _ => SeenError { error, since: now },
        });
        opas.insert(report.opa_id.clone(), Opa { last_report: now, revisions, error });
    }

    /// How `system`'s OPAs stand against `live_revision` at `now`, for OPAs reporting every
    /// `interval` (OPA's bundle polling period, the longest gap between its reports).
    pub fn summary(
        &self,
        system: &SystemKey,
        live_revision: Option<&str>,
        now: SystemTime,
        interval: Duration,
    ) -> OpaSummary {
        let window = interval.saturating_mul(REPORTING_INTERVALS);
        let mut summary = OpaSummary {
            live_revision: live_revision.map(str::to_string),
            reporting: 0,
            on_live: 0,
            failed: 0,
            newest_error: None,
        };
        let opas = self.systems.get(system).into_iter().flatten();
        for (id, opa) in opas.filter(|(_, o)| age(o.last_report, now) <= window) {
            summary.reporting += 1;
            if live_revision.is_some_and(|live| opa.revisions.iter().any(|r| r == live)) {
                summary.on_live += 1;
                continue;
            }
            let Some(seen) = &opa.error else { continue };
            summary.failed += 1;
            let newer = summary.newest_error.as_ref().is_none_or(|n| (seen.since, id) > (n.at, &n.opa));
            if newer {
                summary.newest_error =
                    Some(NewestError { opa: id.clone(), at: seen.since, error: seen.error.clone() });
            }
        }
        summary
    }

    /// Forget OPAs that have not reported for longer than `forget_after` (and Systems left
    /// with none); returns the Systems that lost OPAs.
    pub fn expire(&mut self, now: SystemTime) -> Vec<SystemKey> {
        let mut changed = Vec::new();
        self.systems.retain(|system, opas| {
            let before = opas.len();
            opas.retain(|_, o| age(o.last_report, now) <= self.forget_after);
            if opas.len() != before {
                changed.push(system.clone());
            }
            !opas.is_empty()
        });
        changed
    }

    /// Forget a System and its OPAs (the System was deleted).
    pub fn remove(&mut self, system: &SystemKey) {
        self.systems.remove(system);
    }

    /// How many OPAs the fleet holds, across Systems (reporting or not yet expired).
    pub fn len(&self) -> usize {
        self.systems.values().map(BTreeMap::len).sum()
    }

    /// Whether the fleet holds no OPA.
    pub fn is_empty(&self) -> bool {
        self.systems.is_empty()
    }
}

/// How long ago `then` was; zero when `then` is after `now`.
fn age(then: SystemTime, now: SystemTime) -> Duration {
    now.duration_since(then).unwrap_or(Duration::ZERO)
}

/// Condition reasons of `Live`.
pub mod reason {
    /// Every reporting OPA runs the live revision.
    pub const LIVE: &str = "Live";
    /// Some OPAs still run an older revision and none failed: the rollout is under way.
    pub const PROGRESSING: &str = "Progressing";
    /// An OPA failed to download or activate the live revision.
    pub const DEGRADED: &str = "Degraded";
    /// No OPA reported within the last reporting intervals.
    pub const NO_OPAS: &str = "NoOpas";
    /// Nothing is published for the System yet.
    pub const NOT_PUBLISHED: &str = "NotPublished";
}

impl OpaSummary {
    /// What a System's status shows of its OPAs (`status.opas`).
    pub fn status(&self) -> crate::api::system::OpaFleetStatus {
        crate::api::system::OpaFleetStatus {
            live: format!("{}/{}", self.on_live, self.reporting),
            reporting: self.reporting,
            on_live_revision: self.on_live,
            failed: self.failed,
            newest_error: self
                .newest_error
                .as_ref()
                .filter(|_| self.failed > 0)
                .map(|n| format!("{} (OPA {})", n.error, n.opa)),
        }
    }

    /// The `Live` condition: True when every reporting OPA runs the live revision; False with
    /// `Progressing` or `Degraded`; Unknown with `NoOpas` or `NotPublished`. The caller sets
    /// `observedGeneration` and `lastTransitionTime`.
    pub fn live_condition(&self) -> Condition {
        let (status, reason, message) = self.live();
        Condition {
            type_: LIVE.to_string(),
            status,
            reason: reason.to_string(),
            message,
            observed_generation: None,
            last_transition_time: None,
        }
    }

    fn live(&self) -> (ConditionStatus, &'static str, String) {
        let Some(live) = &self.live_revision else {
            let message = format!("no revision is published yet; {} reporting", opas(self.reporting));
            return (ConditionStatus::Unknown, reason::NOT_PUBLISHED, message);
        };
        if self.reporting == 0 {
            let message = format!(
                "no OPA reported in the last {REPORTING_INTERVALS} reporting intervals; live revision {}",
                short(live)
            );
            return (ConditionStatus::Unknown, reason::NO_OPAS, message);
        }
        let verb = if self.reporting == 1 { "OPA runs" } else { "OPAs run" };
        let mut message =
            format!("{}/{} {verb} the live revision {}", self.on_live, self.reporting, short(live));
        let older = self.reporting - self.on_live - self.failed;
        if let Some(newest) = self.newest_error.as_ref().filter(|_| self.failed > 0) {
            message.push_str(&format!("; {} failed: {}", self.failed, newest.error));
            if older > 0 {
                message.push_str(&format!("; {older} on an older revision"));
            }
            return (ConditionStatus::False, reason::DEGRADED, message);
        }
        if older > 0 {
            message.push_str(&format!("; {older} on an older revision"));
            return (ConditionStatus::False, reason::PROGRESSING, message);
        }
        (ConditionStatus::True, reason::LIVE, message)
    }
}

/// `1 OPA`, `3 OPAs`.
fn opas(n: u32) -> String {
    if n == 1 { "1 OPA".into() } else { format!("{n} OPAs") }
}

/// The first 12 characters of a revision, as people read it.
fn short(revision: &str) -> &str {
    revision.get(..12).unwrap_or(revision)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::status::BundleSummary;

    const LIVE_REV: &str = "95220d66ab12c0ffee";
    const OLD_REV: &str = "0ld0ld0ld0ld0ld";
    const INTERVAL: Duration = Duration::from_secs(10);

    fn system() -> SystemKey {
        SystemKey::new("acme", "local", "acme-payments", "payments-cluster")
    }

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    fn type_error() -> OpaError {
        OpaError {
            code: "rego_type_error".into(),
            message: "count: invalid argument(s)".into(),
            location: Some("policies/x.rego:4:7".into()),
            more: 0,
        }
    }

    /// A report from OPA `id` running `revision`, with an optional error.
    fn report(id: &str, revision: Option<&str>, error: Option<OpaError>) -> ReportSummary {
        ReportSummary {
            opa_id: id.into(),
            system_id: "local/acme-payments/payments-cluster".into(),
            tenant: Some("acme".into()),
            version: Some("1.9.0".into()),
            bundles: vec![BundleSummary {
                name: "payments-cluster".into(),
                active_revision: revision.map(str::to_string),
                last_successful_activation: None,
                last_successful_download: None,
                error,
            }],
        }
    }

    fn fleet() -> Fleet {
        Fleet::new(INTERVAL * 10)
    }

    #[test]
    fn every_reporting_opa_on_the_live_revision_makes_the_system_live() {
        let mut fleet = fleet();
        for id in ["a", "b", "c"] {
            fleet.record(&system(), &report(id, Some(LIVE_REV), None), t(0));
        }
        let summary = fleet.summary(&system(), Some(LIVE_REV), t(5), INTERVAL);
        assert_eq!(
            summary,
            OpaSummary {
                live_revision: Some(LIVE_REV.into()),
                reporting: 3,
                on_live: 3,
                failed: 0,
                newest_error: None
            }
        );
        let live = summary.live_condition();
        assert_eq!(
            (live.type_.as_str(), live.status, live.reason.as_str()),
            ("Live", ConditionStatus::True, "Live")
        );
        assert_eq!(live.message, "3/3 OPAs run the live revision 95220d66ab12");
    }

    #[test]
    fn opas_still_on_an_older_revision_without_errors_are_progressing() {
        let mut fleet = fleet();
        fleet.record(&system(), &report("a", Some(LIVE_REV), None), t(0));
        fleet.record(&system(), &report("b", Some(OLD_REV), None), t(0));
        let live = fleet.summary(&system(), Some(LIVE_REV), t(1), INTERVAL).live_condition();
        assert_eq!((live.status, live.reason.as_str()), (ConditionStatus::False, "Progressing"));
        assert_eq!(live.message, "1/2 OPAs run the live revision 95220d66ab12; 1 on an older revision");
    }

    #[test]
    fn an_opa_that_failed_to_activate_the_live_revision_degrades_the_system_and_names_the_error() {
        let mut fleet = fleet();
        fleet.record(&system(), &report("a", Some(LIVE_REV), None), t(0));
        fleet.record(&system(), &report("b", Some(LIVE_REV), None), t(0));
        fleet.record(&system(), &report("c", Some(OLD_REV), Some(type_error())), t(2));
        let summary = fleet.summary(&system(), Some(LIVE_REV), t(3), INTERVAL);
        assert_eq!((summary.reporting, summary.on_live, summary.failed), (3, 2, 1));
        assert_eq!(
            summary.newest_error,
            Some(NewestError { opa: "c".into(), at: t(2), error: type_error() })
        );
        let live = summary.live_condition();
        assert_eq!((live.status, live.reason.as_str()), (ConditionStatus::False, "Degraded"));
        assert_eq!(
            live.message,
            "2/3 OPAs run the live revision 95220d66ab12; 1 failed: \
             rego_type_error: count: invalid argument(s) (policies/x.rego:4:7)"
        );
    }

    #[test]
    fn the_newest_error_is_the_one_first_seen_last() {
        let mut fleet = fleet();
        let other =
            OpaError { code: "bundle_error".into(), message: "HTTP 404".into(), location: None, more: 0 };
        fleet.record(&system(), &report("a", None, Some(type_error())), t(0));
        fleet.record(&system(), &report("b", None, Some(other.clone())), t(4));
        fleet.record(&system(), &report("a", None, Some(type_error())), t(8));
        let summary = fleet.summary(&system(), Some(LIVE_REV), t(9), INTERVAL);
        assert_eq!(summary.failed, 2);
        assert_eq!(summary.newest_error, Some(NewestError { opa: "b".into(), at: t(4), error: other }));
    }

    #[test]
    fn repeated_identical_reports_leave_the_summary_unchanged_so_status_is_not_rewritten() {
        let mut fleet = fleet();
        fleet.record(&system(), &report("a", Some(OLD_REV), Some(type_error())), t(0));
        let first = fleet.summary(&system(), Some(LIVE_REV), t(1), INTERVAL);
        fleet.record(&system(), &report("a", Some(OLD_REV), Some(type_error())), t(6));
        let second = fleet.summary(&system(), Some(LIVE_REV), t(7), INTERVAL);
        assert_eq!(first, second);
        fleet.record(&system(), &report("a", Some(LIVE_REV), None), t(12));
        assert_ne!(second, fleet.summary(&system(), Some(LIVE_REV), t(13), INTERVAL));
    }

    #[test]
    fn an_opa_counts_as_reporting_for_three_intervals_then_stops_counting() {
        let mut fleet = fleet();
        fleet.record(&system(), &report("a", Some(LIVE_REV), None), t(0));
        fleet.record(&system(), &report("b", Some(LIVE_REV), None), t(25));
        assert_eq!(fleet.summary(&system(), Some(LIVE_REV), t(30), INTERVAL).reporting, 2);
        assert_eq!(fleet.summary(&system(), Some(LIVE_REV), t(31), INTERVAL).reporting, 1);
    }

    #[test]
    fn with_no_reporting_opa_live_is_unknown() {
        let mut fleet = fleet();
        let empty = fleet.summary(&system(), Some(LIVE_REV), t(0), INTERVAL).live_condition();
        assert_eq!((empty.status, empty.reason.as_str()), (ConditionStatus::Unknown, "NoOpas"));
        fleet.record(&system(), &report("a", Some(LIVE_REV), None), t(0));
        let silent = fleet.summary(&system(), Some(LIVE_REV), t(100), INTERVAL).live_condition();
        assert_eq!(silent.reason, "NoOpas");
        let unpublished = fleet.summary(&system(), None, t(1), INTERVAL).live_condition();
        assert_eq!(
            (unpublished.status, unpublished.reason.as_str()),
            (ConditionStatus::Unknown, "NotPublished")
        );
    }

    #[test]
    fn silent_opas_are_forgotten_after_the_expiry_and_empty_systems_with_them() {
        let mut fleet = fleet();
        let other = SystemKey::new("acme", "local", "acme-payments", "other");
        fleet.record(&system(), &report("a", Some(LIVE_REV), None), t(0));
        fleet.record(&system(), &report("b", Some(LIVE_REV), None), t(50));
        fleet.record(&other, &report("c", Some(LIVE_REV), None), t(0));
        assert_eq!(fleet.expire(t(100)), Vec::<SystemKey>::new(), "100 s is not past the 100 s expiry");
        assert_eq!(fleet.expire(t(101)), vec![other.clone(), system()]);
        assert_eq!(fleet.len(), 1);
        assert_eq!(fleet.summary(&other, Some(LIVE_REV), t(101), INTERVAL).reporting, 0);
        fleet.remove(&system());
        assert!(fleet.is_empty());
    }

    #[test]
    fn one_opa_reads_in_the_singular_and_reports_from_the_future_count_as_fresh() {
        let mut fleet = fleet();
        fleet.record(&system(), &report("a", Some(LIVE_REV), None), t(10));
        let summary = fleet.summary(&system(), Some(LIVE_REV), t(0), INTERVAL);
        assert_eq!(summary.live_condition().message, "1/1 OPA runs the live revision 95220d66ab12");
    }
}
