//! The tenant index: what edict published, where, and from what — served by DynamoDB in
//! production (`dynamodb::DynamoIndex`, feature `aws`) and by an in-memory index for
//! `edict run --local` and tests ([`MemoryIndex`]). Both have the same semantics, including
//! every conditional write.
//!
//! # Model
//!
//! One table (per tenant, or shared: every partition key starts with the tenant), keys `PK`
//! (string) and `SK` (string), one global secondary index `GSI1` (`GSI1PK`, `GSI1SK`, projection
//! `ALL`) and TTL on `expiresAt`. Every read is a `GetItem` or a `Query` on one partition; nothing
//! scans the table. `<t>` is the tenant (it may not contain `#`), `<sys>` a system id
//! (`<cluster>/<namespace>/<name>`), `<stk>` a stack id, `<seq>` a commit id (see
//! [`commit_id`]: the entry's time in milliseconds, then 20 bits that tell apart entries of
//! one millisecond) zero-padded to 20 digits, `<ts>` an RFC 3339 UTC timestamp with nanoseconds
//! (`2025-01-02T03:04:05.000000000Z`: fixed width, so string order is time order).
//!
//! | Item | `PK` | `SK` | `GSI1PK` | `GSI1SK` | Other attributes |
//! |---|---|---|---|---|---|
//! | system | `T#<t>#SYS#<sys>` | `SYSTEM` | `T#<t>#SYSTEMS` | `SYS#<sys>` | `systemId`, `systemType`, `labels` (M), `live` (M: `revision`, `key`, `etag`, `sha256`, `inputs` (M of N), `stacks` (L of S), `publishedAt`), `version` |
//! | binding | `T#<t>#SYS#<sys>` | `BIND#<stk>` | `T#<t>#STACKS` | `STK#<stk>#SYS#<sys>` | `systemId`, `stackId` |
//! | revision | `T#<t>#SYS#<sys>` | `REV#<revision>` | `T#<t>#REVS#<sys>` | `<ts>#<revision>` | `revision`, `key`, `etag`, `size`, `sha256`, `createdAt` |
//! | stack | `T#<t>#STK#<stk>` | `STACK` | `T#<t>#STACKS` | `STK#<stk>` | `stackId`, `stackType`, `selector` (S: JSON), `version` |
//! | commit | `T#<t>#LOG` | `C#<seq>` | – | – | `seq`, `actor`, `action`, `systemId`?, `revision`?, `time`, `payload` (B), `payloadKeyId`? |
//! | data key | `T#<t>#KEYS` | `KEY#<key id>` | – | – | `keyId`, `ciphertext` (B), `createdAt`, `state` (`current`/`retired`) |
//! | decision batch, decision minute | see [`decisions`] | | – | – | |
//!
//! Every item also carries `tenant` and `itemType` (the first column, lower case) so that an
//! export of the table explains itself.
//!
//! Access patterns:
//! - a system, a stack: `GetItem` (strongly consistent);
//! - stacks of a system: `Query PK = T#<t>#SYS#<sys> AND begins_with(SK, "BIND#")`;
//! - systems of a stack: `Query GSI1 GSI1PK = T#<t>#STACKS AND begins_with(GSI1SK, "STK#<stk>#SYS#")`
//!   (eventually consistent in DynamoDB);
//! - every system of the tenant, across clusters, with its live revision (the multi-cluster
//!   view): `Query GSI1 GSI1PK = T#<t>#SYSTEMS`; every stack with the systems bound to it:
//!   `Query GSI1 GSI1PK = T#<t>#STACKS` (stack items sort before their bindings). One partition
//!   key per tenant: DynamoDB splits a hot one by sort key, and the items spread over many;
//! - revisions newest first: `Query GSI1 GSI1PK = T#<t>#REVS#<sys>`, descending — the revision's
//!   own key (`REV#<revision>`) makes recording it idempotent, the index orders it by time;
//! - the commit log newest first: `Query PK = T#<t>#LOG AND begins_with(SK, "C#")`, descending;
//! - data keys: `Query PK = T#<t>#KEYS`;
//! - a System's decision objects in a time range: `Query PK = T#<t>#DEC#<sys> AND SK BETWEEN …`;
//!   its per-minute counts: one such `Query` per counter shard (see [`decisions`]).
//!
//! # Concurrency
//!
//! Systems and stacks carry a `version` (1 on creation, +1 on every write). Writers pass the
//! version they read; a stale one is [`IndexError::Conflict`] and changes nothing, so two
//! operator replicas (or two clusters) never silently overwrite each other. Commit entries and
//! data keys are never overwritten (`attribute_not_exists`). The commit log has no head item
//! that every append would have to move: an entry's key is its time, so parallel publishers of
//! one tenant append without contending (an earlier model kept a `HEAD` item with the last
//! sequence; its entries `C#00…01`, `C#00…02`, … sort before every time-ordered one, and the
//! item is left alone). Decision batches and counters set `expiresAt` (the table's TTL); nothing
//! else does.

