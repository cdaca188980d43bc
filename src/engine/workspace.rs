//! A set of manifests built the way the operator would build them: the engine behind
//! `edict build`, `edict test`, `edict eval` and `edict run --local`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::api::TargetKind;
use crate::engine::catalog::Catalog;
use crate::engine::pipeline::{self, Checks, SystemBuild};
use crate::engine::problem::{ObjectRef, Problem, Reason};
use crate::engine::status::{self, Statuses};
use crate::model::ObjectKey;
use crate::policy::rego::TestResult;

/// Manifests loaded into a catalog, with every System built.
#[derive(Debug)]
pub struct Workspace {
    /// The objects.
    pub catalog: Catalog,
    /// Documents that could not be read, and duplicates.
    pub load_problems: Vec<Problem>,
    /// The latest build of every System.
    pub builds: BTreeMap<ObjectKey, SystemBuild>,
    /// The cluster name in system ids.
    pub cluster: String,
    /// Check caches.
    pub checks: Checks,
    /// The revision each System serves.
    pub live: BTreeMap<ObjectKey, String>,
    /// Why the last publish of a System failed, while it does.
    pub publish_problems: BTreeMap<ObjectKey, Problem>,
    /// Why what the operator keeps beside a System's bundle (its ConfigMap, ServiceAccount
    /// annotation, IAM role) could not be applied, while it cannot.
    pub wiring_problems: BTreeMap<ObjectKey, Problem>,
    /// Whether each Tenant's storage is usable (what was checked), or why not, as last seen by
    /// a publish; Tenants not in the map have not been connected (or use the embedded store).
    pub storage: BTreeMap<String, Result<String, Problem>>,
    /// What each System's OPAs report, for the Systems whose OPAs report to this edict
    /// (`status.opas` and the `Live` condition).
    pub fleet: BTreeMap<ObjectKey, crate::ingest::OpaSummary>,
    /// What the statuses said of their OPAs when this process started (`status.opas` and
    /// `Live`), shown until the OPAs have had time to report again, so that a restart does not
    /// flip every System to "no OPA reports".
    pub fleet_observed: BTreeMap<ObjectKey, (crate::api::system::OpaFleetStatus, crate::api::Condition)>,
    /// The statuses last reported, whose transition times carry over.
    reported: status::Transitions,
}

impl Workspace {
    /// Load every manifest under `paths` and build every System.
    pub fn load(paths: &[PathBuf], cluster: &str) -> std::io::Result<Self> {
        let loaded = crate::sources::manifest::load(paths)?;
        let (catalog, load_problems) = Catalog::from_loaded(loaded);
        let mut ws = Workspace { catalog, load_problems, ..Workspace::empty(cluster) };
        let all: Vec<ObjectKey> = ws.catalog.systems().keys().cloned().collect();
        ws.rebuild(&all);
        Ok(ws)
    }

    /// A workspace with no objects.
    pub fn empty(cluster: &str) -> Self {
        Workspace {
            catalog: Catalog::new(),
            load_problems: Vec::new(),
            builds: BTreeMap::new(),
            cluster: cluster.to_string(),
            checks: Checks::new(),
            live: BTreeMap::new(),
            publish_problems: BTreeMap::new(),
            wiring_problems: BTreeMap::new(),
            storage: BTreeMap::new(),
            fleet: BTreeMap::new(),
            fleet_observed: BTreeMap::new(),
            reported: status::Transitions::default(),
        }
    }

    /// Rebuild these Systems (those that no longer exist are forgotten).
    pub fn rebuild(&mut self, keys: &[ObjectKey]) {
        let (present, gone): (Vec<ObjectKey>, Vec<ObjectKey>) =
            keys.iter().cloned().partition(|k| self.catalog.systems().contains_key(k));
        for k in gone {
            self.builds.remove(&k);
            self.live.remove(&k);
            self.publish_problems.remove(&k);
            self.wiring_problems.remove(&k);
        }
        for b in pipeline::build_systems(&self.catalog, &present, &self.cluster, &self.checks) {
            self.builds.insert(b.key.clone(), b);
        }
    }

    /// Every problem: unreadable documents, object checks and builds. Sorted, without repeats.
    pub fn problems(&self) -> Vec<Problem> {
        let mut all = self.load_problems.clone();
        all.extend(self.catalog.object_problems());
        for b in self.builds.values() {
            all.extend(b.problems.iter().cloned());
        }
        all.sort();
        all.dedup();
        all
    }

    /// Record that a System now serves `revision`.
    pub fn published(&mut self, key: &ObjectKey, revision: &str) {
        self.live.insert(key.clone(), revision.to_string());
        self.publish_problems.remove(key);
    }

