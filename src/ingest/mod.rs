//! OPA's reports flowing back into edict: the Status API and the Decision Log API.
//!
//! - [`status`]: the few fields of a status report edict uses, parsed without building the rest;
//! - [`fleet`]: what each System's OPAs run, and the System's `Live` condition (pure);
//! - [`decisions`]: decision-log batches, decoded, re-masked and laid out as gzip NDJSON objects;
//! - [`reporters`]: who may report for which System.
//!
//! [`Ingest`] is what the HTTP handlers share (`POST /status`, `POST /logs` in
//! [`crate::server`]): the fleet, the object store decisions go to, the limits and counters.
//! A decision batch is acknowledged only once the store has it; a resent batch maps to the same
//! keys and is stored once.
//!
//! Each stored object is also indexed in the Tenant's index with its decisions counted per
//! minute ([`crate::registry::index::decisions`]): after the object is stored, and before the
//! batch is acknowledged, in one conditional write, so a resent batch is neither stored nor
//! counted twice, and an index that fails answers 503 like a store that fails.

pub mod decisions;
pub mod fleet;
pub mod query;
pub mod reporters;
pub mod status;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

pub use fleet::{Fleet, OpaSummary};
pub use reporters::{Denied, Reporters, ServedSystems};

use crate::model::ObjectKey;
use crate::registry::index::{IndexError, MemoryIndex, TenantIndex};
use crate::registry::store::{ObjectStore, Precondition, StoreError};
use decisions::DecodeError;
use status::{StatusError, StatusReport};

/// A System as reports address it: its Tenant, its cluster, its namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SystemKey {
    /// The Tenant the System belongs to.
    pub tenant: String,
    /// The cluster (edict's configured cluster name; `local` for `run --local`).
    pub cluster: String,
    /// The System's namespace and name.
    pub system: ObjectKey,
}

impl SystemKey {
    /// A key from its parts.
    pub fn new(
        tenant: impl Into<String>,
        cluster: impl Into<String>,
        namespace: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        SystemKey { tenant: tenant.into(), cluster: cluster.into(), system: ObjectKey::new(namespace, name) }
    }

    /// The key of `system_id` (`<cluster>/<namespace>/<name>`, all three non-empty) in `tenant`.
    pub fn parse(tenant: &str, system_id: &str) -> Option<Self> {
        let mut parts = system_id.split('/');
        let (cluster, namespace, name) = (parts.next()?, parts.next()?, parts.next()?);
        let valid = parts.next().is_none() && ![cluster, namespace, name].contains(&"");
        valid.then(|| SystemKey::new(tenant, cluster, namespace, name))
    }

    /// `<cluster>/<namespace>/<name>`: `data.context.system_id` and OPA's `labels.system_id`.
    pub fn system_id(&self) -> String {
        format!("{}/{}/{}", self.cluster, self.system.namespace, self.system.name)
    }
}

impl fmt::Display for SystemKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tenant, self.system_id())
    }
}

/// Size limits on what a reporter may send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest request body accepted, as sent (HTTP 413 above it).
    pub max_body: usize,
    /// The largest decision batch accepted once decompressed (HTTP 413 above it).
    pub max_decoded: usize,
    /// Decision batches being decoded and stored at once; one more is answered `429` with
    /// `Retry-After` (OPA keeps it and backs off), so memory stays bounded when the store is slow.
    pub max_in_flight: usize,
}

impl Default for Limits {
    /// 10 MiB as sent, 64 MiB decompressed (OPA's default upload limit is 32 KiB compressed).
    fn default() -> Self {
        Limits { max_body: 10 << 20, max_decoded: 64 << 20, max_in_flight: 64 }
    }
}