pub mod decisions;
mod disk;
#[cfg(feature = "aws")]
pub mod dynamodb;
pub mod memory;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

pub use decisions::{DecisionBatch, MinuteCounts};
pub use memory::MemoryIndex;

/// Bits of a commit id below its milliseconds.
const COMMIT_ID_LOW_BITS: u32 = 20;

/// A commit log entry's id for an entry made at `time`: its milliseconds since the epoch in
/// the high bits (ids sort as the entries' times), `low` (masked to 20 bits: a writer's random
/// draw, so that parallel writers rarely pick the same id) below, and at least `after + 1`, so
/// that a writer's own entries keep their order when its clock goes back.
pub fn commit_id(time: SystemTime, low: u64, after: u64) -> u64 {
    let millis = time.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let id = (millis << COMMIT_ID_LOW_BITS) | (low & ((1 << COMMIT_ID_LOW_BITS) - 1));
    id.max(after.saturating_add(1))
}

/// The time in a commit id (to the millisecond).
pub fn commit_id_time(id: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(id >> COMMIT_ID_LOW_BITS)
}

/// The largest number of writes in one `TransactWriteItems` call.
pub const MAX_TRANSACTION_ITEMS: usize = 100;

/// A failure of the index, naming what was being done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    /// A conditional write whose condition did not hold: another writer got there first.
    /// Nothing was changed. Re-read and decide again.
    #[error("conflict on {what}: expected {expected}, found {found}")]
    Conflict {
        /// The item (`system c1/ns/web of tenant acme`).
        what: String,
        /// What the writer expected (`version 3`, `absent`).
        expected: String,
        /// What the index holds (`version 4`, `absent`, `an existing entry`).
        found: String,
    },
    /// The item the operation needs does not exist.
    #[error("{what} not found")]
    NotFound {
        /// The item.
        what: String,
    },
    /// The index could not be reached or is busy (network, timeout, throttling, 5xx): retry
    /// later with back-off.
    #[error("DynamoDB table {table}: {op}: index unavailable (will retry): {message}")]
    Unavailable {
        /// The table.
        table: String,
        /// The operation (`PutItem`, `Query`, ...).
        op: &'static str,
        /// What the client or the service said.
        message: String,
    },
    /// The index refuses the operation in a way that waits for a human: the table is missing or
    /// has the wrong shape, access is denied, credentials are wrong.
    #[error("{op} on table {table}: {code}: {message}")]
    Misconfigured {
        /// The table.
        table: String,
        /// The operation (`DescribeTable`, `PutItem`, ...).
        op: &'static str,
        /// The service's error code (`ResourceNotFoundException`, `AccessDeniedException`,
        /// `TableShape`, ...).
        code: String,
        /// The service's message, or what differs.
        message: String,
    },
    /// The caller passed something the index cannot store (empty id, `#` in a tenant, a time
    /// outside years 1970–9999, ...).
    #[error("invalid {what}: {message}")]
    Invalid {
        /// What was invalid.
        what: String,
        /// Why.
        message: String,
    },
    /// The embedded index's file could not be read or written (disk full, permissions): retry
    /// later.
    #[error("index file {path}: {message}")]
    Disk {
        /// The file.
        path: String,
        /// What the file system said.
        message: String,
    },
    /// An item that does not decode (missing or mistyped attribute): written by something else.
    #[error("corrupt item {what}: {message}")]
    Corrupt {
        /// The item.
        what: String,
        /// What is wrong with it.
        message: String,
    },
}

impl IndexError {
    /// Whether retrying the same operation later may succeed without anyone changing anything
    /// (network, throttling). A [`IndexError::Conflict`] is not transient: re-read first.
    pub fn is_transient(&self) -> bool {
        matches!(self, IndexError::Unavailable { .. } | IndexError::Disk { .. })
    }

