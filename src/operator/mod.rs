//! `edict run`: the operator. Watches of the four kinds feed the catalog (and its binding
//! index); each change rebuilds only the Systems it affects, publishes their bundles to the
//! Tenant's storage (or the embedded directory store), and writes every status that changed.
//! Only the holder of the leader Lease writes.

mod directory;
mod embedded;
mod fleet;
pub mod leader;
pub mod lifecycle;
pub mod reports;
pub mod rounds;
mod run;
pub mod status_writer;
mod sync;
pub mod watch;
pub mod wiring;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::api::Tenant;
use crate::engine::catalog::Affected;
use crate::engine::problem::{ObjectRef, Problem, Reason};
use crate::engine::status::Statuses;
use crate::engine::workspace::Workspace;
use crate::metrics::Metrics;
use crate::model::{Kind, ObjectKey};
use crate::registry::Published;
use crate::registry::Registry;
use crate::sources::manifest::Object;

use lifecycle::{Cause, Lifecycle, Lifecycles};
use watch::Change;
use wiring::{Applied, Desired, FINALIZER, Retirement};

pub use run::run;

/// Settings of the operator.
#[derive(Clone, Debug)]
pub struct Options {
    /// Cluster name in system ids.
    pub cluster: String,
    /// `/metrics`, `/healthz`, `/readyz`.
    pub metrics_addr: SocketAddr,
    /// The OPA bundle API over the embedded store.
    pub bundle_addr: SocketAddr,
    /// The URL OPAs reach that bundle API at (written into their configuration).
    pub bundle_url: String,
    /// The operator's namespace (for the leader Lease).
    pub namespace: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// The embedded store for Tenants without `spec.storage`.
    pub store: PathBuf,
}

/// Back-off of a System whose publish, wiring or cleanup failed in a way that may pass.
const RETRY: crate::retry::Backoff = crate::retry::Backoff {
    initial: Duration::from_secs(1),
    max: Duration::from_secs(60),
    deadline: Duration::MAX,
};

/// Systems rebuilt and published per chunk of a batch.
const RECONCILE_CHUNK: usize = 256;

#[derive(Clone, Copy, Debug)]
struct Retry {
    at: Instant,
    attempt: u32,
}

/// The operator's state between changes.
pub struct Engine {
    ws: Workspace,
    registries: HashMap<String, Registry>,
    embedded: Registry,
    roles: HashMap<String, crate::identity::Roles>,
    /// The statuses last written.
    pub written: Arc<Statuses>,
    bundle_url: String,
    /// What was applied beside each System's bundle.
    wired: BTreeMap<ObjectKey, Applied>,
    /// Systems whose wiring must be applied, with what.
    wiring_due: BTreeMap<ObjectKey, (Desired, Arc<Tenant>)>,
    /// The ConfigMaps edict owns that exist (`namespace/name`), once their list completed: a
    /// System whose ConfigMap is gone is wired again.
    owned_config_maps: Option<BTreeSet<ObjectKey>>,
    /// Systems seen without edict's finalizer.
    unfinalized: BTreeSet<ObjectKey>,
    /// After adding finalizers failed: when to try again, and how many failures in a row.
    finalizer_retry: Option<Retry>,
    /// Systems retrying after a failure that may pass, and deleted Systems whose published
    /// bundles and wiring are still to be removed.
    lifecycles: Lifecycles,
    /// The Tenant each System was last published for, to clean up after the Tenant is gone.
    homes: BTreeMap<ObjectKey, Arc<Tenant>>,
    /// Publishes in flight at once.
    parallelism: usize,
    /// A standby's engine: publishes to the embedded store only, plans no writes elsewhere.
    follower: bool,
    /// Deleted Systems whose bundles a standby drops from its embedded store at the next round
    /// (the leader retires them everywhere; a standby only mirrors that in its own store).
    dropped: BTreeSet<ObjectKey>,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// What the OPAs report, who may report for which System, and each Tenant's store for
    /// their decisions (when this engine takes reports).
    reports: Option<fleet::Reports>,
    /// Stacks whose item in their Tenant's index is to be brought up to date (the leader's).
    stacks_to_index: BTreeSet<ObjectKey>,
}

