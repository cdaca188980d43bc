//! The embedded index: everything in memory behind one lock, with exactly the semantics of the
//! DynamoDB index (versions, conditions, ordering, validation), for `edict run --local` and
//! tests. Nothing persists across restarts unless it is opened [`MemoryIndex::on_disk`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use async_trait::async_trait;

use super::decisions::{batch_range, expired, minute_of, to_the_second};
use super::disk::{Disk, Touched};
use super::{
    BindingChange, CommitRecord, DecisionBatch, IndexError, KeyState, LiveRevision, MinuteCounts,
    ReadCounters, ReadOp, ReadStats, Result, RevisionRecord, StackListing, StackRecord, SystemRecord,
    TenantIndex, WrappedKey, check_id, check_tenant, expected_text, format_timestamp, stack_what,
    system_what,
};

/// The in-memory [`TenantIndex`].
#[derive(Debug, Default)]
pub struct MemoryIndex {
    tenants: Mutex<HashMap<String, TenantData>>,
    stats: ReadCounters,
    /// Keep only this many newest commit-log entries per tenant (`None`: all).
    commit_limit: Option<usize>,
    /// Where each tenant's data is kept between runs, if anywhere.
    disk: Option<Disk>,
}

/// One tenant's items.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct TenantData {
    pub(super) systems: BTreeMap<String, SystemRecord>,
    pub(super) stacks: BTreeMap<String, StackRecord>,
    /// (stack, system): the GSI direction.
    pub(super) by_stack: BTreeSet<(String, String)>,
    /// (system, stack): the base-table direction.
    pub(super) by_system: BTreeSet<(String, String)>,
    /// system → revision id → record.
    pub(super) revisions: BTreeMap<String, BTreeMap<String, RevisionRecord>>,
    pub(super) commits: BTreeMap<u64, CommitRecord>,
    /// The largest commit id used.
    pub(super) head: u64,
    pub(super) keys: BTreeMap<String, WrappedKey>,
    /// system → batch sort key ([`DecisionBatch::sort_key`]) → batch.
    #[serde(default)]
    pub(super) batches: BTreeMap<String, BTreeMap<String, DecisionBatch>>,
    /// system → minute → counts (one item per minute: the shards of DynamoDB, summed).
    #[serde(default)]
    pub(super) minutes: BTreeMap<String, BTreeMap<String, MinuteItem>>,
}

/// A minute's counts and when the index forgets them.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct MinuteItem {
    pub(super) counts: MinuteCounts,
    pub(super) expires: Option<SystemTime>,
}

/// Drop the items of `map` (sorted by time) that expired at `now`, from the oldest on, while
/// they have; returns their keys.
fn drop_expired<T>(
    map: &mut BTreeMap<String, T>,
    expires: impl Fn(&T) -> Option<SystemTime>,
    now: SystemTime,
) -> Vec<String> {
    let mut dropped = Vec::new();
    while let Some(entry) = map.first_entry() {
        if !expired(expires(entry.get()), now) {
            break;
        }
        dropped.push(entry.remove_entry().0);
    }
    dropped
}

impl MemoryIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// An index kept in files under `dir` (one per tenant), read back when another process
    /// changed them: the embedded store's index, durable across runs.
    pub fn on_disk(dir: &std::path::Path) -> Self {
        MemoryIndex { disk: Some(Disk::open(dir)), ..Self::default() }
    }

    /// An index that keeps only the newest `n` commit-log entries of each tenant, for a
    /// long-running process whose log is not durable anyway (the operator's embedded store).
    pub fn with_commit_limit(mut self, n: usize) -> Self {
        self.commit_limit = Some(n);
        self
    }

    /// Drop the oldest commit-log entries beyond the limit; returns the sequences dropped.
    fn trim_commits(&self, data: &mut TenantData) -> Vec<Touched> {
        let mut dropped = Vec::new();
        if let Some(limit) = self.commit_limit {
            while data.commits.len() > limit {
                if let Some((seq, _)) = data.commits.pop_first() {
                    dropped.push(Touched::Commit(seq));
                }
            }
        }
        dropped
    }

    /// The tenant's data, after checking the tenant name. A poisoned lock (a panic while
    /// holding it) is recovered: every write below leaves the data consistent before it can panic.
    fn tenant(&self, tenant: &str) -> Result<TenantGuard<'_>> {
        check_tenant(tenant)?;
        let mut guard = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(disk) = &self.disk {
            disk.refresh(tenant, guard.entry(tenant.to_string()).or_default())?;
        }
        Ok(TenantGuard { guard, tenant: tenant.to_string(), disk: self.disk.as_ref() })
    }
}