    /// Whether this is a failed condition (optimistic concurrency).
    pub fn is_conflict(&self) -> bool {
        matches!(self, IndexError::Conflict { .. })
    }
}

/// A result of the index.
pub type Result<T, E = IndexError> = std::result::Result<T, E>;

/// A System as indexed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SystemRecord {
    /// `<cluster>/<namespace>/<name>`.
    pub id: String,
    /// The system type (`kubernetes`, `envoy`, `custom`).
    pub system_type: String,
    /// The System's labels (what stack selectors match).
    pub labels: BTreeMap<String, String>,
    /// The published bundle, if any. Written only by [`TenantIndex::set_live`];
    /// [`TenantIndex::put_system`] ignores it.
    pub live: Option<LiveRevision>,
    /// The index's version of the item: 1 on creation, +1 on every write. Set by the index;
    /// ignored on writes (pass the expected version explicitly).
    pub version: u64,
}

/// The revision of a System's bundle that OPAs download.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LiveRevision {
    /// The bundle revision (sha256 of its content, from the manifest).
    pub revision: String,
    /// The S3 key of the live bundle.
    pub key: String,
    /// The object's ETag.
    pub etag: String,
    /// Hex sha256 of the bundle bytes.
    pub sha256: String,
    /// The generations of the inputs the revision was built from (input id such as
    /// `System/ns/name`, `Stack/ns/name`, `Policy/ns/name` → `metadata.generation`).
    pub inputs: BTreeMap<String, i64>,
    /// The Stacks bound to the System at this revision (`<namespace>/<name>`, sorted).
    #[serde(default)]
    pub stacks: Vec<String>,
    /// When it was published (`None` in items written before edict recorded it).
    #[serde(default)]
    pub published: Option<SystemTime>,
}

/// A Stack of the tenant and the systems bound to it, as [`TenantIndex::stacks`] lists them.
#[derive(Clone, Debug, PartialEq)]
pub struct StackListing {
    /// The stack id.
    pub id: String,
    /// Its item, when one was written (bindings are written by publishes, stack items by the
    /// operator).
    pub record: Option<StackRecord>,
    /// The systems bound to it, sorted.
    pub systems: Vec<String>,
}

/// A Stack as indexed.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StackRecord {
    /// The stack id (`<namespace>/<name>`).
    pub id: String,
    /// The system type the stack applies to.
    pub stack_type: String,
    /// The selector, as JSON (stored as its compact serialization).
    pub selector: serde_json::Value,
    /// The index's version of the item; set by the index, ignored on writes.
    pub version: u64,
}

/// A bundle revision kept for rollback.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RevisionRecord {
    /// The bundle revision.
    pub revision: String,
    /// The S3 key of the revision's object (`bundles/…/revisions/<revision>.tar.gz`).
    pub key: String,
    /// The object's ETag.
    pub etag: String,
    /// Size in bytes.
    pub size: u64,
    /// Hex sha256 of the bundle bytes.
    pub sha256: String,
    /// When it was published (caller-supplied; stored as RFC 3339 with nanoseconds).
    pub created: SystemTime,
}

/// One entry of the tenant's append-only commit log.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CommitRecord {
    /// The entry's id, its place in the log (see [`commit_id`]). Set by the index on reads;
    /// ignored by [`TenantIndex::append_commit`].
    pub sequence: u64,
    /// Who made the change (a user, `system:serviceaccount:…`, a controller).
    pub actor: String,
    /// What changed, in a line (`publish`, `rollback`, `delete`, ...).
    pub action: String,
    /// The system concerned, if any.
    pub system: Option<String>,
    /// The revision concerned, if any.
    pub revision: Option<String>,
    /// When (caller-supplied).
    pub time: SystemTime,
    /// Opaque bytes: the change's details, encrypted by the caller with a tenant data key.
    pub payload: Vec<u8>,
    /// The id of the data key that encrypted `payload`, if any.
    pub payload_key_id: Option<String>,
}

/// Whether a data key encrypts new data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum KeyState {
    /// The key new data is encrypted with (one per tenant).
    Current,
    /// A rotated-out key, kept to decrypt old data.
    Retired,
}

impl KeyState {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Current => "current",
            KeyState::Retired => "retired",
        }
    }

    /// Parse the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "current" => Some(KeyState::Current),
            "retired" => Some(KeyState::Retired),
            _ => None,
        }
    }
}