impl Engine {
    /// An engine publishing Tenants without storage to `store`.
    pub fn new(cluster: &str, store: PathBuf) -> Self {
        let embedded = Registry::embedded(&store);
        Engine {
            ws: Workspace::empty(cluster),
            registries: HashMap::new(),
            embedded,
            roles: HashMap::new(),
            written: Arc::default(),
            bundle_url: "http://127.0.0.1:8181".to_string(),
            wired: BTreeMap::new(),
            wiring_due: BTreeMap::new(),
            owned_config_maps: None,
            unfinalized: BTreeSet::new(),
            finalizer_retry: None,
            lifecycles: Lifecycles::default(),
            homes: BTreeMap::new(),
            parallelism: 8,
            follower: false,
            dropped: BTreeSet::new(),
            metrics: Metrics::new(),
            reports: None,
            stacks_to_index: BTreeSet::new(),
        }
    }

    /// Where OPAs reach the embedded bundle API (in the ConfigMaps of Tenants without storage).
    pub fn with_bundle_url(mut self, url: &str) -> Self {
        self.bundle_url = url.trim_end_matches('/').to_string();
        self
    }

    /// Say on `changes` which embedded bundles each round replaced (for long-polling requests).
    pub fn with_changes(mut self, changes: Arc<crate::registry::store::KeyChanges>) -> Self {
        self.embedded = self.embedded.with_changes(changes);
        self
    }

    /// A standby's engine: it keeps the embedded store current (for its own bundle API) and
    /// nothing else: no Tenant storage, no finalizers, wiring or cleanup.
    pub fn following(mut self) -> Self {
        self.follower = true;
        self
    }

    /// Export into `metrics` (shared with what else the process exports, e.g. OPA reports).
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Publish up to `n` bundles at once (default 8; at least 1).
    pub fn with_parallelism(mut self, n: usize) -> Self {
        self.parallelism = n.max(1);
        self
    }