/// Why a report was refused; each maps to one HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// A decision batch that does not decode (400, 413 or 415).
    #[error(transparent)]
    Decisions(#[from] DecodeError),
    /// A status report that does not parse or has no labels (400).
    #[error(transparent)]
    Status(#[from] StatusError),
    /// The reporter may not report for the System (401 or 403).
    #[error(transparent)]
    Denied(#[from] Denied),
    /// Too many batches are being stored already (429: OPA keeps the batch and backs off).
    #[error("busy: {0} decision batches are being stored; send again later")]
    Busy(usize),
    /// The store did not take the batch (503: OPA keeps the batch and sends it again).
    #[error("decisions not stored, send again later: {0}")]
    Store(#[from] StoreError),
    /// The index did not take the batch (503: OPA keeps the batch and sends it again; the
    /// objects already stored are not stored twice).
    #[error("decisions not indexed, send again later: {0}")]
    Index(#[from] IndexError),
}

/// How long the index keeps decision batches and counts when the Tenant does not say.
pub const DEFAULT_DECISION_DAYS: u32 = 90;

/// Where a Tenant's decisions go and are read back from: its object store, and its index under
/// the name the index knows the Tenant by (`embedded` in the embedded store), with how long the
/// index keeps what it is given.
#[derive(Clone, Debug)]
pub struct Sink {
    /// Where the decision objects go.
    pub store: Arc<dyn ObjectStore>,
    /// Where they are indexed and counted.
    pub index: Arc<dyn TenantIndex>,
    /// The tenant name of the index's items.
    pub index_tenant: String,
    /// How long the index keeps a batch after its last decision, or after it arrived if OPA
    /// sent it later (`None`: for ever).
    pub keep: Option<Duration>,
}

impl Sink {
    /// The store and index of a Tenant's registry, keeping batches [`DEFAULT_DECISION_DAYS`].
    pub fn of(registry: &crate::registry::Registry) -> Self {
        Sink {
            store: registry.store().clone(),
            index: registry.index().clone(),
            index_tenant: registry.tenant().to_string(),
            keep: Some(days(DEFAULT_DECISION_DAYS)),
        }
    }

    /// A store with an index in memory only (tests and benches: the index goes with the
    /// process).
    pub fn in_memory(store: Arc<dyn ObjectStore>) -> Self {
        Sink { store, index: Arc::new(MemoryIndex::new()), index_tenant: "embedded".into(), keep: None }
    }

    /// Keep indexed batches for `days` days (a Tenant's `retention.decisionDays`).
    pub fn keeping_days(mut self, days_kept: Option<u32>) -> Self {
        self.keep = Some(days(days_kept.unwrap_or(DEFAULT_DECISION_DAYS)));
        self
    }
}

fn days(n: u32) -> Duration {
    Duration::from_secs(u64::from(n) * 86_400)
}

/// Counts since start, for metrics.
#[derive(Debug, Default)]
pub struct Counters {
    status_reports: AtomicU64,
    accepted_events: AtomicU64,
    rejected_requests: AtomicU64,
    stored_events: AtomicU64,
    duplicate_events: AtomicU64,
    remasked_events: AtomicU64,
    busy_requests: AtomicU64,
}

/// A copy of the [`Counters`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// Status reports recorded.
    pub status_reports: u64,
    /// Decision events decoded and allowed (stored or already stored, or failing to store).
    pub accepted_events: u64,
    /// Requests refused (bad input, denied, or the store failing), status and logs alike.
    pub rejected_requests: u64,
    /// Decision events written to the store.
    pub stored_events: u64,
    /// Decision events of resent batches the store already had.
    pub duplicate_events: u64,
    /// Secret admission events edict had to erase data from (OPA's masks were not applied).
    pub remasked_events: u64,
    /// Decision batches answered `429` because too many were being stored.
    pub busy_requests: u64,
}

fn add(counter: &AtomicU64, n: usize) {
    counter.fetch_add(n as u64, Ordering::Relaxed);
}

/// What storing one decision batch did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// The System the batch was for (`None` for an empty batch).
    pub system: Option<SystemKey>,
    /// Every object key of the batch (one per UTC hour it spans).
    pub keys: Vec<String>,
    /// Events in the batch.
    pub events: usize,
    /// Events written now (the rest were in objects the store already had).
    pub written: usize,
    /// Events edict erased Secret data from.
    pub remasked: usize,
}

/// Where each Tenant's decisions go, when not to the default sink, kept current by the
/// operator and `run --local` (Tenants with their own storage, and Tenants that say how long
/// decisions are kept).
pub type TenantStores = Arc<std::sync::RwLock<std::collections::HashMap<String, Sink>>>;

/// What the ingestion handlers share.
pub struct Ingest {
    fleet: Mutex<Fleet>,
    sink: Sink,
    /// The sink of each Tenant that has its own (the rest use `sink`).
    tenant_stores: Option<TenantStores>,
    /// Batches being stored now (bounded by `limits.max_in_flight`).
    in_flight: tokio::sync::Semaphore,
    /// Where the counters are exported, if anywhere.
    metrics: Option<crate::metrics::Metrics>,
    /// Whether this replica takes reports now (a standby does not: the leader keeps the fleet).
    accepting: std::sync::atomic::AtomicBool,
    reporters: Box<dyn Reporters>,
    limits: Limits,
    counters: Counters,
}

impl fmt::Debug for Ingest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ingest")
            .field("sink", &self.sink)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Ingest {
    /// Ingestion into `sink`, for the reporters `reporters` allows; OPAs silent for longer
    /// than `forget_after` are dropped from the fleet by [`Ingest::expire`].
    pub fn new(
        sink: Sink,
        reporters: impl Reporters + 'static,
        limits: Limits,
        forget_after: Duration,
    ) -> Self {
        Ingest {
            fleet: Mutex::new(Fleet::new(forget_after)),
            sink,
            reporters: Box::new(reporters),
            limits,
            counters: Counters::default(),
            tenant_stores: None,
            in_flight: tokio::sync::Semaphore::new(limits.max_in_flight),
            metrics: None,
            accepting: std::sync::atomic::AtomicBool::new(true),
        }
    }

    /// Store the decisions of a Tenant with a sink of its own there (`stores` says which Tenants
    /// have one); the others go to the sink given to [`Ingest::new`].
    pub fn with_tenant_stores(mut self, stores: TenantStores) -> Self {
        self.tenant_stores = Some(stores);
        self
    }

    /// Export the counters and the acknowledgement time as Prometheus metrics.
    pub fn with_metrics(mut self, metrics: crate::metrics::Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Take reports (`true`) or answer that another replica does (`false`: a standby).
    pub fn set_accepting(&self, accepting: bool) {
        self.accepting.store(accepting, Ordering::Relaxed);
    }

    /// Whether this replica takes reports now.
    pub fn accepting(&self) -> bool {
        self.accepting.load(Ordering::Relaxed)
    }

    fn sink_of(&self, tenant: &str) -> Sink {
        let own = self
            .tenant_stores
            .as_ref()
            .and_then(|s| s.read().unwrap_or_else(PoisonError::into_inner).get(tenant).cloned());
        own.unwrap_or_else(|| self.sink.clone())
    }

    /// The size limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Record a `POST /status` body (JSON, or gzip when `encoding` says so) received at `now`;
    /// returns the System it was for.
    pub async fn record_status(
        &self,
        body: &[u8],
        encoding: Option<&str>,
        bearer: Option<&str>,
        now: SystemTime,
    ) -> Result<SystemKey, IngestError> {
        let result = self.try_record_status(body, encoding, bearer, now).await;
        self.count(&result);
        if result.is_ok() {
            add(&self.counters.status_reports, 1);
        }
        if let Some(m) = &self.metrics {
            m.reports("status", if result.is_ok() { "accepted" } else { "rejected" }, 1);
        }
        result
    }

    async fn try_record_status(
        &self,
        body: &[u8],
        encoding: Option<&str>,
        bearer: Option<&str>,
        now: SystemTime,
    ) -> Result<SystemKey, IngestError> {
        let gunzipped;
        let body = match encoding.map(str::trim) {
            None | Some("" | "identity") => body,
            Some(e) if e.eq_ignore_ascii_case("gzip") => {
                gunzipped = decisions::gunzip(body, self.limits.max_decoded)?;
                &gunzipped[..]
            }
            Some(other) => return Err(DecodeError::UnsupportedEncoding(other.to_string()).into()),
        };
        let summary = StatusReport::parse(body)?.summary()?;
        let system = self.reporters.allows(&summary.system_id, bearer).await?;
        if let Some(tenant) = summary.tenant.as_deref().filter(|t| *t != system.tenant) {
            let message = format!(
                "labels.tenant is {tenant:?} but System {} belongs to {:?}",
                summary.system_id, system.tenant
            );
            return Err(Denied::Forbidden(message).into());
        }
        self.fleet().record(&system, &summary, now);
        Ok(system)
    }

    /// Decode, check and store a `POST /logs` body; returns once the store has every object
    /// of the batch (written now, or already there from an earlier send).
    pub async fn store_decisions(
        &self,
        body: &[u8],
        encoding: Option<&str>,
        bearer: Option<&str>,
    ) -> Result<Stored, IngestError> {
        let started = std::time::Instant::now();
        let Ok(_permit) = self.in_flight.try_acquire() else {
            add(&self.counters.busy_requests, 1);
            if let Some(m) = &self.metrics {
                m.reports("decisions", "busy", 1);
            }
            return Err(IngestError::Busy(self.limits.max_in_flight));
        };
        let result = self.try_store_decisions(body, encoding, bearer).await;
        self.count(&result);
        if let Some(m) = &self.metrics {
            match &result {
                Ok(stored) => {
                    m.reports("decisions", "accepted", stored.events as u64);
                    m.reports("decisions", "stored", stored.written as u64);
                    m.reports("decisions", "duplicate", (stored.events - stored.written) as u64);
                    m.reports("decisions", "remasked", stored.remasked as u64);
                    m.acknowledged(started.elapsed());
                }
                Err(_) => m.reports("decisions", "rejected", 1),
            }
        }
        result
    }

    async fn try_store_decisions(
        &self,
        body: &[u8],
        encoding: Option<&str>,
        bearer: Option<&str>,
    ) -> Result<Stored, IngestError> {
        let mut events = decisions::decode(body, encoding, self.limits.max_decoded)?;
        let Some(system_id) = decisions::system_id(&events)? else {
            return Ok(Stored { system: None, keys: vec![], events: 0, written: 0, remasked: 0 });
        };
        let system = self.reporters.allows(system_id, bearer).await?;
        add(&self.counters.accepted_events, events.len());
        let remasked = events
            .iter_mut()
            .map(|e| decisions::remask_secret(&mut e.value))
            .filter(|&erased| erased)
            .count();
        add(&self.counters.remasked_events, remasked);
        let mut stored =
            Stored { system: Some(system.clone()), keys: vec![], events: events.len(), written: 0, remasked };
        let sink = self.sink_of(&system.tenant);
        for object in decisions::objects(&system, &events) {
            match sink.store.put(&object.key, &object.bytes, Precondition::IfAbsent).await {
                Ok(_) => {
                    stored.written += object.events;
                    add(&self.counters.stored_events, object.events);
                }
                Err(StoreError::PreconditionFailed { .. }) => {
                    add(&self.counters.duplicate_events, object.events)
                }
                Err(e) => return Err(e.into()),
            }
            let mut indexed = object.indexed;
            // Kept from its last decision, or from now when OPA sends it late (an OPA that was
            // cut off keeps its batches and sends them when it can).
            indexed.expires = sink.keep.and_then(|keep| indexed.to.max(SystemTime::now()).checked_add(keep));
            sink.index.record_decisions(&sink.index_tenant, &indexed, &object.minutes).await?;
            stored.keys.push(object.key);
        }
        Ok(stored)
    }

    fn count<T>(&self, result: &Result<T, IngestError>) {
        if result.is_err() {
            self.count_rejected();
        }
    }

    /// Count a request refused before it reached [`Ingest`] (a body over the limit, cut off).
    pub fn count_rejected(&self) {
        add(&self.counters.rejected_requests, 1);
    }

    /// The fleet, locked (never held across an await).
    pub fn fleet(&self) -> MutexGuard<'_, Fleet> {
        self.fleet.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How `system`'s OPAs stand against its live revision (see [`Fleet::summary`]).
    pub fn summary(
        &self,
        system: &SystemKey,
        live_revision: Option<&str>,
        now: SystemTime,
        interval: Duration,
    ) -> OpaSummary {
        self.fleet().summary(system, live_revision, now, interval)
    }

    /// Forget OPAs silent for too long; returns the Systems whose fleet changed.
    pub fn expire(&self, now: SystemTime) -> Vec<SystemKey> {
        self.fleet().expire(now)
    }

    /// The counters as they are now.
    pub fn counters(&self) -> CounterSnapshot {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CounterSnapshot {
            status_reports: get(&c.status_reports),
            accepted_events: get(&c.accepted_events),
            rejected_requests: get(&c.rejected_requests),
            stored_events: get(&c.stored_events),
            duplicate_events: get(&c.duplicate_events),
            remasked_events: get(&c.remasked_events),
            busy_requests: get(&c.busy_requests),
        }
    }
}