/// A tenant data key, wrapped (encrypted) by the tenant's KMS master key.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WrappedKey {
    /// The key's id (unique per tenant).
    pub key_id: String,
    /// The KMS ciphertext blob of the data key.
    pub ciphertext: Vec<u8>,
    /// When it was generated (caller-supplied).
    pub created: SystemTime,
    /// Current or retired.
    pub state: KeyState,
}

/// What [`TenantIndex::set_bindings`] changed, sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BindingChange {
    /// Systems newly bound to the stack.
    pub added: Vec<String>,
    /// Systems no longer bound to the stack.
    pub removed: Vec<String>,
}

/// The read paths of the index, for [`ReadStats`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReadOp {
    /// [`TenantIndex::get_system`].
    GetSystem,
    /// [`TenantIndex::get_stack`].
    GetStack,
    /// [`TenantIndex::systems_of_stack`].
    SystemsOfStack,
    /// [`TenantIndex::stacks_of_system`].
    StacksOfSystem,
    /// [`TenantIndex::revisions`].
    Revisions,
    /// [`TenantIndex::commits`].
    Commits,
    /// [`TenantIndex::data_keys`].
    DataKeys,
    /// [`TenantIndex::systems`].
    Systems,
    /// [`TenantIndex::stacks`].
    Stacks,
    /// [`TenantIndex::decision_batches`].
    DecisionBatches,
    /// [`TenantIndex::decision_minutes`].
    DecisionMinutes,
    /// Reads done by writes (the current binding set, conflict diagnosis, the commit head, ...).
    Maintenance,
}

impl ReadOp {
    /// Every read path.
    pub const ALL: [ReadOp; 12] = [
        ReadOp::GetSystem,
        ReadOp::GetStack,
        ReadOp::SystemsOfStack,
        ReadOp::StacksOfSystem,
        ReadOp::Revisions,
        ReadOp::Commits,
        ReadOp::DataKeys,
        ReadOp::Systems,
        ReadOp::Stacks,
        ReadOp::DecisionBatches,
        ReadOp::DecisionMinutes,
        ReadOp::Maintenance,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// Counts of one read path since the index was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Calls of the method.
    pub calls: u64,
    /// Requests sent to the service (`GetItem`, and one per `Query` page).
    pub requests: u64,
    /// Items read (for a `Query`, the items it evaluated: `ScannedCount`).
    pub items: u64,
}

impl ReadStats {
    /// The counts accumulated since `earlier` (a previous snapshot).
    pub fn since(self, earlier: ReadStats) -> ReadStats {
        ReadStats {
            calls: self.calls.saturating_sub(earlier.calls),
            requests: self.requests.saturating_sub(earlier.requests),
            items: self.items.saturating_sub(earlier.items),
        }
    }

    /// Average items read per call (0 with no calls).
    pub fn items_per_call(self) -> f64 {
        if self.calls == 0 { 0.0 } else { self.items as f64 / self.calls as f64 }
    }
}

/// Lock-free counters behind [`TenantIndex::read_stats`].
#[derive(Debug, Default)]
pub struct ReadCounters {
    counters: [[AtomicU64; 3]; ReadOp::ALL.len()],
}

impl ReadCounters {
    /// Count one call of `op` that sent `requests` requests and read `items` items.
    pub fn record(&self, op: ReadOp, requests: u64, items: u64) {
        let [calls, reqs, its] = &self.counters[op.index()];
        calls.fetch_add(1, Ordering::Relaxed);
        reqs.fetch_add(requests, Ordering::Relaxed);
        its.fetch_add(items, Ordering::Relaxed);
    }

    /// The counts of `op` so far.
    pub fn get(&self, op: ReadOp) -> ReadStats {
        let [calls, requests, items] = &self.counters[op.index()];
        ReadStats {
            calls: calls.load(Ordering::Relaxed),
            requests: requests.load(Ordering::Relaxed),
            items: items.load(Ordering::Relaxed),
        }
    }
}

/// A tenant's index. Every method takes the tenant, so one implementation serves many tenants
/// (one table can be shared).
#[async_trait]
pub trait TenantIndex: Send + Sync + std::fmt::Debug {
    /// A system, or `None`.
    async fn get_system(&self, tenant: &str, system: &str) -> Result<Option<SystemRecord>>;

