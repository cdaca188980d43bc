//! `edict run`: the operator. Watches of the four kinds feed the catalog (and its binding
//! index); each change rebuilds only the Systems it affects, publishes their bundles to the
//! Tenant's storage (or the embedded directory store), and writes every status that changed.
//! Only the holder of the leader Lease writes.

pub mod leader;
pub mod status_writer;
pub mod watch;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};

use crate::catalog::Affected;
use crate::index::ObjectKey;
use crate::index_store::MemoryIndex;
use crate::problem::{ObjectRef, Problem, Reason};
use crate::registry::Registry;
use crate::status::Statuses;
use crate::store::DirStore;
use crate::workspace::Workspace;
use watch::Change;

/// Settings of the operator.
#[derive(Clone, Debug)]
pub struct Options {
    /// Cluster name in system ids.
    pub cluster: String,
    /// `/metrics`, `/healthz`, `/readyz`.
    pub metrics_addr: SocketAddr,
    /// The OPA bundle API over the embedded store.
    pub bundle_addr: SocketAddr,
    /// The operator's namespace (for the leader Lease).
    pub namespace: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// The embedded store for Tenants without `spec.storage`.
    pub store: PathBuf,
}

/// The operator's state between changes.
pub struct Engine {
    ws: Workspace,
    registries: HashMap<String, Registry>,
    embedded: Registry,
    written: Statuses,
}

impl Engine {
    /// An engine publishing Tenants without storage to `store`.
    pub fn new(cluster: &str, store: PathBuf) -> Self {
        let embedded =
            Registry::new("embedded", Arc::new(DirStore::new(store)), Arc::new(MemoryIndex::new()));
        Engine {
            ws: Workspace::empty(cluster),
            registries: HashMap::new(),
            embedded,
            written: Statuses::default(),
        }
    }

    /// Apply one change to the catalog; returns the affected Systems.
    pub fn apply(&mut self, change: Change) -> Affected {
        match change {
            Change::Apply(located) => {
                // A Tenant's storage may have changed: connect again on next use.
                if let crate::manifest::Object::Tenant(t) = &located.object {
                    self.registries.remove(t.metadata.name.as_deref().unwrap_or_default());
                }
                self.ws.catalog.apply(*located)
            }
            Change::Delete(kind, key) => self.ws.catalog.delete(kind, &key),
            Change::Resync(kind, present) => {
                let known: Vec<ObjectKey> = match kind {
                    "Tenant" => {
                        self.ws.catalog.tenants().keys().map(|n| ObjectKey::new("", n.clone())).collect()
                    }
                    "Stack" => self.ws.catalog.stacks().keys().cloned().collect(),
                    "System" => self.ws.catalog.systems().keys().cloned().collect(),
                    _ => self.ws.catalog.policies().keys().cloned().collect(),
                };
                let mut affected = Affected::new();
                for key in known.into_iter().filter(|k| !present.contains(k)) {
                    affected.extend(self.ws.catalog.delete(kind, &key));
                }
                affected
            }
            Change::Error(e) => {
                tracing::warn!("{e}");
                Affected::new()
            }
        }
    }

    /// Rebuild and publish these Systems. Statuses are then [`Engine::statuses`].
    pub async fn reconcile(&mut self, keys: &[ObjectKey]) {
        self.ws.rebuild(keys);
        for key in keys {
            let Some(build) = self.ws.builds.get(key) else { continue };
            let (Some(input), Some(bundle)) = (build.input.clone(), build.bundle.clone()) else { continue };
            let generations = build.generations.clone();
            let registry = match self.registry(&input.tenant).await {
                Ok(r) => r,
                Err(p) => {
                    self.ws.publish_failed(key, p);
                    continue;
                }
            };
            match registry.publish(&input, &bundle, &generations, SystemTime::now()).await {
                Ok(_) => self.ws.published(key, bundle.revision()),
                Err(e) => {
                    let me = ObjectRef::namespaced("System", key);
                    self.ws.publish_failed(
                        key,
                        Problem::new(me, Reason::DependencyFailed, format!("publishing: {e}")),
                    );
                }
            }
        }
    }

