//! `edict run --local DIR`: the embedded default. The same engine as the operator, fed from
//! manifests in a directory, publishing to a directory store and serving OPA's bundle API.
//!
//! On each change only the files that changed are read again, only the objects that changed
//! are applied, and only the Systems those objects affect are rebuilt. A System whose new
//! build fails keeps serving its last good bundle, and its status says why.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use notify::Watcher;

use crate::engine::catalog::Affected;
use crate::engine::problem::{ObjectRef, Problem, Reason};
use crate::engine::status::Statuses;
use crate::ingest::{Denied, Ingest, SystemKey};
use crate::model::ObjectKey;
use crate::registry::Published;
use crate::registry::Registry;
use crate::server::{ServerState, router};
use crate::sources::manifest::{self, Located};

use crate::engine::workspace::Workspace;

/// Settings of `run --local`.
#[derive(Clone, Debug)]
pub struct Options {
    /// The directory of manifests.
    pub dir: PathBuf,
    /// The directory store.
    pub store: PathBuf,
    /// Where the bundle server listens.
    pub addr: SocketAddr,
    /// Cluster name in system ids.
    pub cluster: String,
}

type Identity = (crate::model::Kind, ObjectKey);

#[derive(Debug, Default)]
struct FileState {
    /// Objects of the file with a fingerprint of their content and place.
    objects: Vec<(Identity, String)>,
    /// Documents of the file that are not objects, and duplicates.
    problems: Vec<Problem>,
}

/// The state of a local run: the workspace plus which file holds which object.
#[derive(Debug)]
pub struct Local {
    dir: PathBuf,
    ignore: PathBuf,
    /// The objects and their builds.
    pub ws: Workspace,
    files: BTreeMap<PathBuf, FileState>,
    owners: BTreeMap<Identity, PathBuf>,
    /// Files some objects are gone from (the file removed, emptied or cut short), and since when:
    /// those objects stay until [`SETTLE`] has passed (an editor's save may empty a file for a
    /// moment).
    settling: BTreeMap<PathBuf, Instant>,
    /// What each System's published bundle was built for (its place in the store).
    served: BTreeMap<ObjectKey, crate::bundle::BundleInput>,
}

/// Publishes in flight at once (each on a task of its own: see `publishing::on_tasks`).
const PUBLISHING: usize = 16;

/// How long an OPA that stopped reporting is remembered at all (it stops counting as reporting
/// after three reporting intervals).
const FORGET_OPAS: Duration = Duration::from_secs(600);

/// How long objects must stay gone from their file before they are deleted.
pub const SETTLE: Duration = Duration::from_secs(1);

impl Local {
    /// Load every manifest under `dir` (except under `ignore`, where the store may live) and build everything.
    pub fn load(dir: &Path, ignore: &Path, cluster: &str) -> std::io::Result<Self> {
        let mut local = Local {
            dir: dir.to_path_buf(),
            ignore: ignore.to_path_buf(),
            ws: Workspace::empty(cluster),
            files: BTreeMap::new(),
            owners: BTreeMap::new(),
            settling: BTreeMap::new(),
            served: BTreeMap::new(),
        };
        local.rescan()?;
        Ok(local)
    }

    /// Re-read the directory: changed, new and removed files. Returns the rebuilt Systems.
    pub fn rescan(&mut self) -> std::io::Result<Vec<ObjectKey>> {
        let mut paths: Vec<PathBuf> = manifest::manifest_files(std::slice::from_ref(&self.dir))?
            .into_iter()
            .filter(|p| !p.starts_with(&self.ignore))
            .collect();
        paths.extend(self.files.keys().cloned());
        paths.sort();
        paths.dedup();
        self.reload(&paths)
    }

    /// Re-read these files. Returns the rebuilt Systems. Objects gone from a file (missing,
    /// emptied, cut short) stay until it has been so for [`SETTLE`] (see [`Local::settle`]).
    pub fn reload(&mut self, paths: &[PathBuf]) -> std::io::Result<Vec<ObjectKey>> {
        self.reload_at(paths, Instant::now(), false)
    }

    /// When the next settling file is due (see [`Local::settle`]).
    pub fn next_settle(&self) -> Option<Instant> {
        self.settling.values().min().map(|since| *since + SETTLE)
    }

