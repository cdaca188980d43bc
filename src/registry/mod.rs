//! A tenant's bundle registry: the object store holds what OPAs download, the index says what
//! is live, what was published before, and who changed what.
//!
//! Publishing one System, in an order that keeps both consistent through a crash at any step:
//!
//! 1. read the System's index item; if its live revision is this bundle's, stop: an unchanged
//!    reconcile reads the index and writes nothing;
//! 2. write `revisions/<revision>.tar.gz` (immutable, `If-None-Match: *`) and record it;
//! 3. replace the live object, conditional on the ETag the index knows (`If-Match`), so a writer
//!    that lost a race cannot overwrite the winner;
//! 4. point the index at it, conditional on the item's version;
//! 5. append to the commit log (index entry plus an encrypted object), then trim history.
//!
//! A crash between 3 and 4 leaves the live object ahead of the index; the next publish finds
//! the live object's digest is its own and finishes step 4 (or, for another writer's bytes,
//! adopts what is live when it is a recorded revision), so the two converge.

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "aws")]
pub mod connect;
pub mod index;
#[cfg(feature = "aws")]
pub mod keys;
pub mod publishing;
#[cfg(feature = "aws")]
pub mod signing;
pub mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;

use crate::bundle::{Bundle, BundleInput};
use crate::registry::index::{
    CommitRecord, IndexError, LiveRevision, RevisionRecord, StackRecord, SystemRecord, TenantIndex,
};
use crate::registry::store::{ObjectStore, Precondition, StoreError, content_digest};

/// Seals what edict stores for a tenant (the commit log) with the tenant's data key.
pub trait Sealer: Send + Sync + std::fmt::Debug {
    /// Seal `plaintext` bound to `context`.
    fn seal(&self, plaintext: &[u8], context: &[u8]) -> Vec<u8>;
    /// The id of the key that seals.
    fn key_id(&self) -> String;
}

/// Signs bundles (`.signatures.json`).
#[async_trait]
pub trait BundleSigner: Send + Sync + std::fmt::Debug {
    /// The `.signatures.json` for a bundle.
    async fn sign(&self, bundle: &Bundle) -> Result<Vec<u8>, String>;
}

/// Why a publish (or rollback) did not happen.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The object store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// Signing failed.
    #[error("signing the bundle of {system}: {message}")]
    Sign {
        /// The system.
        system: String,
        /// What the signer said.
        message: String,
    },
    /// Another writer changed the System while this one was publishing; try again.
    #[error("{system}: {message}")]
    Raced {
        /// The system.
        system: String,
        /// What happened.
        message: String,
    },
    /// The live revision was built from newer inputs than this one: publishing would go back in time.
    #[error(
        "{system}: the live revision {live} was built from newer inputs ({newer}); not replacing it with an older build"
    )]
    Stale {
        /// The system.
        system: String,
        /// The live revision.
        live: String,
        /// Which inputs are newer there.
        newer: String,
    },
    /// A revision that is not in the system's history.
    #[error("{system}: no revision {revision} in its history")]
    UnknownRevision {
        /// The system.
        system: String,
        /// The revision asked for.
        revision: String,
    },
}

impl PublishError {
    /// Whether retrying later may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            PublishError::Store(e) => e.is_transient(),
            PublishError::Index(e) => e.is_transient() || e.is_conflict(),
            PublishError::Raced { .. } => true,
            PublishError::Sign { .. } | PublishError::Stale { .. } | PublishError::UnknownRevision { .. } => {
                false
            }
        }
    }
}

/// What a publish did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Published {
    /// The live bundle already had these bytes: nothing was written.
    Unchanged,
    /// A new revision was written and made live.
    Written,
}