    /// Create (`expected_version: None`: it must not exist) or update (`Some(v)`: it must be at
    /// version `v`) a system's id, type and labels; `live` is kept as it is. Returns the new
    /// version. A failed expectation is [`IndexError::Conflict`] (or [`IndexError::NotFound`]
    /// when it expected a version and the system is gone) and changes nothing.
    async fn put_system(
        &self,
        tenant: &str,
        record: &SystemRecord,
        expected_version: Option<u64>,
    ) -> Result<u64>;

    /// Set the live revision of a system at version `expected_version`; returns the new version.
    async fn set_live(
        &self,
        tenant: &str,
        system: &str,
        live: &LiveRevision,
        expected_version: u64,
    ) -> Result<u64>;

    /// Remove a system with its bindings and revision records (their S3 objects are the
    /// caller's to delete first). `None`: whatever its version, and absent is fine; `Some(v)`:
    /// only at version `v`.
    async fn delete_system(&self, tenant: &str, system: &str, expected_version: Option<u64>) -> Result<()>;

    /// A stack, or `None`.
    async fn get_stack(&self, tenant: &str, stack: &str) -> Result<Option<StackRecord>>;

    /// Create or update a stack (same version rules as [`TenantIndex::put_system`]).
    async fn put_stack(
        &self,
        tenant: &str,
        record: &StackRecord,
        expected_version: Option<u64>,
    ) -> Result<u64>;

    /// Remove a stack and its bindings (same rules as [`TenantIndex::delete_system`]).
    async fn delete_stack(&self, tenant: &str, stack: &str, expected_version: Option<u64>) -> Result<()>;

    /// Make `systems` the exact set of systems bound to `stack`, adding and removing binding
    /// items (in transactions of at most [`MAX_TRANSACTION_ITEMS`]). Returns what changed.
    async fn set_bindings(&self, tenant: &str, stack: &str, systems: &[String]) -> Result<BindingChange>;

    /// Add and remove the binding items of one system, reading nothing: what a publish does
    /// when the Stacks bound at the live revision changed.
    async fn bind_system(
        &self,
        tenant: &str,
        system: &str,
        added: &[String],
        removed: &[String],
    ) -> Result<()>;

    /// Every system of the tenant, across clusters, with its live revision, sorted by id: one
    /// query.
    async fn systems(&self, tenant: &str) -> Result<Vec<SystemRecord>>;

    /// Every stack of the tenant (with an item, or with bindings) and the systems bound to it,
    /// sorted by id: one query.
    async fn stacks(&self, tenant: &str) -> Result<Vec<StackListing>>;

    /// The systems bound to a stack, sorted.
    async fn systems_of_stack(&self, tenant: &str, stack: &str) -> Result<Vec<String>>;

    /// The stacks bound to a system, sorted.
    async fn stacks_of_system(&self, tenant: &str, system: &str) -> Result<Vec<String>>;

    /// Record a published revision of a system. Idempotent: recording a revision that is
    /// already recorded keeps the first record.
    async fn record_revision(&self, tenant: &str, system: &str, revision: &RevisionRecord) -> Result<()>;

    /// The recorded revisions of a system, newest first (by `created`, then revision id), at
    /// most `limit` of them.
    async fn revisions(
        &self,
        tenant: &str,
        system: &str,
        limit: Option<usize>,
    ) -> Result<Vec<RevisionRecord>>;

    /// Forget a revision (absent is fine).
    async fn delete_revision(&self, tenant: &str, system: &str, revision: &str) -> Result<()>;

    /// Append an entry to the tenant's commit log; returns its id ([`commit_id`] of
    /// `record.time`, or the next one after what this index appended or was given before, so
    /// that one writer's entries keep their order). Parallel writers of one tenant do not
    /// contend. `record.sequence` is ignored.
    async fn append_commit(&self, tenant: &str, record: &CommitRecord) -> Result<u64>;

    /// Write an entry at an explicit id (import, replication). Never overwrites: an id already
    /// used is [`IndexError::Conflict`]. Later appends of this index come after it.
    async fn put_commit(&self, tenant: &str, sequence: u64, record: &CommitRecord) -> Result<()>;

    /// How often an append found its id taken by another writer and drew another (zero
    /// unless two writers picked the same one within a millisecond).
    fn append_retries(&self) -> u64 {
        0
    }