    /// Re-read the files objects have been gone from for [`SETTLE`] by `now`, and take them as
    /// they are: those objects are deleted (and a copy elsewhere, refused as a duplicate until
    /// then, takes their place). Returns the rebuilt Systems.
    pub fn settle(&mut self, now: Instant) -> std::io::Result<Vec<ObjectKey>> {
        let due: Vec<PathBuf> = self
            .settling
            .iter()
            .filter(|(_, since)| **since + SETTLE <= now)
            .map(|(p, _)| p.clone())
            .collect();
        if due.is_empty() {
            return Ok(Vec::new());
        }
        for p in &due {
            tracing::info!(file = %p.display(), "objects still gone from it after {SETTLE:?}: they are deleted");
        }
        let mut rebuilt = self.reload_at(&due, now, true)?;
        rebuilt.extend(self.rescan()?);
        rebuilt.sort();
        rebuilt.dedup();
        Ok(rebuilt)
    }

    fn reload_at(
        &mut self,
        paths: &[PathBuf],
        now: Instant,
        settled: bool,
    ) -> std::io::Result<Vec<ObjectKey>> {
        let mut affected = Affected::new();
        for path in paths {
            affected.extend(self.reload_file(path, now, settled)?);
        }
        let keys: Vec<ObjectKey> = affected.into_iter().collect();
        self.ws.load_problems = self.files.values().flat_map(|f| f.problems.iter().cloned()).collect();
        self.ws.rebuild(&keys);
        Ok(keys)
    }