/// A tenant's registry: the only publisher.
#[derive(Clone, Debug)]
pub struct Registry {
    tenant: String,
    store: Arc<dyn ObjectStore>,
    index: Arc<dyn TenantIndex>,
    sealer: Option<Arc<dyn Sealer>>,
    signer: Option<Arc<dyn BundleSigner>>,
    retention: usize,
    actor: String,
    verification: Option<VerificationKey>,
    adopt_unindexed: bool,
    changes: Option<Arc<crate::registry::store::KeyChanges>>,
    /// Commit-log objects kept in the store (the embedded store's log is bounded like its
    /// index); `None`: all (a Tenant's bucket keeps its audit trail by its own lifecycle rules).
    commit_objects_kept: Option<usize>,
    /// Commit-log entries this registry (and its clones) appended.
    appended: Arc<std::sync::atomic::AtomicU64>,
}

/// The public half of the key that signs a tenant's bundles, for OPA's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerificationKey {
    /// The `kid` of the signatures.
    pub key_id: String,
    /// The PEM public key.
    pub public_key: String,
    /// The signature scope.
    pub scope: String,
}

/// Commit-log entries the embedded index keeps (per Tenant; a laptop's log, not an audit trail).
const EMBEDDED_COMMITS: usize = 10_000;

/// Revisions kept per System when the Tenant does not say.
pub const DEFAULT_RETENTION: usize = 10;

/// Retries of a commit-log append after the live switch.
const COMMIT_RETRY: crate::retry::Backoff = crate::retry::Backoff {
    initial: std::time::Duration::from_millis(20),
    max: std::time::Duration::from_secs(1),
    deadline: std::time::Duration::from_secs(30),
};

/// How many times a publish re-reads and retries after losing a race on the index item.
const RACE_RETRIES: usize = 3;

impl Registry {
    /// A registry for `tenant` over a store and an index.
    pub fn new(tenant: &str, store: Arc<dyn ObjectStore>, index: Arc<dyn TenantIndex>) -> Self {
        Registry {
            tenant: tenant.to_string(),
            store,
            index,
            sealer: None,
            signer: None,
            retention: DEFAULT_RETENTION,
            actor: "edict".to_string(),
            verification: None,
            adopt_unindexed: false,
            changes: None,
            commit_objects_kept: None,
            appended: Arc::default(),
        }
    }

    /// The registry of the embedded default, for Tenants without `spec.storage`: bundles in
    /// the directory store at `dir`, the index in files beside them (`<dir>/.index/`), so that
    /// history, rollback and the commit log outlive the process. The operator's replicas and
    /// `run --local` publish through it, and `edict history`/`rollback --store` read it.
    pub fn embedded(dir: &std::path::Path) -> Self {
        let index = crate::registry::index::memory::MemoryIndex::on_disk(&dir.join(".index"))
            .with_commit_limit(EMBEDDED_COMMITS);
        Registry::new("embedded", Arc::new(crate::registry::store::DirStore::new(dir)), Arc::new(index))
            .keeping_commit_objects(EMBEDDED_COMMITS)
            // A store written before its index existed (or whose index was removed): what it
            // serves is from an earlier run.
            .adopting_unindexed()
    }

    /// Keep only the newest `n` commit-log objects in the store (checked every `n/10` commits).
    pub fn keeping_commit_objects(mut self, n: usize) -> Self {
        self.commit_objects_kept = Some(n.max(1));
        self
    }

    /// Encrypt the commit log with this sealer.
    pub fn with_sealer(mut self, sealer: Arc<dyn Sealer>) -> Self {
        self.sealer = Some(sealer);
        self
    }

    /// Sign every bundle with this signer.
    pub fn with_signer(mut self, signer: Arc<dyn BundleSigner>) -> Self {
        self.signer = Some(signer);
        self
    }

    /// Keep this many revisions per System (at least 1: the live one).
    pub fn with_retention(mut self, revisions: usize) -> Self {
        self.retention = revisions.max(1);
        self
    }

    /// Who the commit log names as the author of changes.
    pub fn with_actor(mut self, actor: &str) -> Self {
        self.actor = actor.to_string();
        self
    }