    async fn registry(&mut self, tenant: &str) -> Result<Registry, Problem> {
        if let Some(r) = self.registries.get(tenant) {
            return Ok(r.clone());
        }
        let entry = self.ws.catalog.tenants().get(tenant).map(|t| t.tenant.clone());
        let Some(t) = entry else { return Ok(self.embedded.clone()) };
        if t.spec.storage.is_none() {
            return Ok(self.embedded.clone());
        }
        match crate::connect::registry(&t, "edict-operator", SystemTime::now()).await {
            Ok(r) => {
                self.registries.insert(tenant.to_string(), r.clone());
                Ok(r)
            }
            Err(e) => Err(Problem::new(
                ObjectRef::tenant(tenant),
                Reason::DependencyFailed,
                format!("storage: {e}"),
            )),
        }
    }

    /// Every object's status now.
    pub fn statuses(&mut self) -> Statuses {
        self.ws.statuses()
    }
}

/// Run the operator until SIGTERM/Ctrl-C (releasing leadership) or until leadership is lost.
pub async fn run(opts: Options) -> anyhow::Result<()> {
    let client = Client::try_default().await.context("connecting to the Kubernetes API server")?;
    let ready = Arc::new(RwLock::new(false));
    let listener = tokio::net::TcpListener::bind(opts.metrics_addr)
        .await
        .with_context(|| format!("listening on {}", opts.metrics_addr))?;
    let probes = probes(ready.clone());
    tokio::spawn(async move { axum::serve(listener, probes).await });

    // The embedded store's bundle API, for Tenants without storage (every replica serves it).
    let statuses = Arc::new(RwLock::new(Statuses::default()));
    let store: Arc<dyn crate::store::ObjectStore> = Arc::new(DirStore::new(opts.store.clone()));
    let bundles = tokio::net::TcpListener::bind(opts.bundle_addr)
        .await
        .with_context(|| format!("listening on {}", opts.bundle_addr))?;
    let api = crate::server::router(crate::server::ServerState { store, statuses: statuses.clone() });
    tokio::spawn(async move { axum::serve(bundles, api).await });

    let lease = leader::LeaseConfig::new(&opts.namespace, &opts.identity);
    let leases: Api<Lease> = Api::namespaced(client.clone(), &opts.namespace);
    tracing::info!(identity = %opts.identity, lease = %lease.name, "waiting for leadership");
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            led = leader::round(&leases, &lease) => if led.unwrap_or(false) { break },
        }
        tokio::time::sleep(lease.retry).await;
    }
    tracing::info!(identity = %opts.identity, "leading");
    if let Ok(mut r) = ready.write() {
        *r = true;
    }

    let statuses_view = statuses;
    let mut engine = Engine::new(&opts.cluster, opts.store.clone());
    let reporter =
        kube::runtime::events::Reporter { controller: "edict".into(), instance: Some(opts.identity.clone()) };
    let recorder = kube::runtime::events::Recorder::new(client.clone(), reporter);
    let mut changes = watch::all(client.clone()).boxed();
    let mut renew = tokio::time::interval(lease.retry);
    let mut pending: BTreeSet<ObjectKey> = BTreeSet::new();
    let result = loop {
        let quiet =
            tokio::time::sleep(Duration::from_millis(if pending.is_empty() { 3_600_000 } else { 50 }));
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break Ok(()),
            _ = renew.tick() => {
                if !leader::round(&leases, &lease).await.unwrap_or(false) {
                    break Err(anyhow::anyhow!("lost leadership of lease {}/{}", lease.namespace, lease.name));
                }
            }
            Some(change) = changes.next() => pending.extend(engine.apply(change)),
            _ = quiet => {
                let keys: Vec<ObjectKey> = std::mem::take(&mut pending).into_iter().collect();
                engine.reconcile(&keys).await;
                let statuses = engine.statuses();
                let failures = status_writer::write(&client, &engine.written, &statuses).await;
                for f in &failures {
                    tracing::warn!("{f}");
                }
                if let Ok(mut shown) = statuses_view.write() {
                    *shown = statuses.clone();
                }
                if failures.is_empty() {
                    status_writer::publish(&recorder, &status_writer::notices(&engine.written, &statuses)).await;
                    engine.written = statuses;
                }
            }
        }
    };
    let _ = leader::release(client, &lease).await;
    result
}

fn probes(ready: Arc<RwLock<bool>>) -> axum::Router {
    use axum::http::StatusCode;
    axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" })).route(
        "/readyz",
        axum::routing::get(move || {
            let ready = ready.read().map(|r| *r).unwrap_or(false);
            async move { if ready { (StatusCode::OK, "leading") } else { (StatusCode::OK, "standby") } }
        }),
    )
}