    /// The last `limit` commit entries, newest first.
    async fn commits(&self, tenant: &str, limit: usize) -> Result<Vec<CommitRecord>>;

    /// Store a new wrapped data key (never overwrites: an existing key id is
    /// [`IndexError::Conflict`]). A `Current` key retires the previous current key(s) in the same
    /// transaction.
    async fn put_data_key(&self, tenant: &str, key: &WrappedKey) -> Result<()>;

    /// The tenant's wrapped data keys, newest first.
    async fn data_keys(&self, tenant: &str) -> Result<Vec<WrappedKey>>;

    /// Index a stored decision object and add `minutes` (its decisions counted per minute, keyed
    /// by [`decisions::minute_of`]) to the System's per-minute series: both or neither, and
    /// once. Recording a batch already indexed changes nothing and returns `false`.
    async fn record_decisions(
        &self,
        tenant: &str,
        batch: &DecisionBatch,
        minutes: &BTreeMap<String, MinuteCounts>,
    ) -> Result<bool>;

    /// The stored decision objects of `system` holding decisions made from `from` to `to`,
    /// by the time of their last decision; items already expired are left out.
    async fn decision_batches(
        &self,
        tenant: &str,
        system: &str,
        from: SystemTime,
        to: SystemTime,
    ) -> Result<Vec<DecisionBatch>>;

    /// The per-minute counts of `system`'s decisions from `from` to `to` (by minute, both
    /// minutes included), keyed by [`decisions::minute_of`].
    async fn decision_minutes(
        &self,
        tenant: &str,
        system: &str,
        from: SystemTime,
        to: SystemTime,
    ) -> Result<BTreeMap<String, MinuteCounts>>;

    /// Read counters of one read path since the index was created.
    fn read_stats(&self, op: ReadOp) -> ReadStats;
}

/// The tenant's current data key, if any.
pub async fn current_data_key(index: &dyn TenantIndex, tenant: &str) -> Result<Option<WrappedKey>> {
    Ok(index.data_keys(tenant).await?.into_iter().find(|k| k.state == KeyState::Current))
}

/// Check the identifiers every method takes.
pub(crate) fn check_tenant(tenant: &str) -> Result<()> {
    if tenant.is_empty() || tenant.contains('#') {
        return Err(IndexError::Invalid {
            what: format!("tenant {tenant:?}"),
            message: "a tenant must be non-empty and may not contain '#'".into(),
        });
    }
    Ok(())
}

/// Check a system, stack, revision or key id.
pub(crate) fn check_id(kind: &str, id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(IndexError::Invalid { what: format!("{kind} id"), message: "empty".into() });
    }
    Ok(())
}

/// How errors and messages name a system.
pub(crate) fn system_what(tenant: &str, system: &str) -> String {
    format!("system {system} of tenant {tenant}")
}

/// How errors and messages name a stack.
pub(crate) fn stack_what(tenant: &str, stack: &str) -> String {
    format!("stack {stack} of tenant {tenant}")
}

/// How a version expectation reads in a [`IndexError::Conflict`].
pub(crate) fn expected_text(expected: Option<u64>) -> String {
    match expected {
        None => "absent".into(),
        Some(v) => format!("version {v}"),
    }
}

/// Format a time as RFC 3339 in UTC with nanoseconds (`2025-01-02T03:04:05.000000000Z`).
/// The width is fixed, so string order is time order. Years outside 1970–9999 are
/// [`IndexError::Invalid`].
pub fn format_timestamp(time: SystemTime) -> Result<String> {
    let invalid = || IndexError::Invalid {
        what: "timestamp".into(),
        message: format!("{time:?} is outside the years 1970-9999"),
    };
    let since = time.duration_since(UNIX_EPOCH).map_err(|_| invalid())?;
    let secs = since.as_secs();
    let days = i64::try_from(secs / 86_400).map_err(|_| invalid())?;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    if y > 9999 {
        return Err(invalid());
    }
    Ok(format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_nanos()
    ))
}