struct TenantGuard<'a> {
    guard: MutexGuard<'a, HashMap<String, TenantData>>,
    tenant: String,
    disk: Option<&'a Disk>,
}

impl TenantGuard<'_> {
    fn data(&mut self) -> &mut TenantData {
        self.guard.entry(self.tenant.clone()).or_default()
    }

    /// Keep what a write changed (on disk, when the index has a journal).
    fn save(&mut self, touched: &[Touched]) -> Result<()> {
        match self.disk {
            Some(disk) => {
                disk.save(&self.tenant, self.guard.entry(self.tenant.clone()).or_default(), touched)
            }
            None => Ok(()),
        }
    }
}

/// The Conflict/NotFound of a failed version expectation, or `Ok` when it holds.
fn check_version(what: impl Fn() -> String, found: Option<u64>, expected: Option<u64>) -> Result<()> {
    match (expected, found) {
        (None, None) => Ok(()),
        (Some(e), Some(f)) if e == f => Ok(()),
        (Some(_), None) => Err(IndexError::NotFound { what: what() }),
        (e, f) => Err(IndexError::Conflict {
            what: what(),
            expected: expected_text(e),
            found: f.map_or_else(|| "absent".to_string(), |v| format!("version {v}")),
        }),
    }
}

#[async_trait]
impl TenantIndex for MemoryIndex {
    async fn get_system(&self, tenant: &str, system: &str) -> Result<Option<SystemRecord>> {
        check_id("system", system)?;
        let mut t = self.tenant(tenant)?;
        let found = t.data().systems.get(system).cloned();
        self.stats.record(ReadOp::GetSystem, 1, u64::from(found.is_some()));
        Ok(found)
    }

    async fn put_system(
        &self,
        tenant: &str,
        record: &SystemRecord,
        expected_version: Option<u64>,
    ) -> Result<u64> {
        check_id("system", &record.id)?;
        let mut t = self.tenant(tenant)?;
        let data = t.data();
        let current = data.systems.get(&record.id);
        check_version(|| system_what(tenant, &record.id), current.map(|s| s.version), expected_version)?;
        let version = expected_version.map_or(1, |v| v + 1);
        let live = current.and_then(|s| s.live.clone());
        data.systems.insert(record.id.clone(), SystemRecord { live, version, ..record.clone() });
        t.save(&[Touched::System(record.id.clone())])?;
        Ok(version)
    }

    async fn set_live(
        &self,
        tenant: &str,
        system: &str,
        live: &LiveRevision,
        expected_version: u64,
    ) -> Result<u64> {
        check_id("system", system)?;
        let mut t = self.tenant(tenant)?;
        let data = t.data();
        let current = data.systems.get_mut(system);
        check_version(
            || system_what(tenant, system),
            current.as_ref().map(|s| s.version),
            Some(expected_version),
        )?;
        let Some(current) = current else {
            return Err(IndexError::NotFound { what: system_what(tenant, system) });
        };
        current.live = Some(live.clone());
        current.version = expected_version + 1;
        t.save(&[Touched::System(system.to_string())])?;
        Ok(expected_version + 1)
    }