    /// Apply one change to the catalog; returns the affected Systems.
    pub fn apply(&mut self, change: Change) -> Affected {
        match change {
            Change::Apply(located) => {
                match &located.object {
                    // A Tenant's storage or identity may have changed: connect again on next use.
                    // (Not after a status-only update, such as edict's own status write.)
                    Object::Tenant(t) => {
                        let name = t.metadata.name.clone().unwrap_or_default();
                        let same =
                            self.ws.catalog.tenants().get(&name).is_some_and(|e| e.tenant.spec == t.spec);
                        if !same {
                            self.disconnect(&name);
                        }
                    }
                    Object::System(s) => {
                        let key = located.object.key();
                        let ours =
                            s.metadata.finalizers.as_ref().is_some_and(|f| f.iter().any(|f| f == FINALIZER));
                        if s.metadata.deletion_timestamp.is_some() {
                            return self.forget_system(&key, ours);
                        }
                        if !ours && !self.follower {
                            self.unfinalized.insert(key.clone());
                        }
                        // After a restart, what the status says was applied is what to release.
                        if !self.wired.contains_key(&key)
                            && let Some(status) = &s.status
                        {
                            self.wired.insert(
                                key,
                                Applied {
                                    config_map: status.config_map.clone(),
                                    service_account: status.service_account.clone(),
                                    role_arn: status.role_arn.clone(),
                                    digest: status.wiring_digest.clone(),
                                    ..Applied::default()
                                },
                            );
                        }
                    }
                    // Not after a status-only update (edict's own status write).
                    Object::Stack(stack) => {
                        let key = located.object.key();
                        if self.ws.catalog.stacks().get(&key).is_none_or(|e| e.stack.spec != stack.spec) {
                            self.stack_changed(&key);
                        }
                    }
                    _ => {}
                }
                self.ws.apply(*located)
            }
            Change::Delete(Kind::System, key) => self.forget_system(&key, false),
            Change::Delete(Kind::Tenant, key) => {
                self.disconnect(&key.name);
                self.ws.delete(Kind::Tenant, &key)
            }
            Change::Delete(kind, key) => {
                if kind == Kind::Stack {
                    self.stack_changed(&key);
                }
                self.ws.delete(kind, &key)
            }
            Change::Resync(kind, present) => {
                let known: Vec<ObjectKey> = match kind {
                    Kind::Tenant => {
                        self.ws.catalog.tenants().keys().map(|n| ObjectKey::new("", n.clone())).collect()
                    }
                    Kind::Stack => self.ws.catalog.stacks().keys().cloned().collect(),
                    Kind::System => self.ws.catalog.systems().keys().cloned().collect(),
                    Kind::Policy => self.ws.catalog.policies().keys().cloned().collect(),
                };
                let mut affected = Affected::new();
                for key in known.into_iter().filter(|k| !present.contains(k)) {
                    affected.extend(self.apply(Change::Delete(kind, key)));
                }
                affected
            }
            Change::Namespace(name, labels) => self.ws.apply_namespace(&name, labels),
            Change::NamespaceResync(present) => {
                let mut affected = Affected::new();
                for name in self.ws.catalog.namespace_names().into_iter().filter(|n| !present.contains(n)) {
                    affected.extend(self.ws.apply_namespace(&name, None));
                }
                affected
            }
            Change::OwnedConfigMap(key, true) => {
                if let Some(owned) = &mut self.owned_config_maps {
                    owned.insert(key);
                }
                Affected::new()
            }
            Change::OwnedConfigMap(key, false) => {
                if let Some(owned) = &mut self.owned_config_maps {
                    owned.remove(&key);
                }
                self.without_config_map()
            }
            Change::OwnedConfigMaps(present) => {
                self.owned_config_maps = Some(present);
                self.without_config_map()
            }
            Change::Listing(_) => Affected::new(),
            Change::Error(e) => {
                tracing::warn!("{e}");
                Affected::new()
            }
        }
    }