    /// For an index that does not outlive the process (the operator's embedded store): a live
    /// object the index knows nothing of is from an earlier run, and is replaced rather than
    /// taken for another writer's.
    pub fn adopting_unindexed(mut self) -> Self {
        self.adopt_unindexed = true;
        self
    }

    /// Say on `changes` which live bundle each publish, rollback or retirement replaced, so
    /// that bundle requests waiting on it (OPA's long polling) get it at once.
    pub fn with_changes(mut self, changes: Arc<crate::registry::store::KeyChanges>) -> Self {
        self.changes = Some(changes);
        self
    }

    /// Record the key OPA verifies this registry's signatures with.
    pub fn with_verification(mut self, key: VerificationKey) -> Self {
        self.verification = Some(key);
        self
    }

    /// The key OPA verifies this registry's signatures with, when bundles are signed.
    pub fn verification(&self) -> Option<&VerificationKey> {
        self.verification.as_ref()
    }

    /// The tenant this registry publishes for, as its index names it.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The object store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The index.
    pub fn index(&self) -> &Arc<dyn TenantIndex> {
        &self.index
    }

    /// Make `bundle` the live bundle of the System `input` describes, built from objects at
    /// `generations`.
    pub async fn publish(
        &self,
        input: &BundleInput,
        bundle: &Bundle,
        generations: &BTreeMap<String, i64>,
        now: SystemTime,
    ) -> Result<Published, PublishError> {
        let id = input.system_id();
        let mut record = self.system_record(input).await?;
        let stacks = stack_names(input);
        if let Some(live) = record.live.as_ref().filter(|l| l.revision == bundle.revision()) {
            if live.stacks != stacks {
                // An item written before edict recorded the Stacks: complete it, for the
                // multi-cluster view. The bundle is as it was.
                let completed = LiveRevision { stacks, ..live.clone() };
                self.bind(input, Some(live), &completed).await?;
                self.index.set_live(&self.tenant, &id, &completed, record.version).await?;
            }
            return Ok(Published::Unchanged);
        }
        if let Some(live) = &record.live
            && let Some(newer) = newer_inputs(&live.inputs, generations)
        {
            return Err(PublishError::Stale { system: id, live: live.revision.clone(), newer });
        }
        let bytes = match &self.signer {
            Some(signer) => {
                let signatures = signer
                    .sign(bundle)
                    .await
                    .map_err(|message| PublishError::Sign { system: id.clone(), message })?;
                bundle.signed_archive(&signatures)
            }
            None => bundle.archive(),
        };
        let digest = content_digest(&bytes);
        let live_key = input.live_key();
        // The store already serves these very bytes, and the index does not know (an embedded
        // store outlives its in-memory index; a restart must not publish and log everything
        // again): take them as live, writing nothing and logging nothing.
        let served = match &record.live {
            None => {
                self.store.head(&live_key).await?.filter(|m| m.sha256.as_deref() == Some(digest.as_str()))
            }
            Some(_) => None,
        };
        let revision_key = format!("{}/revisions/{}.tar.gz", input.prefix(), bundle.revision());
        let revision_meta = self.put_immutable(&revision_key, &bytes).await?;
        self.index
            .record_revision(
                &self.tenant,
                &id,
                &RevisionRecord {
                    revision: bundle.revision().to_string(),
                    key: revision_key,
                    etag: revision_meta,
                    size: bytes.len() as u64,
                    sha256: digest.clone(),
                    created: now,
                },
            )
            .await?;

        let already_served = served.is_some();
        let etag = match served {
            Some(meta) => meta.etag,
            None => self.replace_live(&id, &live_key, &bytes, &digest, record.live.as_ref()).await?,
        };
        let live = LiveRevision {
            revision: bundle.revision().to_string(),
            key: live_key,
            etag,
            sha256: digest,
            inputs: generations.clone(),
            stacks,
            published: Some(now),
        };
        self.bind(input, record.live.as_ref(), &live).await?;
        for attempt in 0..=RACE_RETRIES {
            match self.index.set_live(&self.tenant, &id, &live, record.version).await {
                Ok(_) => break,
                Err(e) if e.is_conflict() && attempt < RACE_RETRIES => {
                    // Someone updated the item (labels, or another publisher). Only retry when
                    // the live object is still the one this publish wrote.
                    record = self.system_record(input).await?;
                    let still_ours =
                        self.store.head(&live.key).await?.and_then(|m| m.sha256) == Some(live.sha256.clone());
                    if !still_ours {
                        return Err(PublishError::Raced {
                            system: id,
                            message: "another writer replaced the live bundle during this publish".into(),
                        });
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        if already_served {
            return Ok(Published::Unchanged);
        }
        // The bundle is live: the log entry must not be lost to a passing failure, since a retry
        // of the whole publish would find nothing left to do.
        COMMIT_RETRY
            .run(
                || self.commit("publish", &id, bundle.revision(), now),
                PublishError::is_transient,
                |e, _| tracing::warn!(system = %id, "commit log: {e}; retrying"),
            )
            .await?;
        self.trim(&id, bundle.revision()).await?;
        Ok(Published::Written)
    }

    /// Bring the index's item of the Stack `id` (`<cluster>/<namespace>/<name>`) up to date with
    /// `stack` (its type, and its selector and exclusions as JSON), writing only when they
    /// differ; `None` removes the item and its bindings. Returns whether it wrote.
    pub async fn index_stack(&self, id: &str, stack: Option<&crate::api::Stack>) -> Result<bool, IndexError> {
        let Some(stack) = stack else {
            let existed = self.index.get_stack(&self.tenant, id).await?.is_some();
            self.index.delete_stack(&self.tenant, id, None).await?;
            return Ok(existed);
        };
        let wanted = StackRecord {
            id: id.to_string(),
            stack_type: stack.spec.type_.as_str().to_string(),
            selector: serde_json::json!({"selector": stack.spec.selector, "exclude": stack.spec.exclude}),
            version: 0,
        };
        match self.index.get_stack(&self.tenant, id).await? {
            Some(current)
                if current.stack_type == wanted.stack_type && current.selector == wanted.selector =>
            {
                Ok(false)
            }
            current => {
                self.index.put_stack(&self.tenant, &wanted, current.map(|c| c.version)).await?;
                Ok(true)
            }
        }
    }

    /// Bind the System to the Stacks `live` was built from, in the index, when they differ
    /// from those of the revision it replaces (`<cluster>/<namespace>/<name>` ids: each
    /// cluster's copy of a Stack is its own). Before the live switch, so that a publish retried
    /// after a failure finds the same difference again.
    async fn bind(
        &self,
        input: &BundleInput,
        before: Option<&LiveRevision>,
        live: &LiveRevision,
    ) -> Result<(), PublishError> {
        let ids = |l: &LiveRevision| -> BTreeSet<String> {
            l.stacks.iter().map(|s| format!("{}/{s}", input.cluster)).collect()
        };
        let old = before.map(ids).unwrap_or_default();
        let new = ids(live);
        if old == new {
            return Ok(());
        }
        let added: Vec<String> = new.difference(&old).cloned().collect();
        let removed: Vec<String> = old.difference(&new).cloned().collect();
        self.index.bind_system(&self.tenant, &input.system_id(), &added, &removed).await?;
        Ok(())
    }

    /// The index item of a System, created (or its labels updated) from `input` when needed.
    async fn system_record(&self, input: &BundleInput) -> Result<SystemRecord, PublishError> {
        let id = input.system_id();
        let wanted = SystemRecord {
            id: id.clone(),
            system_type: input.system_type.as_str().to_string(),
            labels: input.labels.clone(),
            live: None,
            version: 0,
        };
        for _ in 0..=RACE_RETRIES {
            let current = self.index.get_system(&self.tenant, &id).await?;
            let result = match &current {
                Some(r) if r.labels == wanted.labels && r.system_type == wanted.system_type => {
                    return Ok(r.clone());
                }
                Some(r) => self.index.put_system(&self.tenant, &wanted, Some(r.version)).await,
                None => self.index.put_system(&self.tenant, &wanted, None).await,
            };
            match result {
                Ok(_) => {}
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        self.index.get_system(&self.tenant, &id).await?.ok_or_else(|| PublishError::Raced {
            system: id,
            message: "the index item keeps changing or disappearing".into(),
        })
    }

    /// Write an object that never changes once written; an existing one holds the same bytes.
    async fn put_immutable(&self, key: &str, bytes: &[u8]) -> Result<String, PublishError> {
        match self.store.put(key, bytes, Precondition::IfAbsent).await {
            Ok(meta) => Ok(meta.etag),
            Err(StoreError::PreconditionFailed { .. }) => {
                Ok(self.store.head(key).await?.map(|m| m.etag).unwrap_or_default())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Replace the live object if it is still what the index says; returns its new ETag.
    async fn replace_live(
        &self,
        id: &str,
        key: &str,
        bytes: &[u8],
        digest: &str,
        known: Option<&LiveRevision>,
    ) -> Result<String, PublishError> {
        let etag = self.put_live(id, key, bytes, digest, known).await?;
        if let Some(changes) = &self.changes {
            changes.changed(key);
        }
        Ok(etag)
    }

    async fn put_live(
        &self,
        id: &str,
        key: &str,
        bytes: &[u8],
        digest: &str,
        known: Option<&LiveRevision>,
    ) -> Result<String, PublishError> {
        let precondition = match known {
            Some(live) => Precondition::IfMatch(live.etag.clone()),
            None => Precondition::IfAbsent,
        };
        match self.store.put(key, bytes, precondition).await {
            Ok(meta) => Ok(meta.etag),
            Err(StoreError::PreconditionFailed { .. }) => {
                // The live object is not what the index says. Either an earlier attempt of this
                // very publish got this far (same bytes: finish it), or a recorded revision is
                // live without the index knowing (adopt it and publish over it), or another
                // writer is mid-publish (back off).
                let head = self.store.head(key).await?;
                match head {
                    Some(meta) if meta.sha256.as_deref() == Some(digest) => Ok(meta.etag),
                    Some(meta) => {
                        let recorded = self.index.revisions(&self.tenant, id, None).await?;
                        let adopted = (self.adopt_unindexed && known.is_none())
                            || meta.sha256.as_ref().is_some_and(|d| recorded.iter().any(|r| &r.sha256 == d));
                        if adopted {
                            let retry =
                                self.store.put(key, bytes, Precondition::IfMatch(meta.etag.clone())).await?;
                            return Ok(retry.etag);
                        }
                        Err(PublishError::Raced {
                            system: id.to_string(),
                            message: format!("the live bundle {key} was changed by another writer"),
                        })
                    }
                    None => {
                        let created = self.store.put(key, bytes, Precondition::IfAbsent).await?;
                        Ok(created.etag)
                    }
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Append to the commit log: the entry sealed under `commits/<tenant>/` first (a time-ordered,
    /// unique key), then the index entry, so the index never names an entry the store lacks.
    /// A crash between a publish and its entry loses that entry; nothing else is affected.
    async fn commit(
        &self,
        action: &str,
        system: &str,
        revision: &str,
        now: SystemTime,
    ) -> Result<u64, PublishError> {
        let time = timestamp(now);
        let details = serde_json::json!({
            "actor": self.actor,
            "action": action,
            "system": system,
            "revision": revision,
            "time": time,
        });
        let plain = crate::bundle::canonical_json(&details);
        let key = format!("commits/{}/{time}-{}.json", self.tenant, &content_digest(&plain)[..16]);
        let (payload, key_id) = match &self.sealer {
            Some(s) => (s.seal(&plain, key.as_bytes()), Some(s.key_id())),
            None => (plain, None),
        };
        self.put_immutable(&key, &payload).await?;
        let record = CommitRecord {
            sequence: 0,
            actor: self.actor.clone(),
            action: action.to_string(),
            system: Some(system.to_string()),
            revision: Some(revision.to_string()),
            time: now,
            payload,
            payload_key_id: key_id,
        };
        let sequence = self.index.append_commit(&self.tenant, &record).await?;
        let appended = self.appended.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if let Some(keep) = self.commit_objects_kept
            && appended.is_multiple_of(keep.div_ceil(10) as u64)
        {
            // Object keys start with the time (fixed width): key order is time order.
            let mut keys = self.store.list(&format!("commits/{}/", self.tenant)).await?;
            keys.sort();
            for old in &keys[..keys.len().saturating_sub(keep)] {
                self.store.delete(old).await?;
            }
        }
        Ok(sequence)
    }

    /// Delete revisions beyond the retention, oldest first; never the live one.
    async fn trim(&self, id: &str, live: &str) -> Result<(), PublishError> {
        let revisions = self.index.revisions(&self.tenant, id, None).await?;
        for old in revisions.iter().filter(|r| r.revision != live).skip(self.retention.saturating_sub(1)) {
            self.store.delete(&old.key).await?;
            self.index.delete_revision(&self.tenant, id, &old.revision).await?;
        }
        Ok(())
    }

    /// The revisions of a System, newest first.
    pub async fn history(&self, system_id: &str) -> Result<Vec<RevisionRecord>, PublishError> {
        Ok(self.index.revisions(&self.tenant, system_id, None).await?)
    }

    /// The live revision of a System, if any.
    pub async fn live(&self, system_id: &str) -> Result<Option<LiveRevision>, PublishError> {
        Ok(self.index.get_system(&self.tenant, system_id).await?.and_then(|r| r.live))
    }

    /// Remove everything published for a System whose object was deleted: every object under
    /// its bundle prefix (live bundle and history), then its index items (system, bindings,
    /// revisions), then log the retirement. Idempotent: returns whether anything was left to
    /// remove. Objects outside `prefix` and other Systems' items are never touched.
    pub async fn retire(&self, system_id: &str, prefix: &str, now: SystemTime) -> Result<bool, PublishError> {
        let dir = format!("{}/", prefix.trim_end_matches('/'));
        let objects = self.store.list(&dir).await?;
        for key in &objects {
            self.store.delete(key).await?;
            if let Some(changes) = &self.changes {
                changes.changed(key);
            }
        }
        let indexed = self.index.get_system(&self.tenant, system_id).await?.is_some();
        if indexed {
            self.index.delete_system(&self.tenant, system_id, None).await?;
        }
        let removed = indexed || !objects.is_empty();
        if removed {
            COMMIT_RETRY
                .run(
                    || self.commit("retire", system_id, "", now),
                    PublishError::is_transient,
                    |e, _| tracing::warn!(system = %system_id, "commit log: {e}; retrying"),
                )
                .await?;
        }
        Ok(removed)
    }

    /// [`Registry::retire`] every System of `cluster` whose bundles the store holds
    /// (`bundles/<tenant>/<cluster>/<namespace>/<name>/…`) and that `gone` names: what a replica
    /// or `run --local` drops of Systems deleted while it did not watch. Returns the ids retired.
    pub async fn retire_where(
        &self,
        cluster: &str,
        gone: impl Fn(&crate::model::ObjectKey) -> bool,
        now: SystemTime,
    ) -> Result<Vec<String>, PublishError> {
        let mut systems = std::collections::BTreeSet::new();
        for key in self.store.list("bundles/").await? {
            let parts: Vec<&str> = key.split('/').collect();
            if parts.len() >= 6
                && parts[2] == cluster
                && gone(&crate::model::ObjectKey::new(parts[3], parts[4]))
            {
                systems.insert((format!("{}/{}/{}", parts[2], parts[3], parts[4]), parts[..5].join("/")));
            }
        }
        let mut retired = Vec::new();
        for (id, prefix) in systems {
            if self.retire(&id, &prefix, now).await? {
                retired.push(id);
            }
        }
        Ok(retired)
    }

    /// Make an earlier revision live again, and record that in the commit log.
    pub async fn rollback(
        &self,
        input: &BundleInput,
        revision: &str,
        now: SystemTime,
    ) -> Result<(), PublishError> {
        let id = input.system_id();
        let record = self.system_record(input).await?;
        let history = self.history(&id).await?;
        let target =
            history.iter().find(|r| r.revision == revision || r.revision.starts_with(revision)).ok_or_else(
                || PublishError::UnknownRevision { system: id.clone(), revision: revision.to_string() },
            )?;
        let object = self.store.get(&target.key).await?.ok_or_else(|| PublishError::UnknownRevision {
            system: id.clone(),
            revision: format!("{revision} (its object {} is gone)", target.key),
        })?;
        let live_key = input.live_key();
        let etag =
            self.replace_live(&id, &live_key, &object.bytes, &target.sha256, record.live.as_ref()).await?;
        let (inputs, stacks) =
            record.live.as_ref().map(|l| (l.inputs.clone(), l.stacks.clone())).unwrap_or_default();
        let live = LiveRevision {
            revision: target.revision.clone(),
            key: live_key,
            etag,
            sha256: target.sha256.clone(),
            inputs,
            stacks,
            published: Some(now),
        };
        self.index.set_live(&self.tenant, &id, &live, record.version).await?;
        self.commit("rollback", &id, &target.revision, now).await?;
        Ok(())
    }
}

/// The inputs recorded for the live revision that are newer than this build's, if any (and
/// none of this build's is newer): then this build is older and must not replace it.
fn newer_inputs(live: &BTreeMap<String, i64>, ours: &BTreeMap<String, i64>) -> Option<String> {
    let mut newer = Vec::new();
    for (key, theirs) in live {
        match ours.get(key) {
            Some(mine) if mine < theirs => {
                newer.push(format!("{key} at generation {theirs}, this build has {mine}"))
            }
            Some(mine) if mine > theirs => return None,
            _ => {}
        }
    }
    if ours.keys().any(|k| !live.contains_key(k)) {
        return None;
    }
    (!newer.is_empty()).then(|| newer.join(", "))
}

/// RFC 3339 (UTC) with nanoseconds, fixed width, so that string order is time order.
fn timestamp(t: SystemTime) -> String {
    let nanos = t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos() as i128).unwrap_or(0);
    k8s_openapi::jiff::Timestamp::from_nanosecond(nanos)
        .map(|ts| ts.strftime("%Y-%m-%dT%H:%M:%S.%09fZ").to_string())
        .unwrap_or_default()
}

/// The Stacks bound to the System `input` describes (`<namespace>/<name>`, sorted), as its
/// live revision records them.
fn stack_names(input: &BundleInput) -> Vec<String> {
    input.stacks.iter().map(|s| s.key.to_string()).collect::<BTreeSet<_>>().into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gens(items: &[(&str, i64)]) -> BTreeMap<String, i64> {
        items.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn older_inputs_are_detected() {
        let live = gens(&[("System/a/s", 3), ("Policy/a/p", 5)]);
        assert!(newer_inputs(&live, &gens(&[("System/a/s", 3), ("Policy/a/p", 4)])).is_some());
        assert_eq!(newer_inputs(&live, &gens(&[("System/a/s", 3), ("Policy/a/p", 5)])), None, "same inputs");
        assert_eq!(
            newer_inputs(&live, &gens(&[("System/a/s", 4), ("Policy/a/p", 4)])),
            None,
            "mixed: not older"
        );
        assert_eq!(newer_inputs(&live, &gens(&[("System/a/s", 3), ("Policy/a/q", 1)])), None, "a new input");
        assert_eq!(newer_inputs(&BTreeMap::new(), &gens(&[("System/a/s", 1)])), None);
        assert_eq!(newer_inputs(&live, &BTreeMap::new()), None, "no generations known (manifests)");
    }
}
