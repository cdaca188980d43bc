//! The operator's run loop: leadership, the watches, rounds, status writes and events, and the
//! probes (`/healthz`, `/readyz`, `/metrics`).

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};

use super::rounds::{self, Rounds};
use super::watch;
use super::{Engine, Options, RETRY, leader, status_writer};
use crate::engine::status::Statuses;
use crate::metrics::Metrics;
use crate::model::ObjectKey;
use crate::registry::store::DirStore;

/// Run the operator until SIGTERM or Ctrl-C (releasing leadership) or until leadership is lost.
pub async fn run(opts: Options) -> anyhow::Result<()> {
    let client = Client::try_default().await.context("connecting to the Kubernetes API server")?;
    let ready = Readiness::default();
    // Publishes to the embedded store wake the bundle requests that long-poll.
    let changes = Arc::new(crate::registry::store::KeyChanges::default());
    // OPA reports (status, decision logs): only the leader takes them, each checked with a
    // TokenReview against the System's ServiceAccount.
    let reporters = crate::operator::reports::ReporterMap::default();
    let metrics = crate::metrics::Metrics::new();
    let stores = crate::ingest::TenantStores::default();
    let engine = Engine::new(&opts.cluster, opts.store.clone())
        .with_bundle_url(&opts.bundle_url)
        .with_changes(changes.clone())
        .with_metrics(metrics.clone());
    let ingest = Arc::new(
        crate::ingest::Ingest::new(
            crate::ingest::Sink::of(&engine.embedded),
            crate::operator::reports::TokenReviews::new(client.clone(), reporters.clone()),
            crate::ingest::Limits::default(),
            Duration::from_secs(600),
        )
        .with_tenant_stores(stores.clone())
        .with_metrics(metrics),
    );
    ingest.set_accepting(false);
    let mut engine = engine.with_reports(ingest.clone(), reporters, stores);
    let listener = tokio::net::TcpListener::bind(opts.metrics_addr)
        .await
        .with_context(|| format!("listening on {}", opts.metrics_addr))?;
    let probes = probes(ready.clone(), engine.metrics.clone());
    tokio::spawn(async move { axum::serve(listener, probes).await });

    // The embedded store's bundle API, for Tenants without storage (every replica serves it).
    let statuses = Arc::new(RwLock::new(Arc::new(Statuses::default())));
    let store: Arc<dyn crate::registry::store::ObjectStore> = Arc::new(DirStore::new(opts.store.clone()));
    let bundles = tokio::net::TcpListener::bind(opts.bundle_addr)
        .await
        .with_context(|| format!("listening on {}", opts.bundle_addr))?;
    let api = crate::server::router(crate::server::ServerState {
        store,
        statuses: statuses.clone(),
        ingest: Some(ingest.clone()),
        changes: changes.clone(),
    });
    tokio::spawn(async move { axum::serve(bundles, api).await });

    let lease = leader::LeaseConfig::new(&opts.namespace, &opts.identity);
    let leases: Api<Lease> = Api::namespaced(client.clone(), &opts.namespace);
    let mut stop = std::pin::pin!(shutdown());
    tracing::info!(identity = %opts.identity, lease = %lease.name, "waiting for leadership");
    {
        // A standby keeps its own embedded store current, so that its bundle API (behind the
        // same Service) serves what the leader's does; it writes nothing else anywhere.
        let mut follower = Engine::new(&opts.cluster, opts.store.clone())
            .with_bundle_url(&opts.bundle_url)
            .with_changes(changes.clone())
            .following();
        let mut changes = watch::all(client.clone()).boxed();
        let mut look = tokio::time::interval(lease.retry);
        let mut pending: BTreeSet<ObjectKey> = BTreeSet::new();
        let mut rounds = Rounds::new();
        let mut pruned = false;
        loop {
            let wake = rounds.due().unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                _ = &mut stop => return Ok(()),
                _ = look.tick() => if leader::round(&leases, &lease).await.unwrap_or(false) { break },
                Some(change) = changes.next() => {
                    rounds.observe(&change, Instant::now());
                    pending.extend(follower.apply(change));
                    ready.follow(&rounds, "standby");
                }
                _ = tokio::time::sleep_until(wake.into()) => {
                    if !pruned {
                        follower.prune_embedded().await;
                        pruned = true;
                    }
                    rounds.started();
                    let keys: Vec<ObjectKey> = std::mem::take(&mut pending).into_iter().collect();
                    follower.reconcile(&keys).await;
                    if let Ok(mut shown) = statuses.write() {
                        *shown = Arc::new(follower.statuses());
                    }
                }
            }
        }
    }
    // The leader starts from a fresh list of everything: nothing the standby saw is trusted,
    // and no round runs before every list is complete.
    tracing::info!(identity = %opts.identity, "leading");
    ingest.set_accepting(true);
    let mut fleet_tick = tokio::time::interval(Duration::from_secs(2));
    let mut fleet_due = false;

    let statuses_view = statuses;
    let reporter =
        kube::runtime::events::Reporter { controller: "edict".into(), instance: Some(opts.identity.clone()) };
    let recorder = kube::runtime::events::Recorder::new(client.clone(), reporter);
    let mut changes = watch::all(client.clone()).boxed();
    // The lease is renewed beside the work, so that a long round (the first one at 10,000
    // Systems takes tens of seconds) cannot let it lapse while this replica still writes.
    let (renewer, mut lost) = leader::keep(leases.clone(), lease.clone());
    let mut pending: BTreeSet<ObjectKey> = BTreeSet::new();
    let mut rounds = Rounds::new();
    let mut adopted = false;
    // Status writes that failed (the API server is away) are tried again with back-off.
    let mut status_retry: Option<(Instant, u32)> = None;
    let result = loop {
        let now = Instant::now();
        let synced = rounds.synced();
        let wake = [
            rounds.due(),
            (synced && engine.has_kube_work()).then(|| now + rounds::QUIET),
            engine.next_retry().filter(|_| synced),
            status_retry.map(|(at, _)| at).filter(|_| synced),
            (fleet_due && synced && adopted).then_some(now),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(now + Duration::from_secs(3600));
        tokio::select! {
            _ = &mut stop => break Ok(()),
            _ = lost.changed() => {
                break Err(anyhow::anyhow!("lost leadership of lease {}/{}", lease.namespace, lease.name));
            }
            Some(change) = changes.next() => {
                rounds.observe(&change, Instant::now());
                pending.extend(engine.apply(change));
                ready.follow(&rounds, "leading");
            }
            _ = fleet_tick.tick() => {
                // What the OPAs reported: statuses are written when a System's summary changed.
                if adopted && engine.refresh_fleet(std::time::SystemTime::now()) {
                    fleet_due = true;
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => {
                if !adopted {
                    engine.adopt_observed_statuses();
                    engine.prune_embedded().await;
                    adopted = true;
                }
                rounds.started();
                fleet_due = false;
                pending.extend(engine.due(Instant::now()));
                let keys: Vec<ObjectKey> = std::mem::take(&mut pending).into_iter().collect();
                engine.reconcile(&keys).await;
                engine.refresh_fleet(std::time::SystemTime::now());
                if *lost.borrow() {
                    // Another replica may lead by now: write nothing more.
                    break Err(anyhow::anyhow!("lost leadership of lease {}/{}", lease.namespace, lease.name));
                }
                let mut notices = engine.sync(&client).await;
                let statuses = engine.statuses();
                let failures = status_writer::write(&client, &engine.written, &statuses).await;
                for f in &failures {
                    tracing::warn!("{f}");
                }
                // One copy, shared by the bundle API's /v1/status and the next round's diff.
                let statuses = Arc::new(statuses);
                if let Ok(mut shown) = statuses_view.write() {
                    *shown = statuses.clone();
                }
                if failures.is_empty() {
                    status_retry = None;
                    notices.extend(status_writer::notices(&engine.written, &statuses));
                    engine.written = statuses;
                } else {
                    let attempt = status_retry.map_or(0, |(_, a)| a + 1);
                    status_retry = Some((Instant::now() + RETRY.delay(attempt), attempt));
                }
                for n in notices.iter().filter(|n| n.warning) {
                    engine.metrics.error(&n.reason);
                }
                engine.with_uids(&mut notices);
                status_writer::publish(&recorder, &notices).await;
            }
        }
    };
    renewer.abort();
    if result.is_ok() {
        let _ = leader::release(client, &lease).await;
    }
    result
}

/// What `/readyz` says: ready (as leader or standby) once this replica's watches have listed
/// every kind, so that its bundle API serves the whole cluster; before that, 503 and why.
/// A replica that was ready stays so through a re-list or a change of leadership: its store
/// still holds what it served.
#[derive(Clone)]
struct Readiness(Arc<RwLock<Result<&'static str, String>>>);

impl Default for Readiness {
    fn default() -> Self {
        let waiting = Rounds::new().waiting_for().join(", ");
        Readiness(Arc::new(RwLock::new(Err(format!("waiting for the first lists of: {waiting}")))))
    }
}

impl Readiness {
    fn get(&self) -> Result<&'static str, String> {
        self.0.read().map(|r| r.clone()).unwrap_or_else(|_| Err("readiness unknown".into()))
    }

    /// Follow the watches' progress; `role` is what a ready replica says it is.
    fn follow(&self, rounds: &Rounds, role: &'static str) {
        let Ok(mut state) = self.0.write() else { return };
        match (&*state, rounds.synced()) {
            (_, true) => *state = Ok(role),
            (Err(_), false) => {
                *state = Err(format!("waiting for the first lists of: {}", rounds.waiting_for().join(", ")))
            }
            (Ok(_), false) => {}
        }
    }
}

/// Resolves on SIGTERM (what Kubernetes sends) or Ctrl-C.
async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}

fn probes(ready: Readiness, metrics: Metrics) -> axum::Router {
    use axum::http::{StatusCode, header};
    axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route(
            "/readyz",
            axum::routing::get(move || {
                let state = ready.get();
                async move {
                    match state {
                        Ok(role) => (StatusCode::OK, role.to_string()),
                        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
                    }
                }
            }),
        )
        .route(
            "/metrics",
            axum::routing::get(move || {
                let text = metrics.render();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        text,
                    )
                }
            }),
        )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Instant;

    use super::*;
    use crate::model::Kind;
    use crate::operator::watch::Change;

    #[test]
    fn ready_only_once_every_list_completed_and_through_a_relist() {
        let ready = Readiness::default();
        let why = ready.get().expect_err("not ready at start");
        assert_eq!(why, "waiting for the first lists of: Namespace, Policy, Stack, System, Tenant");
        let mut rounds = Rounds::new();
        let now = Instant::now();
        for kind in [Kind::Tenant, Kind::Stack, Kind::System] {
            rounds.observe(&Change::Resync(kind, BTreeSet::new()), now);
            ready.follow(&rounds, "standby");
        }
        assert_eq!(ready.get(), Err("waiting for the first lists of: Namespace, Policy".to_string()));
        rounds.observe(&Change::Resync(Kind::Policy, BTreeSet::new()), now);
        rounds.observe(&Change::NamespaceResync(BTreeSet::new()), now);
        ready.follow(&rounds, "standby");
        assert_eq!(ready.get(), Ok("standby"));
        // Leading: new watches list again; the replica's store still serves meanwhile.
        let mut leading = Rounds::new();
        leading.observe(&Change::Listing("Stack"), now);
        ready.follow(&leading, "leading");
        assert_eq!(ready.get(), Ok("standby"));
        for kind in Kind::ALL {
            leading.observe(&Change::Resync(kind, BTreeSet::new()), now);
        }
        leading.observe(&Change::NamespaceResync(BTreeSet::new()), now);
        ready.follow(&leading, "leading");
        assert_eq!(ready.get(), Ok("leading"));
    }
}
