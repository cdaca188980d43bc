//! A set of manifests built the way the operator would build them: the engine behind
//! `edict build`, `edict test`, `edict eval` and `edict run --local`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use crate::api::SystemStatus;
use crate::api::TargetKind;
use crate::engine::catalog::Affected;
use crate::engine::catalog::Catalog;
use crate::engine::pipeline::{self, Checks, SystemBuild};
use crate::engine::problem::{ObjectRef, Problem, Reason};
use crate::engine::status::{self, Statuses};
use crate::model::{Kind, ObjectKey};
use crate::policy::rego::TestResult;
use crate::sources::manifest::Located;

mod tracking;

use tracking::{Dirty, Found};

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
    publish_problems: BTreeMap<ObjectKey, Problem>,
    /// Why what the operator keeps beside a System's bundle (its ConfigMap, ServiceAccount
    /// annotation, IAM role) could not be applied, while it cannot.
    wiring_problems: BTreeMap<ObjectKey, Problem>,
    /// Whether each Tenant's storage is usable (what was checked), or why not, as last seen by
    /// a publish; Tenants not in the map have not been connected (or use the embedded store).
    storage: BTreeMap<String, Result<String, Problem>>,
    /// What each System's OPAs report, for the Systems whose OPAs report to this edict
    /// (`status.opas` and the `Live` condition).
    fleet: BTreeMap<ObjectKey, crate::ingest::OpaSummary>,
    /// What the statuses said of their OPAs when this process started (`status.opas` and
    /// `Live`), shown until the OPAs have had time to report again, so that a restart does not
    /// flip every System to "no OPA reports".
    fleet_observed: BTreeMap<ObjectKey, (crate::api::system::OpaFleetStatus, crate::api::Condition)>,
    /// The statuses last computed (or, after a restart, those the objects showed), whose
    /// transition times carry over.
    current: Statuses,
    /// The objects whose status may differ from `current`: what changed since.
    dirty: Dirty,
    /// What the builds found, by object (kept as builds come and go).
    found: Found,
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
            current: Statuses::default(),
            dirty: Dirty { all: true, objects: BTreeSet::new() },
            found: Found::default(),
        }
    }

    /// Rebuild these Systems (those that no longer exist are forgotten).
    pub fn rebuild(&mut self, keys: &[ObjectKey]) {
        let (present, gone): (Vec<ObjectKey>, Vec<ObjectKey>) =
            keys.iter().cloned().partition(|k| self.catalog.systems().contains_key(k));
        for k in gone {
            if let Some(old) = self.builds.remove(&k) {
                self.touch_build(&old);
                self.found.remove(&old);
            }
            self.touch(ObjectRef::namespaced("System", &k));
            self.live.remove(&k);
            self.publish_problems.remove(&k);
            self.wiring_problems.remove(&k);
        }
        for b in pipeline::build_systems(&self.catalog, &present, &self.cluster, &self.checks) {
            self.replace_build(b);
        }
    }

    /// Keep a System's new build in place of its old one.
    fn replace_build(&mut self, b: SystemBuild) {
        self.touch_build(&b);
        if let Some(old) = self.builds.remove(&b.key) {
            self.touch_build(&old);
            self.found.remove(&old);
        }
        self.found.add(&b);
        self.builds.insert(b.key.clone(), b);
    }

    /// Apply an object from a manifest or a watch (see [`Catalog::apply`]).
    pub fn apply(&mut self, located: Located) -> Affected {
        let (kind, key) = (located.object.kind(), located.object.key());
        let before = self.related(kind, &key);
        let affected = self.catalog.apply(located);
        self.touched(kind, &key, before, &affected);
        affected
    }

    /// Forget an object (see [`Catalog::delete`]).
    pub fn delete(&mut self, kind: Kind, key: &ObjectKey) -> Affected {
        let before = self.related(kind, key);
        let affected = self.catalog.delete(kind, key);
        self.touched(kind, key, before, &affected);
        affected
    }

    /// A namespace's labels (`None`: it is gone), which decide which Tenant owns it.
    pub fn apply_namespace(
        &mut self,
        name: &str,
        labels: Option<crate::select::selector::Labels>,
    ) -> Affected {
        self.dirty.all = true;
        self.catalog.apply_namespace(name, labels)
    }

    /// The objects whose status an object's change may move besides its own: the Stacks a
    /// System is bound by, the Policies attached to a Stack or System, a Policy's target.
    fn related(&self, kind: Kind, key: &ObjectKey) -> Vec<ObjectRef> {
        let mut out = Vec::new();
        let policies = |target| {
            self.catalog
                .policies_of(target, key)
                .into_iter()
                .map(|p| ObjectRef::namespaced("Policy", &crate::engine::catalog::key_of(&p.policy.metadata)))
        };
        match kind {
            Kind::System => {
                out.extend(
                    self.catalog.index().stacks_of(key).iter().map(|s| ObjectRef::namespaced("Stack", s)),
                );
                out.extend(policies(TargetKind::System));
            }
            Kind::Stack => out.extend(policies(TargetKind::Stack)),
            Kind::Policy => out.extend(self.catalog.target_of(key)),
            Kind::Tenant => {}
        }
        out
    }

    /// Mark what an object's change touched: the object, what was related to it before and
    /// after, the Systems it affects, every Tenant when a Stack or System came or went (they
    /// count them), and everything when a Tenant changed (it decides who owns what).
    fn touched(&mut self, kind: Kind, key: &ObjectKey, before: Vec<ObjectRef>, affected: &Affected) {
        // Whether a Stack or System came or went: its status is in `current` as last computed.
        let came_or_went = match kind {
            Kind::Tenant => {
                self.dirty.all = true;
                return;
            }
            Kind::Stack => {
                self.current.stacks.contains_key(key.to_string().as_str())
                    != self.catalog.stacks().contains_key(key)
            }
            Kind::System => {
                self.current.systems.contains_key(key.to_string().as_str())
                    != self.catalog.systems().contains_key(key)
            }
            Kind::Policy => false,
        };
        if came_or_went {
            // Tenants count them, and a namespace claimed by several Tenants is a problem of
            // each once something lives in it.
            let tenants: Vec<ObjectRef> =
                self.catalog.tenants().keys().map(|n| ObjectRef::tenant(n)).collect();
            for t in tenants {
                self.touch(t);
            }
        }
        let after = self.related(kind, key);
        for r in before.into_iter().chain(after) {
            self.touch(r);
        }
        for system in affected.iter() {
            self.touch(ObjectRef::namespaced("System", system));
        }
        self.touch(ObjectRef::namespaced(kind.as_str(), key));
    }

    /// Mark an object's status to be computed again (a Policy's target's too: it shows the
    /// Policy's problems).
    fn touch(&mut self, object: ObjectRef) {
        if self.dirty.all {
            return;
        }
        if object.kind == "Policy"
            && let Some(target) =
                self.catalog.target_of(&ObjectKey::new(object.namespace.clone(), object.name.clone()))
        {
            self.dirty.objects.insert(target);
        }
        self.dirty.objects.insert(object);
    }

    /// Mark what a System's build shows in statuses: the System, its Stacks, the Policies it
    /// ran tests of, and every object one of its problems is about.
    fn touch_build(&mut self, build: &SystemBuild) {
        let mut refs = vec![ObjectRef::namespaced("System", &build.key)];
        refs.extend(build.stacks().iter().map(|s| ObjectRef::namespaced("Stack", s)));
        refs.extend(build.tests.keys().map(|p| ObjectRef::namespaced("Policy", p)));
        refs.extend(build.problems.iter().map(|p| p.object.clone()));
        for r in refs {
            self.touch(r);
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
        self.touch(ObjectRef::namespaced("System", key));
        if let Some(p) = self.publish_problems.remove(key) {
            self.touch(p.object);
        }
        self.live.insert(key.clone(), revision.to_string());
    }

    /// Record why publishing a System failed (it keeps serving what it served).
    pub fn publish_failed(&mut self, key: &ObjectKey, problem: Problem) {
        self.touch(ObjectRef::namespaced("System", key));
        self.touch(problem.object.clone());
        if let Some(p) = self.publish_problems.insert(key.clone(), problem) {
            self.touch(p.object);
        }
    }

    /// Record that what belongs beside a System's bundle is applied as it should be.
    pub fn wiring_applied(&mut self, key: &ObjectKey) {
        self.touch(ObjectRef::namespaced("System", key));
        if let Some(p) = self.wiring_problems.remove(key) {
            self.touch(p.object);
        }
    }

    /// Record why what belongs beside a System's bundle could not be applied.
    pub fn wiring_failed(&mut self, key: &ObjectKey, problem: Problem) {
        self.touch(ObjectRef::namespaced("System", key));
        self.touch(problem.object.clone());
        if let Some(p) = self.wiring_problems.insert(key.clone(), problem) {
            self.touch(p.object);
        }
    }

    /// Whether applying what belongs beside a System's bundle failed last time.
    pub fn wiring_has_failed(&self, key: &ObjectKey) -> bool {
        self.wiring_problems.contains_key(key)
    }

    /// Record what was found of a Tenant's storage (`None`: not connected, or forgotten).
    pub fn storage_checked(&mut self, tenant: &str, found: Option<Result<String, Problem>>) {
        let before = match found {
            Some(now) => self.storage.insert(tenant.to_string(), now),
            None => self.storage.remove(tenant),
        };
        if before.as_ref() != self.storage.get(tenant) {
            // A Tenant's storage shows in its status, and its problems in its Systems'.
            self.dirty.all = true;
        }
    }

    /// Mark every status to be computed again.
    pub fn touch_all(&mut self) {
        self.dirty.all = true;
    }

    /// Mark a System's status to be computed again, for what the caller shows in it (see
    /// [`Workspace::statuses_with`]).
    pub fn touch_system(&mut self, key: &ObjectKey) {
        self.touch(ObjectRef::namespaced("System", key));
    }

    /// What the statuses said of the OPAs of these Systems when this process started, shown
    /// until they report again (see [`Workspace::refresh_fleet`]).
    pub fn observe_fleet(
        &mut self,
        observed: BTreeMap<ObjectKey, (crate::api::system::OpaFleetStatus, crate::api::Condition)>,
    ) {
        for key in self.fleet_observed.keys().chain(observed.keys()).cloned().collect::<Vec<_>>() {
            self.touch_system(&key);
        }
        self.fleet_observed = observed;
    }

    /// The Systems whose observed OPA status is still shown.
    pub fn fleet_observed(
        &self,
    ) -> &BTreeMap<ObjectKey, (crate::api::system::OpaFleetStatus, crate::api::Condition)> {
        &self.fleet_observed
    }

    /// What each reporting System's OPAs said, as last refreshed.
    pub fn fleet(&self) -> &BTreeMap<ObjectKey, crate::ingest::OpaSummary> {
        &self.fleet
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
            self.touch_system(key);
            changed = true;
        }
        let listed: BTreeSet<&ObjectKey> = systems.iter().map(|(k, _, _)| k).collect();
        let gone: Vec<ObjectKey> = self.fleet.keys().filter(|k| !listed.contains(k)).cloned().collect();
        for key in &gone {
            self.fleet.remove(key);
            self.touch_system(key);
        }
        changed || !gone.is_empty()
    }

    /// Take `statuses` as the last reported (their transition times carry over): what the
    /// objects showed when an operator started.
    pub fn reported_before(&mut self, statuses: &Statuses) {
        self.current = statuses.clone();
        self.dirty.all = true;
    }

    /// Every object's status now; `lastTransitionTime` moves only on a real transition.
    pub fn statuses(&mut self) -> Statuses {
        self.statuses_with(&|_, _| {})
    }

    /// Every object's status now, with what `extra` adds to a System's (what the operator
    /// applied beside its bundle: call [`Workspace::touch_system`] when that changes). Only
    /// the objects touched since the last call are computed again; the others keep their
    /// status, the same allocation as before.
    pub fn statuses_with(&mut self, extra: &dyn Fn(&ObjectKey, &mut SystemStatus)) -> Statuses {
        let stamp = k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        let dirty = std::mem::take(&mut self.dirty);
        let mut current = std::mem::take(&mut self.current);
        #[cfg(debug_assertions)]
        let before = (!dirty.all).then(|| current.clone());
        let objects: Vec<ObjectRef> =
            if dirty.all { self.every_object(&current) } else { dirty.objects.into_iter().collect() };
        self.update(&mut current, &objects, &stamp, extra, &self.found);
        #[cfg(debug_assertions)]
        if let Some(mut full) = before {
            // What was left untouched must be what a computation of everything, from every
            // build read afresh, finds.
            let every = self.every_object(&full);
            self.update(&mut full, &every, &stamp, extra, &Found::of(&self.builds));
            let missed: Vec<String> = status::changed(&current.systems, &full.systems)
                .map(|(k, _, _)| format!("System {k}"))
                .chain(status::changed(&current.stacks, &full.stacks).map(|(k, _, _)| format!("Stack {k}")))
                .chain(
                    status::changed(&current.tenants, &full.tenants).map(|(k, _, _)| format!("Tenant {k}")),
                )
                .chain(
                    status::changed(&current.policies, &full.policies).map(|(k, _, _)| format!("Policy {k}")),
                )
                .collect();
            assert!(missed.is_empty(), "statuses not computed again after a change: {missed:?}");
            assert_eq!(full, current);
        }
        self.current = current;
        self.current.clone()
    }

    /// Every object of the catalog, and every object `statuses` still shows.
    fn every_object(&self, statuses: &Statuses) -> Vec<ObjectRef> {
        let parse = |k: &Arc<str>| {
            let (ns, name) = k.split_once('/').unwrap_or(("", k));
            ObjectKey::new(ns, name)
        };
        let mut all: BTreeSet<ObjectRef> = BTreeSet::new();
        all.extend(self.catalog.tenants().keys().map(|n| ObjectRef::tenant(n)));
        all.extend(statuses.tenants.keys().map(|n| ObjectRef::tenant(n)));
        for (kind, keys) in [
            (
                "Stack",
                self.catalog
                    .stacks()
                    .keys()
                    .cloned()
                    .chain(statuses.stacks.keys().map(parse))
                    .collect::<Vec<_>>(),
            ),
            (
                "System",
                self.catalog.systems().keys().cloned().chain(statuses.systems.keys().map(parse)).collect(),
            ),
            (
                "Policy",
                self.catalog.policies().keys().cloned().chain(statuses.policies.keys().map(parse)).collect(),
            ),
        ] {
            all.extend(keys.iter().map(|k| ObjectRef::namespaced(kind, k)));
        }
        all.into_iter().collect()
    }

    /// Compute the status of each of `objects` again into `statuses` (those that no longer
    /// exist leave it). A status equal to the one it replaces keeps the old allocation.
    fn update(
        &self,
        statuses: &mut Statuses,
        objects: &[ObjectRef],
        stamp: &str,
        extra: &dyn Fn(&ObjectKey, &mut SystemStatus),
        found: &Found,
    ) {
        // An object's problems, in the order its conditions list them: what loading, the
        // object checks and the builds found (sorted, once each), then what publishing,
        // wiring and storage found.
        let problems_of = |object: &ObjectRef| -> Vec<Problem> {
            let mut list: Vec<Problem> =
                self.load_problems.iter().filter(|p| &p.object == object).cloned().collect();
            list.extend(self.catalog.problems_of(object).into_iter().filter(|p| &p.object == object));
            list.extend(found.problems(object).cloned());
            list.sort();
            list.dedup();
            let later = self
                .publish_problems
                .values()
                .chain(self.wiring_problems.values())
                .chain(self.storage.values().filter_map(|s| s.as_ref().err()));
            for p in later.filter(|p| &p.object == object) {
                if !list.contains(p) {
                    list.push(p.clone());
                }
            }
            list
        };
        for object in objects {
            let key = ObjectKey::new(object.namespace.clone(), object.name.clone());
            let problems = problems_of(object);
            let problems: Vec<&Problem> = problems.iter().collect();
            match object.kind.as_str() {
                "Tenant" => {
                    let now = status::tenant(&self.catalog, &object.name, &problems).map(|mut s| {
                        if let Some(Ok(what)) = self.storage.get(&object.name)
                            && let Some(ready) =
                                s.conditions.iter_mut().find(|c| c.type_ == crate::api::conditions::READY)
                            && ready.status == crate::api::ConditionStatus::True
                        {
                            ready.reason = "StorageReady".into();
                            ready.message = what.clone();
                        }
                        s
                    });
                    status::keep(&mut statuses.tenants, &object.name, now, stamp);
                }
                "Stack" => {
                    let now = status::stack(&self.catalog, &key, &problems_of);
                    status::keep(&mut statuses.stacks, &key.to_string(), now, stamp);
                }
                "System" => {
                    let build = self.builds.get(&key);
                    let now = status::system(&self.catalog, &key, build, self.live.get(&key), &problems).map(
                        |mut s| {
                            if let Some(summary) = self.fleet.get(&key) {
                                s.opas = Some(summary.status());
                                let mut live = summary.live_condition();
                                live.observed_generation = s.observed_generation;
                                s.conditions.push(live);
                            } else if let Some((opas, live)) = self.fleet_observed.get(&key) {
                                s.opas = Some(opas.clone());
                                s.conditions.push(live.clone());
                            }
                            extra(&key, &mut s);
                            s
                        },
                    );
                    status::keep(&mut statuses.systems, &key.to_string(), now, stamp);
                }
                "Policy" => {
                    let now = status::policy(&self.catalog, &key, &problems, found.tests(&key));
                    status::keep(&mut statuses.policies, &key.to_string(), now, stamp);
                }
                _ => {}
            }
        }
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