    /// The Systems whose applied ConfigMap is gone: to be wired again (a ConfigMap deleted by
    /// hand, or while no replica was leading).
    fn without_config_map(&self) -> Affected {
        self.wired
            .iter()
            .filter(|(key, applied)| !self.config_map_exists(key, applied))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Whether the ConfigMap applied for `key` still exists (as far as the watch has told).
    fn config_map_exists(&self, key: &ObjectKey, applied: &Applied) -> bool {
        match (&self.owned_config_maps, &applied.config_map) {
            (Some(owned), Some(name)) => owned.contains(&ObjectKey::new(&key.namespace, name)),
            _ => true,
        }
    }

    /// Forget a Tenant's connections (its storage and IAM clients) and what was checked of them.
    fn disconnect(&mut self, tenant: &str) {
        self.registries.remove(tenant);
        self.roles.remove(tenant);
        self.ws.storage_checked(tenant, None);
    }

    /// A System is being deleted (or is gone): plan the removal of what edict wrote for it.
    fn forget_system(&mut self, key: &ObjectKey, finalizer: bool) -> Affected {
        if self.follower {
            self.dropped.insert(key.clone());
            return self.ws.delete(Kind::System, key);
        }
        if !self.ws.catalog.systems().contains_key(key) && !finalizer {
            // Already forgotten (this is the deletion that follows edict's own cleanup).
            return Affected::new();
        }
        let tenant = self
            .ws
            .catalog
            .tenant_of(&key.namespace)
            .ok()
            .and_then(|t| self.ws.catalog.tenants().get(t))
            .map(|e| e.tenant.clone())
            .or_else(|| self.homes.get(key).cloned());
        let cluster = self.ws.cluster.clone();
        let tenant_name = tenant.as_ref().and_then(|t| t.metadata.name.clone()).unwrap_or_default();
        let mut applied = self.wired.remove(key).unwrap_or_default();
        if applied.managed_role.is_none()
            && applied.role_arn.is_some()
            && let Some(identity) =
                tenant.as_ref().and_then(|t| t.spec.identity.as_ref()).filter(|i| i.manage_roles)
        {
            applied.managed_role = Some(crate::identity::role_name(
                &identity.role_name_prefix,
                &cluster,
                &key.namespace,
                &key.name,
            ));
        }
        let retirement = Retirement {
            key: key.clone(),
            system_id: format!("{cluster}/{}/{}", key.namespace, key.name),
            prefix: format!("bundles/{tenant_name}/{cluster}/{}/{}", key.namespace, key.name),
            tenant,
            applied,
            finalizer,
        };
        self.lifecycles.update(key, |l| l.retire(retirement));
        self.unfinalized.remove(key);
        self.wiring_due.remove(key);
        self.homes.remove(key);
        self.ws.delete(Kind::System, key)
    }

    /// Rebuild and publish these Systems (up to [`Engine::with_parallelism`] publishes at once),
    /// and work out what each should have beside its bundle. Statuses are then [`Engine::statuses`].
    pub async fn reconcile(&mut self, keys: &[ObjectKey]) {
        let started = Instant::now();
        if let Some(reports) = &mut self.reports
            && !keys.is_empty()
        {
            // Builds change: who may report for what is worked out again.
            reports.systems = None;
        }
        if !self.dropped.is_empty() {
            let dropped = std::mem::take(&mut self.dropped);
            self.drop_from_embedded(|key| dropped.contains(key)).await;
        }
        self.index_stacks().await;
        // In chunks, so that at most a chunk's bundles are in memory at once; a published
        // bundle is not kept (a retry rebuilds it).
        for chunk in keys.chunks(RECONCILE_CHUNK) {
            self.reconcile_chunk(chunk).await;
        }
        self.metrics.round(started.elapsed());
    }

    async fn reconcile_chunk(&mut self, keys: &[ObjectKey]) {
        self.ws.rebuild(keys);
        // A Tenant whose storage cannot be reached is tried once per batch, not once per System.
        let mut unreachable: HashMap<String, Problem> = HashMap::new();
        let mut jobs = Vec::new();
        for key in keys {
            self.lifecycles.update(key, Lifecycle::attempting);
            let Some(build) = self.ws.builds.get_mut(key) else { continue };
            let Some(input) = build.input.clone() else {
                self.metrics.reconciled("System", "invalid");
                continue;
            };
            // Neither is needed once published (a retry rebuilds them); not keeping them keeps
            // the operator's memory to what statuses need.
            let bundle = build.bundle.take();
            let generations = std::mem::take(&mut build.generations);
            if self.follower
                && self
                    .ws
                    .catalog
                    .tenants()
                    .get(&input.tenant)
                    .is_some_and(|t| t.tenant.spec.storage.is_some())
            {
                // The leader publishes to the Tenant's storage.
                continue;
            }
            let connected = match unreachable.get(&input.tenant) {
                Some(p) => Err(p.clone()),
                None => self.registry(&input.tenant).await,
            };
            match connected {
                Ok(registry) => jobs.push((key.clone(), input, bundle, generations, registry)),
                Err(p) => {
                    if p.reason.is_transient() {
                        self.again(key, Cause::Publish);
                    }
                    let me = ObjectRef::namespaced("System", key);
                    let message = format!("Tenant {}: {}", input.tenant, p.message);
                    self.ws.publish_failed(key, Problem::new(me, p.reason, message));
                    unreachable.insert(input.tenant.clone(), p);
                    self.metrics.reconciled("System", "failed");
                }
            }
        }
        let publishes = crate::registry::publishing::on_tasks(
            jobs,
            self.parallelism,
            |(key, input, bundle, generations, registry)| async move {
                let began = Instant::now();
                let outcome = match &bundle {
                    Some(b) => Some(registry.publish(&input, b, &generations, SystemTime::now()).await),
                    None => None,
                };
                (key, input, bundle, registry, outcome, began.elapsed())
            },
        )
        .await;
        // What the publishes saw of each Tenant's storage: its status follows it (an outage after
        // it connected is no longer hidden behind Ready=True).
        let mut seen: BTreeMap<String, Result<Registry, String>> = BTreeMap::new();
        for (key, input, bundle, registry, outcome, took) in publishes {
            match &outcome {
                Some(Err(e)) if e.is_transient() => {
                    seen.insert(input.tenant.clone(), Err(e.to_string()));
                }
                Some(Ok(_)) => {
                    seen.entry(input.tenant.clone()).or_insert_with(|| Ok(registry.clone()));
                }
                _ => {}
            }
            match (bundle, outcome) {
                (Some(bundle), Some(Ok(done))) => {
                    let size = bundle.files.values().map(Vec::len).sum::<usize>();
                    self.metrics.published(took, size);
                    let result = if done == Published::Written { "published" } else { "unchanged" };
                    self.metrics.reconciled("System", result);
                    if done == Published::Written && !self.follower {
                        let stacks: Vec<String> = input.stacks.iter().map(|s| s.key.to_string()).collect();
                        tracing::info!(
                            system = %key,
                            revision = &bundle.revision()[..12],
                            stacks = %stacks.join(","),
                            took_ms = took.as_millis() as u64,
                            "published"
                        );
                    }
                    self.ws.published(&key, bundle.revision());
                    if let Some(t) = self.ws.catalog.tenants().get(&input.tenant) {
                        self.homes.insert(key.clone(), t.tenant.clone());
                    }
                }
                (_, Some(Err(e))) => {
                    if e.is_transient() {
                        self.again(&key, Cause::Publish);
                    }
                    self.metrics.reconciled("System", "failed");
                    tracing::warn!(system = %key, transient = e.is_transient(), "publishing failed: {e}");
                    self.ws.publish_error(&key, &e);
                }
                _ => self.metrics.reconciled("System", "invalid"),
            }
            self.plan_wiring(&key, &input, registry.verification().cloned());
            if !self.wiring_due.contains_key(&key) {
                self.lifecycles.update(&key, Lifecycle::succeeded);
            }
        }
        self.storage_seen(seen);
    }

    /// Take what this round's publishes saw of each Tenant's storage into the Tenant's status.
    fn storage_seen(&mut self, seen: BTreeMap<String, Result<Registry, String>>) {
        for (tenant, outcome) in seen {
            let Some(t) = self.ws.catalog.tenants().get(&tenant).map(|e| e.tenant.clone()) else { continue };
            if t.spec.storage.is_none() {
                continue;
            }
            let now = match outcome {
                Ok(registry) => Ok(storage_summary(&t, &registry)),
                Err(e) => Err(Problem::new(
                    ObjectRef::tenant(&tenant),
                    Reason::Unavailable,
                    format!("storage: {e}"),
                )),
            };
            self.ws.storage_checked(&tenant, Some(now));
        }
    }

    /// Work out what a System should have beside its bundle; due when it differs from what was applied.
    fn plan_wiring(
        &mut self,
        key: &ObjectKey,
        input: &crate::bundle::BundleInput,
        verification: Option<crate::registry::VerificationKey>,
    ) {
        if self.follower {
            return;
        }
        let system = self.ws.catalog.systems().get(key).map(|e| e.system.clone());
        let tenant = self.ws.catalog.tenants().get(&input.tenant).map(|e| e.tenant.clone());
        let (Some(system), Some(tenant)) = (system, tenant) else { return };
        match wiring::desired(&system, input, &tenant, &self.bundle_url, verification.as_ref()) {
            Ok(d) => {
                let applied =
                    self.wired.get(key).is_some_and(|a| a.is_from(&d) && self.config_map_exists(key, a));
                if applied && !self.ws.wiring_has_failed(key) {
                    self.wiring_due.remove(key);
                } else {
                    self.wiring_due.insert(key.clone(), (d, tenant));
                }
            }
            Err(p) => {
                self.wiring_due.remove(key);
                self.ws.wiring_failed(key, p);
            }
        }
    }

    /// Schedule another reconcile of `key` with back-off, after `cause` failed.
    fn again(&mut self, key: &ObjectKey, cause: Cause) {
        let now = Instant::now();
        self.lifecycles.update(key, |l| l.failed(cause, now, &RETRY));
    }

    /// Systems whose retry is due (reconciling them takes them off the schedule).
    pub fn due(&self, now: Instant) -> Vec<ObjectKey> {
        self.lifecycles.retries_due(now)
    }

    /// When the next retry (of a reconcile or a cleanup) is due.
    pub fn next_retry(&self) -> Option<Instant> {
        let lifecycles = self.lifecycles.wake(Instant::now());
        let finalizers = self.finalizer_retry.filter(|_| !self.unfinalized.is_empty()).map(|r| r.at);
        lifecycles.into_iter().chain(finalizers).min()
    }

    /// Whether work for the API server is waiting (finalizers, wiring, cleanups).
    pub fn has_kube_work(&self) -> bool {
        let finalizers = !self.unfinalized.is_empty() && self.finalizer_retry.is_none();
        finalizers || !self.wiring_due.is_empty() || self.lifecycles.cleanup_waiting()
    }

    async fn registry(&mut self, tenant: &str) -> Result<Registry, Problem> {
        if let Some(r) = self.registries.get(tenant) {
            return Ok(r.clone());
        }
        let entry = self.ws.catalog.tenants().get(tenant).map(|t| t.tenant.clone());
        let Some(t) = entry else { return Ok(self.embedded.clone()) };
        self.registry_of(&t).await
    }

    async fn registry_of(&mut self, t: &Tenant) -> Result<Registry, Problem> {
        let tenant = t.metadata.name.clone().unwrap_or_default();
        if t.spec.storage.is_none() {
            self.decisions_go_to(t, &self.embedded);
            return Ok(self.embedded.clone());
        }
        if let Some(r) = self.registries.get(&tenant) {
            return Ok(r.clone());
        }
        match crate::registry::connect::registry(t, "edict-operator", SystemTime::now()).await {
            Ok(r) => {
                self.decisions_go_to(t, &r);
                self.ws.storage_checked(&tenant, Some(Ok(storage_summary(t, &r))));
                self.registries.insert(tenant, r.clone());
                Ok(r)
            }
            Err(e) => {
                let reason = if e.is_transient() { Reason::Unavailable } else { Reason::DependencyFailed };
                let p = Problem::new(ObjectRef::tenant(&tenant), reason, format!("storage: {e}"));
                self.ws.storage_checked(&tenant, Some(Err(p.clone())));
                Err(p)
            }
        }
    }

    /// Send the decisions OPAs report for `t`'s Systems to `registry`'s store and index, kept
    /// as long as `t` says (when this engine takes reports).
    fn decisions_go_to(&self, t: &Tenant, registry: &Registry) {
        let Some(reports) = &self.reports else { return };
        let tenant = t.metadata.name.as_deref().unwrap_or_default();
        let days = t.spec.retention.as_ref().and_then(|r| r.decision_days);
        let sink = crate::ingest::Sink::of(registry).keeping_days(days);
        let current =
            reports.stores.read().ok().and_then(|s| s.get(tenant).map(|s| (s.keep, s.index_tenant.clone())));
        if current != Some((sink.keep, sink.index_tenant.clone()))
            && let Ok(mut stores) = reports.stores.write()
        {
            stores.insert(tenant.to_string(), sink);
        }
    }

    async fn roles_of(&mut self, t: &Tenant) -> Option<crate::identity::Roles> {
        let name = t.metadata.name.clone().unwrap_or_default();
        let (Some(storage), Some(identity)) = (&t.spec.storage, &t.spec.identity) else { return None };
        if !identity.manage_roles {
            return None;
        }
        if let Some(r) = self.roles.get(&name) {
            return Some(r.clone());
        }
        let roles = crate::identity::Roles::new(crate::registry::aws::iam(storage, identity).await);
        self.roles.insert(name, roles.clone());
        Some(roles)
    }

    /// Take the statuses the objects show (the watches' view) as what was written and reported
    /// before: after a restart or failover, only what differs from them is written, and their
    /// `lastTransitionTime`s carry over. Call once every list is complete, before the first round.
    pub fn adopt_observed_statuses(&mut self) {
        let observed = crate::engine::status::observed(&self.ws.catalog);
        self.ws.reported_before(&observed);
        if self.reports.is_some() {
            // What the statuses said of the OPAs stays until they have had time to report.
            self.ws.observe_fleet(
                observed
                    .systems
                    .iter()
                    .filter_map(|(key, s)| {
                        let live = s.conditions.iter().find(|c| c.type_ == crate::api::conditions::LIVE)?;
                        let (ns, name) = key.split_once('/')?;
                        Some((ObjectKey::new(ns, name), (s.opas.clone()?, live.clone())))
                    })
                    .collect(),
            );
        }
        self.written = Arc::new(observed);
    }

    /// Forget what the compile gate and the Policy tests parsed, checked and ran (the next
    /// build of each System does it again). For the benches: what those caches hold is the heap
    /// this frees.
    #[doc(hidden)]
    pub fn forget_checks(&mut self) {
        self.ws.checks = crate::engine::pipeline::Checks::for_opa(self.ws.checks.opa());
    }

    /// Every object's status now.
    pub fn statuses(&mut self) -> Statuses {
        // What was applied beside each bundle (a change of it touches the System: see `sync`).
        let wired = &self.wired;
        let statuses = self.ws.statuses_with(&|key, status| {
            if let Some(applied) = wired.get(key) {
                status.config_map = applied.config_map.clone();
                status.service_account = applied.service_account.clone();
                status.role_arn = applied.role_arn.clone();
                status.wiring_digest = applied.digest.clone();
            }
        });
        self.metrics.objects("Tenant", statuses.tenants.len());
        self.metrics.objects("Stack", statuses.stacks.len());
        self.metrics.objects("System", statuses.systems.len());
        self.metrics.objects("Policy", statuses.policies.len());
        statuses
    }

    /// Every object's status computed again, touched or not: what the first round after a
    /// restart does, and what every round did before statuses were incremental (for comparison).
    pub fn statuses_from_scratch(&mut self) -> Statuses {
        self.ws.touch_all();
        self.statuses()
    }

    /// Deleted Systems whose cleanup has not finished.
    pub fn retiring(&self) -> Vec<ObjectKey> {
        self.lifecycles.retiring().cloned().collect()
    }
}

/// What was checked of a Tenant's storage, for its Ready condition.
fn storage_summary(t: &Tenant, registry: &Registry) -> String {
    let Some(storage) = &t.spec.storage else { return String::new() };
    let prefix = storage.s3.prefix.trim_matches('/');
    let mut out = format!(
        "storage ready: s3://{}{}{}, DynamoDB table {}",
        storage.s3.bucket,
        if prefix.is_empty() { "" } else { "/" },
        prefix,
        storage.dynamodb.table
    );
    if let Some(kms) = &storage.kms {
        out.push_str(&format!(", data key under KMS key {}", kms.key_id));
    }
    match registry.verification() {
        Some(v) => out.push_str(&format!(", bundles signed with {} (scope {})", v.key_id, v.scope)),
        None => out.push_str(", bundles not signed"),
    }
    out
}