    async fn delete_system(&self, tenant: &str, system: &str, expected_version: Option<u64>) -> Result<()> {
        check_id("system", system)?;
        let mut t = self.tenant(tenant)?;
        let data = t.data();
        if let Some(expected) = expected_version {
            let found = data.systems.get(system).map(|s| s.version);
            check_version(|| system_what(tenant, system), found, Some(expected))?;
        }
        let mut touched = vec![Touched::System(system.to_string())];
        data.systems.remove(system);
        for revision in data.revisions.remove(system).unwrap_or_default().into_keys() {
            touched.push(Touched::Revision(system.to_string(), revision));
        }
        let stacks: Vec<String> =
            data.by_system.iter().filter(|(sys, _)| sys == system).map(|(_, stk)| stk.clone()).collect();
        for stack in stacks {
            data.by_system.remove(&(system.to_string(), stack.clone()));
            data.by_stack.remove(&(stack.clone(), system.to_string()));
            touched.push(Touched::Binding(stack, system.to_string()));
        }
        t.save(&touched)?;
        Ok(())
    }

    async fn get_stack(&self, tenant: &str, stack: &str) -> Result<Option<StackRecord>> {
        check_id("stack", stack)?;
        let mut t = self.tenant(tenant)?;
        let found = t.data().stacks.get(stack).cloned();
        self.stats.record(ReadOp::GetStack, 1, u64::from(found.is_some()));
        Ok(found)
    }

    async fn put_stack(
        &self,
        tenant: &str,
        record: &StackRecord,
        expected_version: Option<u64>,
    ) -> Result<u64> {
        check_id("stack", &record.id)?;
        let mut t = self.tenant(tenant)?;
        let data = t.data();
        let found = data.stacks.get(&record.id).map(|s| s.version);
        check_version(|| stack_what(tenant, &record.id), found, expected_version)?;
        let version = expected_version.map_or(1, |v| v + 1);
        data.stacks.insert(record.id.clone(), StackRecord { version, ..record.clone() });
        t.save(&[Touched::Stack(record.id.clone())])?;
        Ok(version)
    }

    async fn delete_stack(&self, tenant: &str, stack: &str, expected_version: Option<u64>) -> Result<()> {
        check_id("stack", stack)?;
        let mut t = self.tenant(tenant)?;
        let data = t.data();
        if let Some(expected) = expected_version {
            let found = data.stacks.get(stack).map(|s| s.version);
            check_version(|| stack_what(tenant, stack), found, Some(expected))?;
        }
        let systems: Vec<String> =
            data.by_stack.iter().filter(|(stk, _)| stk == stack).map(|(_, sys)| sys.clone()).collect();
        self.stats.record(ReadOp::Maintenance, 1, systems.len() as u64);
        let mut touched = vec![Touched::Stack(stack.to_string())];
        for system in systems {
            data.by_stack.remove(&(stack.to_string(), system.clone()));
            data.by_system.remove(&(system.clone(), stack.to_string()));
            touched.push(Touched::Binding(stack.to_string(), system));
        }
        data.stacks.remove(stack);
        t.save(&touched)?;
        Ok(())
    }

    async fn set_bindings(&self, tenant: &str, stack: &str, systems: &[String]) -> Result<BindingChange> {
        check_id("stack", stack)?;
        for system in systems {
            check_id("system", system)?;
        }
        let mut t = self.tenant(tenant)?;
        let data = t.data();
        let current: BTreeSet<String> =
            data.by_stack.iter().filter(|(stk, _)| stk == stack).map(|(_, sys)| sys.clone()).collect();
        self.stats.record(ReadOp::Maintenance, 1, current.len() as u64);
        let desired: BTreeSet<String> = systems.iter().cloned().collect();
        let change = BindingChange {
            added: desired.difference(&current).cloned().collect(),
            removed: current.difference(&desired).cloned().collect(),
        };
        for system in &change.added {
            data.by_stack.insert((stack.to_string(), system.clone()));
            data.by_system.insert((system.clone(), stack.to_string()));
        }
        for system in &change.removed {
            data.by_stack.remove(&(stack.to_string(), system.clone()));
            data.by_system.remove(&(system.clone(), stack.to_string()));
        }
        let touched: Vec<Touched> = change
            .added
            .iter()
            .chain(&change.removed)
            .map(|system| Touched::Binding(stack.to_string(), system.clone()))
            .collect();
        t.save(&touched)?;
        Ok(change)
    }