    fn reload_file(&mut self, path: &Path, now: Instant, settled: bool) -> std::io::Result<Affected> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let loaded = text.map(|t| manifest::parse(&path.display().to_string(), &t)).unwrap_or_default();
        let old = self.files.remove(path).unwrap_or_default();
        let mut state = FileState { objects: Vec::new(), problems: loaded.problems };
        let mut affected = Affected::new();
        let mut incoming: Vec<(Identity, String, Located)> = Vec::new();
        for located in loaded.objects {
            let id = (located.object.kind(), located.object.key());
            let print = fingerprint(&located);
            match self.owners.get(&id) {
                Some(owner) if owner != path => {
                    let first =
                        self.files.get(owner).map(|_| owner.display().to_string()).unwrap_or_default();
                    state.problems.push(Problem::new(
                        object_ref(&id),
                        Reason::DuplicateName,
                        format!("{}{} {} is already defined in {first}", located.origin.prefix(), id.0, id.1),
                    ));
                }
                _ if incoming.iter().any(|(i, _, _)| *i == id) => state.problems.push(Problem::new(
                    object_ref(&id),
                    Reason::DuplicateName,
                    format!("{}{} {} is defined twice in this file", located.origin.prefix(), id.0, id.1),
                )),
                _ => incoming.push((id, print, located)),
            }
        }
        // An object gone from its file (the file missing, emptied, cut short or cut down) may be
        // a save caught half-way: it stays until the file has been so for the settle time.
        let mut kept = false;
        for (id, print) in &old.objects {
            if !incoming.iter().any(|(i, _, _)| i == id) {
                if !settled {
                    state.objects.push((id.clone(), print.clone()));
                    kept = true;
                    continue;
                }
                affected.extend(self.ws.delete(id.0, &id.1));
                self.owners.remove(id);
            }
        }
        if kept {
            if !self.settling.contains_key(path) {
                tracing::info!(file = %path.display(), "objects gone from it stay for {SETTLE:?} in case it is being saved");
            }
            self.settling.entry(path.to_path_buf()).or_insert(now);
        } else {
            self.settling.remove(path);
        }
        for (id, print, located) in incoming {
            let unchanged = old.objects.iter().any(|(i, p)| *i == id && *p == print);
            if !unchanged {
                affected.extend(self.ws.apply(located));
            }
            self.owners.insert(id.clone(), path.to_path_buf());
            state.objects.push((id, print));
        }
        if !state.objects.is_empty() || !state.problems.is_empty() {
            self.files.insert(path.to_path_buf(), state);
        }
        Ok(affected)
    }

    /// Publish the bundles of `keys` that built, through the embedded registry (history,
    /// retention, commit log); failed builds keep their last good bundle. A System of `keys`
    /// that no longer exists is retired: its bundle and history leave the store.
    pub async fn publish(&mut self, registry: &Registry, keys: &[ObjectKey]) -> (usize, usize) {
        let (mut written, mut unchanged) = (0, 0);
        let now = SystemTime::now();
        let mut jobs = Vec::new();
        for key in keys {
            if !self.ws.catalog.systems().contains_key(key) {
                if let Some(input) = self.served.remove(key) {
                    retire(registry, &input.system_id(), &input.prefix(), now).await;
                }
                continue;
            }
            let Some(build) = self.ws.builds.get(key) else { continue };
            let (Some(input), Some(bundle)) = (&build.input, &build.bundle) else { continue };
            jobs.push((
                key.clone(),
                input.clone(),
                bundle.clone(),
                build.generations.clone(),
                registry.clone(),
            ));
        }
        let published = crate::registry::publishing::on_tasks(
            jobs,
            PUBLISHING,
            |(key, input, bundle, generations, registry)| async move {
                let outcome = registry.publish(&input, &bundle, &generations, now).await;
                (key, input, bundle, outcome)
            },
        )
        .await;
        for (key, input, bundle, outcome) in published {
            match outcome {
                Ok(done) => {
                    if done == Published::Written {
                        written += 1;
                        tracing::info!(system = %key, revision = &bundle.revision()[..12], "published");
                    } else {
                        unchanged += 1;
                    }
                    if let Some(old) = self.served.insert(key.clone(), input.clone())
                        && old.prefix() != input.prefix()
                    {
                        // Moved to another Tenant: its old place serves nothing.
                        retire(registry, &old.system_id(), &old.prefix(), now).await;
                    }
                    self.ws.published(&key, bundle.revision());
                }
                Err(e) => self.ws.publish_error(&key, &e),
            }
        }
        (written, unchanged)
    }

    /// Drop from the store the Systems it holds for this cluster that the manifests no longer
    /// declare (deleted while edict was not running). Skipped while a manifest has problems: a
    /// file that does not parse may hold them.
    pub async fn prune(&mut self, registry: &Registry) {
        if let Some(p) = self.ws.load_problems.first() {
            tracing::warn!(object = %p.object, "not dropping undeclared Systems from the store while a manifest has problems");
            return;
        }
        let declared = self.ws.catalog.systems();
        match registry
            .retire_where(&self.ws.cluster, |key| !declared.contains_key(key), SystemTime::now())
            .await
        {
            Ok(retired) => {
                for id in retired {
                    tracing::info!(system = %id, "deleted: its bundle is no longer served");
                }
            }
            Err(e) => tracing::warn!("removing the bundles of Systems no longer declared: {e}"),
        }
    }

    /// Bring the index's Stack items up to date with the manifests (the multi-cluster view of
    /// `edict stacks`): each Stack's item, written when it differs, and the items of this
    /// cluster's Stacks no longer declared removed.
    pub async fn index_stacks(&self, registry: &Registry) {
        let cluster = &self.ws.cluster;
        let declared: BTreeMap<String, &crate::api::Stack> = self
            .ws
            .catalog
            .stacks()
            .iter()
            .map(|(key, entry)| (format!("{cluster}/{}/{}", key.namespace, key.name), &*entry.stack))
            .collect();
        let indexed = match registry.index().stacks(registry.tenant()).await {
            Ok(listed) => listed,
            Err(e) => return tracing::warn!("indexing the Stacks: {e}"),
        };
        let gone = indexed.into_iter().filter(|l| {
            l.record.is_some() && l.id.starts_with(&format!("{cluster}/")) && !declared.contains_key(&l.id)
        });
        for listing in gone {
            if let Err(e) = registry.index_stack(&listing.id, None).await {
                tracing::warn!(stack = %listing.id, "indexing the Stack: {e}");
            }
        }
        for (id, stack) in declared {
            if let Err(e) = registry.index_stack(&id, Some(stack)).await {
                tracing::warn!(stack = %id, "indexing the Stack: {e}");
            }
        }
    }

    /// The Systems OPAs may report for (by `labels.system_id`): those this edict serves.
    pub fn reporters(&self) -> BTreeMap<String, SystemKey> {
        self.served
            .values()
            .map(|i| {
                (i.system_id(), SystemKey::new(&i.tenant, &i.cluster, &i.system.namespace, &i.system.name))
            })
            .collect()
    }

    /// Where the decisions of each Tenant go: the embedded `registry`, kept as long as the Tenant
    /// says (`retention.decisionDays`).
    pub fn decision_sinks(
        &self,
        registry: &Registry,
    ) -> std::collections::HashMap<String, crate::ingest::Sink> {
        self.ws
            .catalog
            .tenants()
            .iter()
            .map(|(name, entry)| {
                let days = entry.tenant.spec.retention.as_ref().and_then(|r| r.decision_days);
                (name.to_string(), crate::ingest::Sink::of(registry).keeping_days(days))
            })
            .collect()
    }

    /// Take what the served Systems' OPAs reported by `now` into their statuses (`status.opas`,
    /// the `Live` condition); returns whether any System's changed. Logs each change of `Live`.
    pub fn refresh_fleet(&mut self, ingest: &Ingest, now: SystemTime) -> bool {
        let interval = Duration::from_secs(crate::opa_config::HTTP_POLL_MAX_SECONDS);
        let systems: Vec<(ObjectKey, SystemKey, Duration)> = self
            .served
            .iter()
            .map(|(key, i)| {
                (key.clone(), SystemKey::new(&i.tenant, &i.cluster, &key.namespace, &key.name), interval)
            })
            .collect();
        self.ws.refresh_fleet(ingest, &systems, now)
    }

    /// Every object's status now.
    pub fn statuses(&mut self) -> Statuses {
        self.ws.statuses()
    }
}