    /// Record why publishing a System failed (it keeps serving what it served).
    pub fn publish_failed(&mut self, key: &ObjectKey, problem: Problem) {
        self.publish_problems.insert(key.clone(), problem);
    }

    /// Record a failed publish: a transient failure (storage unreachable) is `Unavailable` and
    /// retried, any other `DependencyFailed`. The System keeps serving what it served.
    pub fn publish_error(&mut self, key: &ObjectKey, e: &crate::registry::PublishError) {
        let reason = if e.is_transient() { Reason::Unavailable } else { Reason::DependencyFailed };
        let me = ObjectRef::namespaced("System", key);
        self.publish_failed(key, Problem::new(me, reason, format!("publishing: {e}")));
    }

    /// Take what the OPAs of `systems` (each with the System it reports as and its OPAs'
    /// reporting interval) reported by `now` into their statuses (`status.opas`, the `Live`
    /// condition); Systems not listed lose theirs. Returns whether any System's changed, so
    /// that statuses are written only then. Logs each change of `Live`.
    pub fn refresh_fleet(
        &mut self,
        ingest: &crate::ingest::Ingest,
        systems: &[(ObjectKey, crate::ingest::SystemKey, std::time::Duration)],
        now: std::time::SystemTime,
    ) -> bool {
        let mut changed = false;
        for (key, system, interval) in systems {
            let summary = ingest.summary(system, self.live.get(key).map(String::as_str), now, *interval);
            let before = self.fleet.get(key);
            if before == Some(&summary) {
                continue;
            }
            let (was, is) = (before.map(|b| b.live_condition()), summary.live_condition());
            if was.as_ref().is_none_or(|w| (w.status, &w.reason) != (is.status, &is.reason)) {
                match is.reason.as_str() {
                    "Degraded" => tracing::warn!(system = %key, reason = %is.reason, "{}", is.message),
                    _ => tracing::info!(system = %key, reason = %is.reason, "{}", is.message),
                }
            }
            self.fleet.insert(key.clone(), summary);
            changed = true;
        }
        let listed: std::collections::BTreeSet<&ObjectKey> = systems.iter().map(|(k, _, _)| k).collect();
        let before = self.fleet.len();
        self.fleet.retain(|key, _| listed.contains(key));
        changed || self.fleet.len() != before
    }

    /// Take `statuses` as the last reported (their transition times carry over): what the
    /// objects showed when an operator started.
    pub fn reported_before(&mut self, statuses: &Statuses) {
        self.reported = status::Transitions::of(statuses);
    }

    /// Every object's status now; `lastTransitionTime` moves only on a real transition.
    pub fn statuses(&mut self) -> Statuses {
        let mut problems = self.problems();
        problems.extend(self.publish_problems.values().cloned());
        problems.extend(self.wiring_problems.values().cloned());
        problems.extend(self.storage.values().filter_map(|s| s.as_ref().err()).cloned());
        let mut now = status::compute(&self.catalog, &self.builds, &problems, &self.live);
        for (tenant, checked) in &self.storage {
            let Ok(what) = checked else { continue };
            let Some(status) = now.tenants.get_mut(tenant) else { continue };
            if let Some(ready) =
                status.conditions.iter_mut().find(|c| c.type_ == crate::api::conditions::READY)
                && ready.status == crate::api::ConditionStatus::True
            {
                ready.reason = "StorageReady".into();
                ready.message = what.clone();
            }
        }
        for (key, summary) in &self.fleet {
            let Some(status) = now.systems.get_mut(&key.to_string()) else { continue };
            status.opas = Some(summary.status());
            let mut live = summary.live_condition();
            live.observed_generation = status.observed_generation;
            status.conditions.push(live);
        }
        for (key, (opas, live)) in &self.fleet_observed {
            let Some(status) = now.systems.get_mut(&key.to_string()) else { continue };
            if self.fleet.contains_key(key) {
                continue;
            }
            status.opas = Some(opas.clone());
            status.conditions.push(live.clone());
        }
        let stamp = k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        status::carry_all(&self.reported, &mut now, &stamp);
        self.reported = status::Transitions::of(&now);
        now
    }

    /// Run the Rego tests of every Policy that has some, target by target.
    pub fn run_tests(&self) -> Vec<(ObjectKey, Result<Vec<TestResult>, Problem>)> {
        let mut out = Vec::new();
        let targets = self
            .catalog
            .stacks()
            .keys()
            .map(|k| (TargetKind::Stack, k))
            .chain(self.catalog.systems().keys().map(|k| (TargetKind::System, k)));
        for (kind, key) in targets {
            out.extend(pipeline::test_target(&self.catalog, kind, key, &self.checks));
        }
        out
    }
}