    async fn systems_of_stack(&self, tenant: &str, stack: &str) -> Result<Vec<String>> {
        check_id("stack", stack)?;
        let mut t = self.tenant(tenant)?;
        let systems: Vec<String> = t
            .data()
            .by_stack
            .range((stack.to_string(), String::new())..)
            .take_while(|(stk, _)| stk == stack)
            .map(|(_, sys)| sys.clone())
            .collect();
        self.stats.record(ReadOp::SystemsOfStack, 1, systems.len() as u64);
        Ok(systems)
    }

    async fn stacks_of_system(&self, tenant: &str, system: &str) -> Result<Vec<String>> {
        check_id("system", system)?;
        let mut t = self.tenant(tenant)?;
        let stacks: Vec<String> = t
            .data()
            .by_system
            .range((system.to_string(), String::new())..)
            .take_while(|(sys, _)| sys == system)
            .map(|(_, stk)| stk.clone())
            .collect();
        self.stats.record(ReadOp::StacksOfSystem, 1, stacks.len() as u64);
        Ok(stacks)
    }

    async fn record_revision(&self, tenant: &str, system: &str, revision: &RevisionRecord) -> Result<()> {
        check_id("system", system)?;
        check_id("revision", &revision.revision)?;
        format_timestamp(revision.created)?;
        let mut t = self.tenant(tenant)?;
        t.data()
            .revisions
            .entry(system.to_string())
            .or_default()
            .entry(revision.revision.clone())
            .or_insert_with(|| revision.clone());
        t.save(&[Touched::Revision(system.to_string(), revision.revision.clone())])?;
        Ok(())
    }

    async fn revisions(
        &self,
        tenant: &str,
        system: &str,
        limit: Option<usize>,
    ) -> Result<Vec<RevisionRecord>> {
        check_id("system", system)?;
        let mut t = self.tenant(tenant)?;
        let mut all: Vec<RevisionRecord> =
            t.data().revisions.get(system).map(|m| m.values().cloned().collect()).unwrap_or_default();
        all.sort_by(|a, b| (b.created, &b.revision).cmp(&(a.created, &a.revision)));
        all.truncate(limit.unwrap_or(usize::MAX));
        self.stats.record(ReadOp::Revisions, 1, all.len() as u64);
        Ok(all)
    }

    async fn delete_revision(&self, tenant: &str, system: &str, revision: &str) -> Result<()> {
        check_id("system", system)?;
        check_id("revision", revision)?;
        let mut t = self.tenant(tenant)?;
        if let Some(revs) = t.data().revisions.get_mut(system) {
            revs.remove(revision);
        }
        t.save(&[Touched::Revision(system.to_string(), revision.to_string())])?;
        Ok(())
    }

    async fn append_commit(&self, tenant: &str, record: &CommitRecord) -> Result<u64> {
        format_timestamp(record.time)?;
        let mut t = self.tenant(tenant)?;
        let data = t.data();
        // One process holds the tenant's log at a time: the milliseconds of the entry's time,
        // counted on within one and past `head` (which covers ids given to `put_commit`); the
        // loop only guards against a journal whose head lags its entries, never overwriting one.
        let mut sequence = super::commit_id(record.time, 0, data.head);
        while data.commits.contains_key(&sequence) {
            sequence += 1;
        }
        data.commits.insert(sequence, CommitRecord { sequence, ..record.clone() });
        data.head = sequence;
        let mut touched = self.trim_commits(data);
        touched.extend([Touched::Commit(sequence), Touched::Head]);
        t.save(&touched)?;
        Ok(sequence)
    }

    async fn put_commit(&self, tenant: &str, sequence: u64, record: &CommitRecord) -> Result<()> {
        if sequence == 0 {
            return Err(IndexError::Invalid {
                what: "commit sequence".into(),
                message: "sequences start at 1".into(),
            });
        }
        format_timestamp(record.time)?;
        let mut t = self.tenant(tenant)?;
        let data = t.data();
        if data.commits.contains_key(&sequence) {
            return Err(IndexError::Conflict {
                what: format!("commit {sequence} of tenant {tenant}"),
                expected: "absent".into(),
                found: "an existing entry".into(),
            });
        }
        data.commits.insert(sequence, CommitRecord { sequence, ..record.clone() });
        data.head = data.head.max(sequence);
        let mut touched = self.trim_commits(data);
        touched.extend([Touched::Commit(sequence), Touched::Head]);
        t.save(&touched)?;
        Ok(())
    }