/// Remove what was published for a deleted System (bundle, history, index items).
async fn retire(registry: &Registry, system_id: &str, prefix: &str, now: SystemTime) {
    match registry.retire(system_id, prefix, now).await {
        Ok(true) => tracing::info!(system = %system_id, "deleted: its bundle is no longer served"),
        Ok(false) => {}
        Err(e) => tracing::warn!(system = %system_id, "removing a deleted System's bundle: {e}"),
    }
}

fn object_ref(id: &Identity) -> ObjectRef {
    if id.0 == crate::model::Kind::Tenant {
        ObjectRef::tenant(&id.1.name)
    } else {
        ObjectRef::namespaced(id.0.as_str(), &id.1)
    }
}

/// What identifies an object's content and the place its messages point to.
fn fingerprint(located: &Located) -> String {
    let value = match &located.object {
        manifest::Object::Tenant(o) => serde_json::to_string(o),
        manifest::Object::Stack(o) => serde_json::to_string(o),
        manifest::Object::System(o) => serde_json::to_string(o),
        manifest::Object::Policy(o) => serde_json::to_string(o),
    };
    format!("{}:{:?}:{}", located.origin.line, located.origin.rego, value.unwrap_or_default())
}

/// Run until Ctrl-C: build, publish, serve, watch.
pub async fn run(opts: Options) -> anyhow::Result<()> {
    let dir =
        opts.dir.canonicalize().with_context(|| format!("manifest directory {}", opts.dir.display()))?;
    std::fs::create_dir_all(&opts.store)
        .with_context(|| format!("store directory {}", opts.store.display()))?;
    let store_dir = opts.store.canonicalize()?;
    let changes = Arc::new(crate::registry::store::KeyChanges::default());
    let registry =
        Registry::embedded(&store_dir).with_actor("edict run --local").with_changes(changes.clone());
    let mut local = Local::load(&dir, &store_dir, &opts.cluster)?;
    let all: Vec<ObjectKey> = local.ws.builds.keys().cloned().collect();
    let (written, unchanged) = local.publish(&registry, &all).await;
    local.prune(&registry).await;
    local.index_stacks(&registry).await;
    let statuses = Arc::new(RwLock::new(Arc::new(local.statuses())));
    report(&local, written, unchanged);

    let listener = tokio::net::TcpListener::bind(opts.addr)
        .await
        .with_context(|| format!("listening on {}", opts.addr))?;
    let addr = listener.local_addr()?;
    print_opa_config(addr, &local);
    // OPAs report to this edict (status, decision logs) for the Systems it serves.
    let reporters = Arc::new(RwLock::new(local.reporters()));
    let allowed = reporters.clone();
    let sinks = crate::ingest::TenantStores::new(RwLock::new(local.decision_sinks(&registry)));
    let ingest = Arc::new(
        Ingest::new(
            crate::ingest::Sink::of(&registry),
            move |id: &str, _: Option<&str>| {
                let served = allowed.read().unwrap_or_else(std::sync::PoisonError::into_inner);
                served
                    .get(id)
                    .cloned()
                    .ok_or_else(|| Denied::Forbidden(format!("edict serves no System {id}")))
            },
            crate::ingest::Limits::default(),
            FORGET_OPAS,
        )
        .with_tenant_stores(sinks.clone()),
    );
    let state = ServerState {
        store: registry.store().clone(),
        statuses: statuses.clone(),
        ingest: Some(ingest.clone()),
        changes,
    };
    let server = tokio::spawn(async move { axum::serve(listener, router(state)).await });

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Reading a file is an event too (inotify's OPEN/CLOSE_NOWRITE): ignoring those keeps
        // edict's own reads from triggering another round.
        if let Ok(event) = event
            && !matches!(event.kind, notify::EventKind::Access(_))
        {
            for path in event.paths {
                let _ = tx.send(path);
            }
        }
    })?;
    watcher.watch(&dir, notify::RecursiveMode::Recursive)?;
    tracing::info!(dir = %dir.display(), store = %store_dir.display(), "watching for changes");

    let mut fleet_tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let settle_at = local.next_settle().unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        let (rebuilt, what, started) = tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = fleet_tick.tick() => {
                let now = SystemTime::now();
                ingest.expire(now);
                if local.refresh_fleet(&ingest, now)
                    && let Ok(mut s) = statuses.write()
                {
                    *s = Arc::new(local.statuses());
                }
                continue;
            }
            _ = tokio::time::sleep_until(settle_at.into()) => {
                let started = Instant::now();
                (local.settle(started)?, "deletions applied", started)
            }
            Some(first) = rx.recv() => {
                // Gather the burst an editor's save produces: read the files only once their
                // writes have stopped for a moment (a file read mid-write is a cut-down file).
                let mut changed = vec![first];
                let until = Instant::now() + Duration::from_secs(1);
                loop {
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    let before = changed.len();
                    while let Ok(p) = rx.try_recv() {
                        changed.push(p);
                    }
                    if changed.len() == before || Instant::now() >= until {
                        break;
                    }
                }
                changed.retain(|p| !p.starts_with(&store_dir));
                changed.sort();
                changed.dedup();
                let directory_event = changed.iter().any(|p| p.is_dir() || p.extension().is_none());
                let files: Vec<PathBuf> =
                    changed.into_iter().filter(|p| is_manifest(p) && !is_hidden(p, &dir)).collect();
                if files.is_empty() && !directory_event {
                    continue;
                }
                let started = Instant::now();
                // A directory created, moved or removed may hold many files: read them all again.
                let rebuilt = if directory_event { local.rescan()? } else { local.reload(&files)? };
                (rebuilt, "change applied", started)
            }
        };
        let (written, unchanged) = local.publish(&registry, &rebuilt).await;
        local.index_stacks(&registry).await;
        if let Ok(mut r) = reporters.write() {
            *r = local.reporters();
        }
        if let Ok(mut s) = sinks.write() {
            *s = local.decision_sinks(&registry);
        }
        local.refresh_fleet(&ingest, SystemTime::now());
        if let Ok(mut s) = statuses.write() {
            *s = Arc::new(local.statuses());
        }
        tracing::info!(
            rebuilt = rebuilt.len(),
            written,
            unchanged,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "{what}"
        );
        report_problems(&local);
    }
    server.abort();
    Ok(())
}