/// Parse an RFC 3339 UTC time (`Z`; 0 to 9 fractional digits), as [`format_timestamp`] writes.
pub fn parse_timestamp(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        let part = s.get(r)?;
        if part.bytes().all(|c| c.is_ascii_digit()) { part.parse().ok() } else { None }
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || se > 59 {
        return None;
    }
    let rest = s.get(19..)?;
    let rest = rest.strip_suffix(['Z', 'z'])?;
    let nanos = match rest.strip_prefix('.') {
        None if rest.is_empty() => 0,
        None => return None,
        Some(frac) if !frac.is_empty() && frac.len() <= 9 && frac.bytes().all(|c| c.is_ascii_digit()) => {
            frac.parse::<u32>().ok()? * 10u32.pow(9 - frac.len() as u32)
        }
        Some(_) => return None,
    };
    let days = u64::try_from(days_from_civil(y as i64, mo as u32, d as u32)).ok()?;
    let secs = days * 86_400 + h * 3600 + mi * 60 + se;
    UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

fn days_in_month(y: u64, m: u64) -> u64 {
    match m {
        2 if (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// (year, month, day) → days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_ids_sort_as_their_times_and_go_on_after_the_last() {
        let t = |ms| UNIX_EPOCH + Duration::from_millis(ms);
        let now = 1_796_000_000_000; // 2026
        let (a, b) = (commit_id(t(now), u64::MAX, 0), commit_id(t(now + 1), 0, 0));
        assert!(a < b, "the random bits never reach the next millisecond");
        assert_eq!(commit_id_time(a), t(now));
        assert_eq!(commit_id_time(b), t(now + 1));
        assert_eq!(commit_id(t(now), 7, b), b + 1, "a writer's clock going back keeps its order");
        assert_eq!(commit_id(UNIX_EPOCH, 0, 0), 1, "ids start at 1");
        // Fixed-width keys: far-future ids still fit 20 digits.
        assert!(commit_id(t(u64::from(u32::MAX) * 1000), u64::MAX, 0).to_string().len() <= 20);
    }

    #[test]
    fn timestamps_round_trip_and_sort() {
        let cases = [
            (0, 0, "1970-01-01T00:00:00.000000000Z"),
            (951_782_400, 5, "2000-02-29T00:00:00.000000005Z"),
            (1_735_787_045, 123_000_000, "2025-01-02T03:04:05.123000000Z"),
            (253_402_300_799, 999_999_999, "9999-12-31T23:59:59.999999999Z"),
        ];
        let mut previous = String::new();
        for (secs, nanos, text) in cases {
            let t = UNIX_EPOCH + Duration::new(secs, nanos);
            let s = format_timestamp(t).unwrap();
            assert_eq!(s, text);
            assert!(s > previous, "{s} sorts after {previous}");
            assert_eq!(parse_timestamp(&s), Some(t));
            previous = s;
        }
        assert_eq!(
            parse_timestamp("2025-01-02T03:04:05Z"),
            Some(UNIX_EPOCH + Duration::from_secs(1_735_787_045))
        );
        assert_eq!(
            parse_timestamp("2025-01-02T03:04:05.5Z"),
            Some(UNIX_EPOCH + Duration::new(1_735_787_045, 500_000_000))
        );
        assert!(format_timestamp(UNIX_EPOCH + Duration::from_secs(253_402_300_800)).is_err());
        assert!(format_timestamp(UNIX_EPOCH - Duration::from_secs(1)).is_err());
        for bad in [
            "",
            "2025-01-02",
            "2025-13-02T03:04:05Z",
            "2025-02-30T03:04:05Z",
            "2025-01-02T03:04:05+01:00",
            "2025-01-02T03:04:05.Z",
            "2025-01-02T03:04:05.1234567890Z",
            "2025-01-02 03:04:05Z",
            "2025-01-0xT03:04:05Z",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn days_conversions_agree() {
        for days in [-1, 0, 59, 60, 365, 10_957, 11_016, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn ids_are_checked() {
        assert!(check_tenant("acme").is_ok());
        assert!(matches!(check_tenant(""), Err(IndexError::Invalid { .. })));
        assert!(matches!(check_tenant("a#b"), Err(IndexError::Invalid { .. })));
        assert!(check_id("system", "").is_err());
    }

    #[test]
    fn stats_subtract() {
        let c = ReadCounters::default();
        c.record(ReadOp::Revisions, 2, 10);
        let before = c.get(ReadOp::Revisions);
        c.record(ReadOp::Revisions, 1, 4);
        let d = c.get(ReadOp::Revisions).since(before);
        assert_eq!(d, ReadStats { calls: 1, requests: 1, items: 4 });
        assert_eq!(d.items_per_call(), 4.0);
        assert_eq!(c.get(ReadOp::Commits), ReadStats::default());
    }
}