    async fn commits(&self, tenant: &str, limit: usize) -> Result<Vec<CommitRecord>> {
        let mut t = self.tenant(tenant)?;
        let entries: Vec<CommitRecord> = t.data().commits.values().rev().take(limit).cloned().collect();
        self.stats.record(ReadOp::Commits, 1, entries.len() as u64);
        Ok(entries)
    }

    async fn put_data_key(&self, tenant: &str, key: &WrappedKey) -> Result<()> {
        check_id("data key", &key.key_id)?;
        format_timestamp(key.created)?;
        let mut t = self.tenant(tenant)?;
        let data = t.data();
        self.stats.record(ReadOp::Maintenance, 1, data.keys.len() as u64);
        if data.keys.contains_key(&key.key_id) {
            return Err(IndexError::Conflict {
                what: format!("data key {} of tenant {tenant}", key.key_id),
                expected: "absent".into(),
                found: "an existing key".into(),
            });
        }
        if key.state == KeyState::Current {
            for other in data.keys.values_mut() {
                other.state = KeyState::Retired;
            }
        }
        data.keys.insert(key.key_id.clone(), key.clone());
        let touched: Vec<Touched> = data.keys.keys().map(|id| Touched::Key(id.clone())).collect();
        t.save(&touched)?;
        Ok(())
    }

    async fn data_keys(&self, tenant: &str) -> Result<Vec<WrappedKey>> {
        let mut t = self.tenant(tenant)?;
        let mut keys: Vec<WrappedKey> = t.data().keys.values().cloned().collect();
        self.stats.record(ReadOp::DataKeys, 1, keys.len() as u64);
        keys.sort_by(|a, b| (b.created, &b.key_id).cmp(&(a.created, &a.key_id)));
        Ok(keys)
    }

    async fn bind_system(
        &self,
        tenant: &str,
        system: &str,
        added: &[String],
        removed: &[String],
    ) -> Result<()> {
        check_id("system", system)?;
        for stack in added.iter().chain(removed) {
            check_id("stack", stack)?;
        }
        let mut t = self.tenant(tenant)?;
        let data = t.data();
        let mut touched = Vec::new();
        for stack in added {
            data.by_stack.insert((stack.clone(), system.to_string()));
            data.by_system.insert((system.to_string(), stack.clone()));
            touched.push(Touched::Binding(stack.clone(), system.to_string()));
        }
        for stack in removed {
            data.by_stack.remove(&(stack.clone(), system.to_string()));
            data.by_system.remove(&(system.to_string(), stack.clone()));
            touched.push(Touched::Binding(stack.clone(), system.to_string()));
        }
        t.save(&touched)?;
        Ok(())
    }

    async fn systems(&self, tenant: &str) -> Result<Vec<SystemRecord>> {
        let mut t = self.tenant(tenant)?;
        let all: Vec<SystemRecord> = t.data().systems.values().cloned().collect();
        self.stats.record(ReadOp::Systems, 1, all.len() as u64);
        Ok(all)
    }

    async fn stacks(&self, tenant: &str) -> Result<Vec<StackListing>> {
        let mut t = self.tenant(tenant)?;
        let data = t.data();
        let mut listed: BTreeMap<String, StackListing> = BTreeMap::new();
        let new = |id: &String| StackListing { id: id.clone(), record: None, systems: Vec::new() };
        for (id, record) in &data.stacks {
            listed.entry(id.clone()).or_insert_with(|| new(id)).record = Some(record.clone());
        }
        for (stack, system) in &data.by_stack {
            listed.entry(stack.clone()).or_insert_with(|| new(stack)).systems.push(system.clone());
        }
        let items = data.stacks.len() + data.by_stack.len();
        self.stats.record(ReadOp::Stacks, 1, items as u64);
        Ok(listed.into_values().collect())
    }