/// Whether a path is hidden below `dir` (or under a hidden directory), like editors' swap files.
fn is_hidden(p: &Path, dir: &Path) -> bool {
    p.strip_prefix(dir)
        .map(|rel| rel.components().any(|c| c.as_os_str().to_string_lossy().starts_with('.')))
        .unwrap_or(true)
}

fn is_manifest(p: &Path) -> bool {
    matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json"))
}

fn report(local: &Local, written: usize, unchanged: usize) {
    let built = local.ws.builds.values().filter(|b| b.bundle.is_some()).count();
    tracing::info!(systems = local.ws.builds.len(), built, written, unchanged, "initial build published");
    report_problems(local);
}

fn report_problems(local: &Local) {
    for p in local.ws.problems() {
        tracing::warn!(object = %p.object, reason = %p.reason, "{}", p.message);
    }
}

fn print_opa_config(addr: SocketAddr, local: &Local) {
    let url = format!("http://{addr}");
    println!("edict serves OPA bundles on {url}/. OPA configuration for one System:\n");
    let inputs: Vec<&crate::bundle::BundleInput> =
        local.ws.builds.values().filter_map(|b| b.input.as_ref()).collect();
    match inputs.first() {
        Some(input) => {
            let mut config = crate::opa_config::render(input, &crate::opa_config::Source::Http(&url), None);
            crate::opa_config::report_to_edict(&mut config);
            println!("{}", serde_norway::to_string(&config).unwrap_or_default());
        }
        None => println!("(no System yet)\n"),
    }
    if inputs.len() > 1 {
        println!("Other bundles:");
        for input in &inputs[1..] {
            println!("  {}", input.live_key());
        }
    }
}