    async fn record_decisions(
        &self,
        tenant: &str,
        batch: &DecisionBatch,
        minutes: &BTreeMap<String, MinuteCounts>,
    ) -> Result<bool> {
        batch.check()?;
        let sort_key = batch.sort_key()?;
        let now = SystemTime::now();
        let mut t = self.tenant(tenant)?;
        let data = t.data();
        let system = batch.system.clone();
        let batches = data.batches.entry(system.clone()).or_default();
        if batches.contains_key(&sort_key) {
            return Ok(false);
        }
        let mut touched: Vec<Touched> = drop_expired(batches, |b| b.expires, now)
            .into_iter()
            .map(|k| Touched::Batch(system.clone(), k))
            .collect();
        let expires = batch.expires.map(to_the_second);
        batches.insert(sort_key.clone(), DecisionBatch { expires, ..batch.clone() });
        touched.push(Touched::Batch(system.clone(), sort_key));
        let series = data.minutes.entry(system.clone()).or_default();
        touched.extend(
            drop_expired(series, |m| m.expires, now).into_iter().map(|k| Touched::Minute(system.clone(), k)),
        );
        for (minute, counts) in minutes {
            let item = series.entry(minute.clone()).or_default();
            item.counts.add(counts);
            item.expires = expires;
            touched.push(Touched::Minute(system.clone(), minute.clone()));
        }
        t.save(&touched)?;
        Ok(true)
    }

    async fn decision_batches(
        &self,
        tenant: &str,
        system: &str,
        from: SystemTime,
        to: SystemTime,
    ) -> Result<Vec<DecisionBatch>> {
        check_id("system", system)?;
        let (low, high) = batch_range(from, to)?;
        let now = SystemTime::now();
        let mut t = self.tenant(tenant)?;
        let Some(batches) = t.data().batches.get(system) else {
            self.stats.record(ReadOp::DecisionBatches, 1, 0);
            return Ok(Vec::new());
        };
        let in_range: Vec<&DecisionBatch> = batches.range(low..=high).map(|(_, b)| b).collect();
        self.stats.record(ReadOp::DecisionBatches, 1, in_range.len() as u64);
        Ok(in_range
            .into_iter()
            .filter(|b| b.overlaps(from, to) && !expired(b.expires, now))
            .cloned()
            .collect())
    }

    async fn decision_minutes(
        &self,
        tenant: &str,
        system: &str,
        from: SystemTime,
        to: SystemTime,
    ) -> Result<BTreeMap<String, MinuteCounts>> {
        check_id("system", system)?;
        let (first, last) = (minute_of(from)?, minute_of(to)?);
        let now = SystemTime::now();
        let mut t = self.tenant(tenant)?;
        let mut out = BTreeMap::new();
        let mut read = 0;
        if let Some(series) = t.data().minutes.get(system) {
            for (minute, item) in series.range(first..=last) {
                read += 1;
                if !expired(item.expires, now) {
                    out.insert(minute.clone(), item.counts.clone());
                }
            }
        }
        self.stats.record(ReadOp::DecisionMinutes, 1, read);
        Ok(out)
    }

    fn read_stats(&self, op: ReadOp) -> ReadStats {
        self.stats.get(op)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn system(id: &str) -> SystemRecord {
        SystemRecord {
            id: id.into(),
            system_type: "kubernetes".into(),
            labels: BTreeMap::from([("env".into(), "prod".into())]),
            live: None,
            version: 0,
        }
    }

    fn live(rev: &str) -> LiveRevision {
        LiveRevision {
            revision: rev.into(),
            key: format!("bundles/acme/c/ns/web/bundle.tar.gz#{rev}"),
            etag: format!("\"{rev}\""),
            sha256: rev.repeat(2),
            inputs: BTreeMap::from([("System/ns/web".into(), 3)]),
            stacks: vec![],
            published: None,
        }
    }

    fn at(secs: u64) -> std::time::SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn commit(action: &str) -> CommitRecord {
        CommitRecord {
            sequence: 0,
            actor: "alice".into(),
            action: action.into(),
            system: Some("c/ns/web".into()),
            revision: None,
            time: at(0),
            payload: vec![1, 2, 3],
            payload_key_id: None,
        }
    }

    #[tokio::test]
    async fn versions_are_optimistic() {
        let index = MemoryIndex::new();
        assert_eq!(index.put_system("acme", &system("c/ns/web"), None).await.unwrap(), 1);
        let again = index.put_system("acme", &system("c/ns/web"), None).await.unwrap_err();
        assert_eq!(
            again,
            IndexError::Conflict {
                what: "system c/ns/web of tenant acme".into(),
                expected: "absent".into(),
                found: "version 1".into()
            }
        );
        assert_eq!(index.set_live("acme", "c/ns/web", &live("r1"), 1).await.unwrap(), 2);
        let stale = index.set_live("acme", "c/ns/web", &live("r2"), 1).await.unwrap_err();
        assert!(stale.is_conflict() && !stale.is_transient(), "{stale}");
        let got = index.get_system("acme", "c/ns/web").await.unwrap().unwrap();
        assert_eq!((got.version, got.live), (2, Some(live("r1"))));
        // put_system keeps live.
        let mut relabelled = system("c/ns/web");
        relabelled.labels.insert("tier".into(), "1".into());
        assert_eq!(index.put_system("acme", &relabelled, Some(2)).await.unwrap(), 3);
        let got = index.get_system("acme", "c/ns/web").await.unwrap().unwrap();
        assert_eq!(got.live, Some(live("r1")));
        assert_eq!(got.labels.len(), 2);
        assert!(matches!(
            index.set_live("acme", "c/ns/gone", &live("r1"), 1).await,
            Err(IndexError::NotFound { .. })
        ));
        // Tenants are isolated.
        assert_eq!(index.get_system("other", "c/ns/web").await.unwrap(), None);
        assert!(matches!(index.get_system("a#b", "c/ns/web").await, Err(IndexError::Invalid { .. })));
    }

    #[tokio::test]
    async fn racing_writers_one_wins() {
        let index = Arc::new(MemoryIndex::new());
        index.put_system("acme", &system("c/ns/web"), None).await.unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let index = Arc::clone(&index);
                tokio::spawn(
                    async move { index.set_live("acme", "c/ns/web", &live(&format!("r{i}")), 1).await },
                )
            })
            .collect();
        let mut wins = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(v) => {
                    assert_eq!(v, 2);
                    wins += 1;
                }
                Err(e) => assert!(e.is_conflict(), "{e}"),
            }
        }
        assert_eq!(wins, 1);
    }

    #[tokio::test]
    async fn bindings_both_directions() {
        let index = MemoryIndex::new();
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let change = index.set_bindings("acme", "admin/base", &ids(&["c/a/x", "c/b/y"])).await.unwrap();
        assert_eq!(change.added, ids(&["c/a/x", "c/b/y"]));
        index.set_bindings("acme", "admin/extra", &ids(&["c/a/x"])).await.unwrap();
        let change = index.set_bindings("acme", "admin/base", &ids(&["c/b/y", "c/c/z"])).await.unwrap();
        assert_eq!(change, BindingChange { added: ids(&["c/c/z"]), removed: ids(&["c/a/x"]) });
        assert_eq!(index.systems_of_stack("acme", "admin/base").await.unwrap(), ids(&["c/b/y", "c/c/z"]));
        assert_eq!(index.stacks_of_system("acme", "c/a/x").await.unwrap(), ids(&["admin/extra"]));
        index.delete_stack("acme", "admin/extra", None).await.unwrap();
        assert!(index.stacks_of_system("acme", "c/a/x").await.unwrap().is_empty());
        index.delete_system("acme", "c/b/y", None).await.unwrap();
        assert_eq!(index.systems_of_stack("acme", "admin/base").await.unwrap(), ids(&["c/c/z"]));
        let stats = index.read_stats(ReadOp::SystemsOfStack);
        assert_eq!((stats.calls, stats.items), (2, 3));
    }

    #[tokio::test]
    async fn revisions_newest_first_and_idempotent() {
        let index = MemoryIndex::new();
        for (i, rev) in ["a", "b", "c"].iter().enumerate() {
            let record = RevisionRecord {
                revision: rev.to_string(),
                key: format!("k/{rev}"),
                etag: "e".into(),
                size: 10,
                sha256: "s".into(),
                created: at(i as u64),
            };
            index.record_revision("acme", "c/ns/web", &record).await.unwrap();
        }
        let again = RevisionRecord {
            revision: "a".into(),
            key: "k/a".into(),
            etag: "e".into(),
            size: 10,
            sha256: "s".into(),
            created: at(99),
        };
        index.record_revision("acme", "c/ns/web", &again).await.unwrap();
        let revs: Vec<String> = index
            .revisions("acme", "c/ns/web", None)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.revision)
            .collect();
        assert_eq!(revs, ["c", "b", "a"]);
        index.delete_revision("acme", "c/ns/web", "b").await.unwrap();
        let revs = index.revisions("acme", "c/ns/web", Some(1)).await.unwrap();
        assert_eq!(revs.len(), 1);
        assert_eq!(revs[0].revision, "c");
    }

    #[tokio::test]
    async fn commit_log_is_append_only_and_ordered_by_time() {
        let index = MemoryIndex::new();
        let first = index.append_commit("acme", &commit("publish")).await.unwrap();
        assert_eq!(super::super::commit_id_time(first), at(0));
        let second = index.append_commit("acme", &commit("rollback")).await.unwrap();
        assert_eq!(second, first + 1, "entries of one millisecond are counted on");
        assert!(index.put_commit("acme", second, &commit("forged")).await.unwrap_err().is_conflict());
        index.put_commit("acme", second + 5, &commit("imported")).await.unwrap();
        let next = index.append_commit("acme", &commit("next")).await.unwrap();
        assert_eq!(next, second + 6, "appends come after an imported entry");
        let later = CommitRecord { time: at(1), ..commit("later") };
        let later = index.append_commit("acme", &later).await.unwrap();
        assert_eq!(super::super::commit_id_time(later), at(1));
        let log = index.commits("acme", 3).await.unwrap();
        let seen: Vec<(u64, &str)> = log.iter().map(|c| (c.sequence, c.action.as_str())).collect();
        assert_eq!(seen, [(later, "later"), (next, "next"), (second + 5, "imported")]);
    }

    #[tokio::test]
    async fn a_commit_limit_keeps_the_newest_entries_and_the_order() {
        let index = MemoryIndex::new().with_commit_limit(2);
        let mut ids = Vec::new();
        for _ in 0..5 {
            ids.push(index.append_commit("acme", &commit("publish")).await.unwrap());
        }
        let seen: Vec<u64> = index.commits("acme", 10).await.unwrap().iter().map(|c| c.sequence).collect();
        assert_eq!(seen, [ids[4], ids[3]]);
        let next = index.append_commit("acme", &commit("next")).await.unwrap();
        assert_eq!(next, ids[4] + 1, "the order goes on past trimmed entries");
    }

    #[tokio::test]
    async fn data_keys_rotate() {
        let index = MemoryIndex::new();
        let key = |id: &str, secs| WrappedKey {
            key_id: id.into(),
            ciphertext: id.as_bytes().to_vec(),
            created: at(secs),
            state: KeyState::Current,
        };
        index.put_data_key("acme", &key("k1", 1)).await.unwrap();
        index.put_data_key("acme", &key("k2", 2)).await.unwrap();
        assert!(index.put_data_key("acme", &key("k1", 3)).await.unwrap_err().is_conflict());
        let keys = index.data_keys("acme").await.unwrap();
        let states: Vec<(&str, KeyState)> = keys.iter().map(|k| (k.key_id.as_str(), k.state)).collect();
        assert_eq!(states, [("k2", KeyState::Current), ("k1", KeyState::Retired)]);
        let current = super::super::current_data_key(&index, "acme").await.unwrap().unwrap();
        assert_eq!(current.key_id, "k2");
    }
}
