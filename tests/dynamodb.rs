//! The tenant index, one suite against both implementations: the in-memory index and the
//! DynamoDB index on a real DynamoDB API (moto server).
//!
//! The DynamoDB tests need `EDICT_MOTO_ENDPOINT` (`scripts/test.sh`, or
//! `eval "$(scripts/servers.sh start)"`); without it they fail, they never skip. Every test uses
//! its own table, so they run in parallel without resetting the server.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use edict::registry::index::decisions::minute_of;
use edict::registry::index::{
    BindingChange, CommitRecord, DecisionBatch, IndexError, KeyState, LiveRevision, MemoryIndex,
    MinuteCounts, ReadOp, ReadStats, RevisionRecord, StackRecord, SystemRecord, TenantIndex, WrappedKey,
    commit_id, commit_id_time, current_data_key,
};

const SYSTEM: &str = "c1/payments/api";

fn at(secs: u64, nanos: u32) -> SystemTime {
    UNIX_EPOCH + Duration::new(1_750_000_000 + secs, nanos)
}

fn system(id: &str) -> SystemRecord {
    SystemRecord {
        id: id.into(),
        system_type: "kubernetes".into(),
        labels: BTreeMap::from([
            ("app.kubernetes.io/name".into(), "api".into()),
            ("edict.dev/tier".into(), "1".into()),
        ]),
        live: None,
        version: 0,
    }
}

fn live(revision: &str) -> LiveRevision {
    LiveRevision {
        revision: revision.into(),
        key: format!("bundles/acme/{SYSTEM}/bundle.tar.gz"),
        etag: format!("\"etag-{revision}\""),
        sha256: format!("{revision:0>64}"),
        inputs: BTreeMap::from([
            (format!("System/{SYSTEM}"), 4),
            ("Stack/admin/baseline".into(), 12),
            ("Policy/payments/deny-latest".into(), 1),
        ]),
        stacks: vec![],
        published: None,
    }
}

fn revision(id: &str, created: SystemTime) -> RevisionRecord {
    RevisionRecord {
        revision: id.into(),
        key: format!("bundles/acme/{SYSTEM}/revisions/{id}.tar.gz"),
        etag: format!("\"{id}\""),
        size: 1024 + id.len() as u64,
        sha256: format!("{id:0>64}"),
        created,
    }
}

fn commit(action: &str, secs: u64) -> CommitRecord {
    CommitRecord {
        sequence: 0,
        actor: "system:serviceaccount:edict:operator".into(),
        action: action.into(),
        system: Some(SYSTEM.into()),
        revision: Some(format!("rev-{action}")),
        time: at(secs, 0),
        payload: vec![0, 159, 146, 150, 255, secs as u8],
        payload_key_id: Some("dk-1".into()),
    }
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}/sys-{i:04}")).collect()
}

/// What the suite measured, for implementation-specific assertions and the report.
#[derive(Debug)]
struct Measured {
    /// One `systems_of_stack` call on a stack with 250 systems.
    systems_of_big_stack: ReadStats,
    /// One `systems_of_stack` call on a stack with 5 systems (next to the big one).
    systems_of_small_stack: ReadStats,
    /// One `stacks_of_system` call on a system with 2 stacks (and 12 revisions in its partition).
    stacks_of_system: ReadStats,
    /// One `revisions` call on 12 revisions.
    all_revisions: ReadStats,
    /// One `revisions` call with limit 3.
    newest_three: ReadStats,
}

/// Run `f` and return the read counters of `op` it accumulated.
async fn measure<T, F: Future<Output = T>>(index: &dyn TenantIndex, op: ReadOp, f: F) -> (T, ReadStats) {
    let before = index.read_stats(op);
    let out = f.await;
    (out, index.read_stats(op).since(before))
}

/// Whether concurrent transactions and conditional writes on one table are isolated. moto 5.2.5
/// runs `TransactWriteItems` without a lock and rolls a failed transaction back by restoring a
/// deep copy of the table taken when it started, erasing what other transactions committed
/// meanwhile (the commit log's old head item made two concurrent appends both "get" one
/// sequence). Its threaded server also checks an `UpdateItem`'s condition and writes without a
/// lock: of eight writers racing `set_live` with one expected version, two sometimes both
/// succeed (2 runs in 11 on a loaded 2-core machine). Real DynamoDB and the memory index are atomic.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Transactions {
    Atomic,
    #[cfg_attr(not(feature = "aws"), allow(dead_code))]
    NotIsolated,
}

/// The behaviour every [`TenantIndex`] must have.
async fn suite(index: Arc<dyn TenantIndex>, tenant: &str, transactions: Transactions) -> Measured {
    systems(&*index, tenant).await;
    racing_writers(Arc::clone(&index), tenant, transactions).await;
    stacks(&*index, tenant).await;
    let (systems_of_big_stack, systems_of_small_stack, stacks_of_system) = bindings(&*index, tenant).await;
    let (all_revisions, newest_three) = revisions(&*index, tenant).await;
    commit_log(Arc::clone(&index), tenant).await;
    data_keys(&*index, tenant).await;
    deletes(&*index, tenant).await;
    isolation(&*index, tenant).await;
    decisions(&*index, tenant).await;
    directory(&*index, &format!("{tenant}-directory")).await;
    Measured { systems_of_big_stack, systems_of_small_stack, stacks_of_system, all_revisions, newest_three }
}

async fn systems(index: &dyn TenantIndex, tenant: &str) {
    assert_eq!(index.get_system(tenant, SYSTEM).await.unwrap(), None);
    assert_eq!(index.put_system(tenant, &system(SYSTEM), None).await.unwrap(), 1);
    let got = index.get_system(tenant, SYSTEM).await.unwrap().expect("created");
    assert_eq!(got, SystemRecord { version: 1, ..system(SYSTEM) });

    // Creating again is a conflict naming what was expected and found.
    let err = index.put_system(tenant, &system(SYSTEM), None).await.unwrap_err();
    assert_eq!(
        err,
        IndexError::Conflict {
            what: format!("system {SYSTEM} of tenant {tenant}"),
            expected: "absent".into(),
            found: "version 1".into()
        }
    );
    assert!(!err.is_transient());

    // Live revision, with the generations of its inputs.
    assert_eq!(index.set_live(tenant, SYSTEM, &live("r1"), 1).await.unwrap(), 2);
    let got = index.get_system(tenant, SYSTEM).await.unwrap().unwrap();
    assert_eq!((got.version, got.live.as_ref()), (2, Some(&live("r1"))));

    // A stale version gets Conflict and changes nothing.
    let err = index.set_live(tenant, SYSTEM, &live("r-stale"), 1).await.unwrap_err();
    assert_eq!(
        err,
        IndexError::Conflict {
            what: format!("system {SYSTEM} of tenant {tenant}"),
            expected: "version 1".into(),
            found: "version 2".into()
        }
    );
    let mut relabelled = system(SYSTEM);
    relabelled.labels.insert("env".into(), "prod".into());
    assert!(index.put_system(tenant, &relabelled, Some(1)).await.unwrap_err().is_conflict());
    let unchanged = index.get_system(tenant, SYSTEM).await.unwrap().unwrap();
    assert_eq!(unchanged, got);

    // put_system updates labels and type and keeps the live revision.
    relabelled.system_type = "envoy".into();
    relabelled.live = Some(live("ignored"));
    assert_eq!(index.put_system(tenant, &relabelled, Some(2)).await.unwrap(), 3);
    let got = index.get_system(tenant, SYSTEM).await.unwrap().unwrap();
    assert_eq!(got.labels.get("env").map(String::as_str), Some("prod"));
    assert_eq!(got.system_type, "envoy");
    assert_eq!(got.live, Some(live("r1")));

    // Expecting a version of a system that does not exist: NotFound.
    let err = index.set_live(tenant, "c1/payments/missing", &live("r1"), 1).await.unwrap_err();
    assert!(matches!(err, IndexError::NotFound { .. }), "{err}");
    assert!(matches!(
        index.put_system(tenant, &system("c1/payments/missing"), Some(4)).await,
        Err(IndexError::NotFound { .. })
    ));
    // No labels at all is fine.
    let bare = SystemRecord { labels: BTreeMap::new(), ..system("c1/payments/bare") };
    index.put_system(tenant, &bare, None).await.unwrap();
    assert_eq!(index.get_system(tenant, "c1/payments/bare").await.unwrap().unwrap().labels, BTreeMap::new());
}

/// Writers racing `set_live` with the same expected version: exactly one wins (concurrently
/// where the store is atomic; one after the other against moto, see [`Transactions`]).
async fn racing_writers(index: Arc<dyn TenantIndex>, tenant: &str, transactions: Transactions) {
    let id = "c1/payments/raced";
    let version = index.put_system(tenant, &system(id), None).await.unwrap();
    let writers = 8;
    let barrier = Arc::new(tokio::sync::Barrier::new(writers));
    let write = |i: usize| {
        let (index, barrier, tenant) = (Arc::clone(&index), Arc::clone(&barrier), tenant.to_string());
        async move {
            if transactions == Transactions::Atomic {
                barrier.wait().await;
            }
            index.set_live(&tenant, id, &live(&format!("racer-{i}")), version).await.map(|v| (i, v))
        }
    };
    let tasks: Vec<_> = if transactions == Transactions::Atomic {
        (0..writers).map(|i| tokio::spawn(write(i))).collect()
    } else {
        let mut done = Vec::new();
        for i in 0..writers {
            let outcome = write(i).await;
            done.push(tokio::spawn(async move { outcome }));
        }
        done
    };
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.expect("task") {
            Ok(win) => winners.push(win),
            Err(e) => assert!(e.is_conflict(), "a loser gets Conflict, got {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one writer wins: {winners:?}");
    let (winner, new_version) = winners[0];
    let got = index.get_system(tenant, id).await.unwrap().unwrap();
    assert_eq!(got.version, new_version);
    assert_eq!(got.live.map(|l| l.revision), Some(format!("racer-{winner}")));
}

async fn stacks(index: &dyn TenantIndex, tenant: &str) {
    let selector = serde_json::json!({
        "matchLabels": {"edict.dev/tier": ["1", "2*"], "env": []},
        "exclude": {"team": ["legacy-*"]},
    });
    let stack =
        StackRecord { id: "admin/baseline".into(), stack_type: "kubernetes".into(), selector, version: 0 };
    assert_eq!(index.get_stack(tenant, &stack.id).await.unwrap(), None);
    assert_eq!(index.put_stack(tenant, &stack, None).await.unwrap(), 1);
    assert_eq!(
        index.get_stack(tenant, &stack.id).await.unwrap(),
        Some(StackRecord { version: 1, ..stack.clone() })
    );
    assert!(index.put_stack(tenant, &stack, None).await.unwrap_err().is_conflict());
    let changed = StackRecord { selector: serde_json::json!({"matchLabels": {}}), ..stack.clone() };
    assert_eq!(index.put_stack(tenant, &changed, Some(1)).await.unwrap(), 2);
    let err = index.put_stack(tenant, &stack, Some(1)).await.unwrap_err();
    assert!(err.is_conflict(), "{err}");
    assert_eq!(index.get_stack(tenant, &stack.id).await.unwrap().unwrap().selector, changed.selector);
}

async fn bindings(index: &dyn TenantIndex, tenant: &str) -> (ReadStats, ReadStats, ReadStats) {
    let big = ids("c1/big", 250);
    let change = index.set_bindings(tenant, "admin/big", &big).await.unwrap();
    assert_eq!(change, BindingChange { added: big.clone(), removed: vec![] });
    let mut small = ids("c1/small", 4);
    small.push(SYSTEM.into());
    index.set_bindings(tenant, "admin/small", &small).await.unwrap();
    index.set_bindings(tenant, "admin/baseline", &[SYSTEM.to_string(), big[0].clone()]).await.unwrap();

    let (got, big_stats) =
        measure(index, ReadOp::SystemsOfStack, index.systems_of_stack(tenant, "admin/big")).await;
    assert_eq!(got.unwrap(), big);
    let (got, small_stats) =
        measure(index, ReadOp::SystemsOfStack, index.systems_of_stack(tenant, "admin/small")).await;
    let mut sorted = small.clone();
    sorted.sort();
    assert_eq!(got.unwrap(), sorted);
    let (got, stacks_stats) =
        measure(index, ReadOp::StacksOfSystem, index.stacks_of_system(tenant, SYSTEM)).await;
    assert_eq!(got.unwrap(), ["admin/baseline", "admin/small"]);

    // Replace a binding set: add and remove, across transaction chunks.
    let mut next: Vec<String> = big[100..].to_vec();
    next.extend(ids("c1/new", 60));
    let change = index.set_bindings(tenant, "admin/big", &next).await.unwrap();
    assert_eq!(change.added, ids("c1/new", 60));
    assert_eq!(change.removed, big[..100].to_vec());
    let mut expected = next.clone();
    expected.sort();
    assert_eq!(index.systems_of_stack(tenant, "admin/big").await.unwrap(), expected);
    assert_eq!(index.stacks_of_system(tenant, &big[0]).await.unwrap(), ["admin/baseline"]);
    assert_eq!(index.stacks_of_system(tenant, &big[100]).await.unwrap(), ["admin/big"]);
    assert_eq!(index.stacks_of_system(tenant, "c1/new/sys-0000").await.unwrap(), ["admin/big"]);
    // Same set again: nothing to do.
    assert_eq!(index.set_bindings(tenant, "admin/big", &next).await.unwrap(), BindingChange::default());
    // Remove a system from one stack: the other direction follows.
    index.set_bindings(tenant, "admin/small", &ids("c1/small", 4)).await.unwrap();
    assert_eq!(index.stacks_of_system(tenant, SYSTEM).await.unwrap(), ["admin/baseline"]);
    (big_stats, small_stats, stacks_stats)
}

async fn revisions(index: &dyn TenantIndex, tenant: &str) -> (ReadStats, ReadStats) {
    // Recorded out of order; two in the same second differ in nanoseconds.
    let order = [5u64, 0, 11, 3, 8, 1, 10, 2, 9, 4, 7, 6];
    for i in order {
        index
            .record_revision(tenant, SYSTEM, &revision(&format!("rev{i:02}"), at(i, i as u32 * 7)))
            .await
            .unwrap();
    }
    // Idempotent: recording a known revision again keeps the first record.
    index.record_revision(tenant, SYSTEM, &revision("rev03", at(99, 0))).await.unwrap();

    let (all, all_stats) = measure(index, ReadOp::Revisions, index.revisions(tenant, SYSTEM, None)).await;
    let all = all.unwrap();
    let got: Vec<&str> = all.iter().map(|r| r.revision.as_str()).collect();
    let want: Vec<String> = (0..12).rev().map(|i| format!("rev{i:02}")).collect();
    assert_eq!(got, want, "newest first");
    assert_eq!(all[8], revision("rev03", at(3, 21)), "round trip, first record kept");

    let (newest, newest_stats) =
        measure(index, ReadOp::Revisions, index.revisions(tenant, SYSTEM, Some(3))).await;
    let newest: Vec<String> = newest.unwrap().into_iter().map(|r| r.revision).collect();
    assert_eq!(newest, ["rev11", "rev10", "rev09"]);

    // Retention: keep the newest 10, trim the rest.
    for old in &all[10..] {
        index.delete_revision(tenant, SYSTEM, &old.revision).await.unwrap();
    }
    index.delete_revision(tenant, SYSTEM, "never-recorded").await.unwrap();
    let kept = index.revisions(tenant, SYSTEM, None).await.unwrap();
    assert_eq!(kept.len(), 10);
    assert_eq!(kept.last().map(|r| r.revision.as_str()), Some("rev02"));
    assert!(index.revisions(tenant, "c1/payments/none", None).await.unwrap().is_empty());
    (all_stats, newest_stats)
}

async fn commit_log(index: Arc<dyn TenantIndex>, tenant: &str) {
    assert!(index.commits(tenant, 10).await.unwrap().is_empty());
    let publish = index.append_commit(tenant, &commit("publish", 1)).await.unwrap();
    let rollback = index.append_commit(tenant, &commit("rollback", 2)).await.unwrap();
    let empty =
        index.append_commit(tenant, &CommitRecord { payload: vec![], ..commit("empty", 3) }).await.unwrap();
    // An entry's id is its time: no head item, nothing for parallel writers to contend on.
    assert_eq!([publish, rollback, empty].map(commit_id_time), [at(1, 0), at(2, 0), at(3, 0)]);

    // Reusing an id fails and leaves the entry as it was.
    let err = index.put_commit(tenant, rollback, &commit("forged", 9)).await.unwrap_err();
    assert_eq!(
        err,
        IndexError::Conflict {
            what: format!("commit {rollback} of tenant {tenant}"),
            expected: "absent".into(),
            found: "an existing entry".into()
        }
    );
    let log = index.commits(tenant, 10).await.unwrap();
    let seen: Vec<(u64, &str)> = log.iter().map(|c| (c.sequence, c.action.as_str())).collect();
    assert_eq!(seen, [(empty, "empty"), (rollback, "rollback"), (publish, "publish")]);
    assert_eq!(log[1], CommitRecord { sequence: rollback, ..commit("rollback", 2) });
    assert!(log[0].payload.is_empty());

    // An entry at an explicit id: this index's appends come after it, even one whose clock
    // says earlier.
    let imported = commit_id(at(10, 0), 0, 0);
    index.put_commit(tenant, imported, &commit("imported", 10)).await.unwrap();
    let late = index.append_commit(tenant, &commit("late-clock", 4)).await.unwrap();
    assert!(late > imported, "{late} after {imported}");

    // Eight publishers append at once, in the same seconds: every append succeeds at its first
    // try, with its own id, and the log holds them all.
    let before = index.append_retries();
    let tasks: Vec<_> = (0..8u64)
        .map(|i| {
            let (index, tenant) = (Arc::clone(&index), tenant.to_string());
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for j in 0..5u64 {
                    let record = commit(&format!("publisher-{i}-{j}"), 20 + j);
                    ids.push(index.append_commit(&tenant, &record).await?);
                }
                Ok::<_, IndexError>(ids)
            })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        ids.extend(task.await.expect("task").expect("append"));
    }
    assert_eq!(index.append_retries() - before, 0, "no append contended with another");
    let distinct: BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), 40, "distinct ids");
    let newest: BTreeSet<u64> = index.commits(tenant, 40).await.unwrap().iter().map(|c| c.sequence).collect();
    assert_eq!(newest, distinct, "the 40 newest entries are the parallel appends");
    let last = index.commits(tenant, 2).await.unwrap();
    assert_eq!(
        last.iter().map(|c| c.sequence).collect::<Vec<_>>(),
        distinct.iter().rev().take(2).copied().collect::<Vec<_>>()
    );
    assert!(index.commits(tenant, 0).await.unwrap().is_empty());
}

async fn data_keys(index: &dyn TenantIndex, tenant: &str) {
    assert!(index.data_keys(tenant).await.unwrap().is_empty());
    assert_eq!(current_data_key(index, tenant).await.unwrap(), None);
    let key = |id: &str, secs| WrappedKey {
        key_id: id.into(),
        ciphertext: format!("kms-blob-{id}").into_bytes(),
        created: at(secs, 0),
        state: KeyState::Current,
    };
    index.put_data_key(tenant, &key("dk-1", 1)).await.unwrap();
    index.put_data_key(tenant, &key("dk-2", 2)).await.unwrap();
    let keys = index.data_keys(tenant).await.unwrap();
    assert_eq!(keys, [key("dk-2", 2), WrappedKey { state: KeyState::Retired, ..key("dk-1", 1) }]);
    assert_eq!(current_data_key(index, tenant).await.unwrap().map(|k| k.key_id), Some("dk-2".into()));
    // A key is never overwritten.
    let err = index.put_data_key(tenant, &key("dk-1", 3)).await.unwrap_err();
    assert!(err.is_conflict(), "{err}");
    // A retired key (import) retires nothing.
    index.put_data_key(tenant, &WrappedKey { state: KeyState::Retired, ..key("dk-0", 0) }).await.unwrap();
    let states: Vec<(String, KeyState)> =
        index.data_keys(tenant).await.unwrap().into_iter().map(|k| (k.key_id, k.state)).collect();
    assert_eq!(
        states,
        [
            ("dk-2".into(), KeyState::Current),
            ("dk-1".into(), KeyState::Retired),
            ("dk-0".into(), KeyState::Retired)
        ]
    );
}

async fn deletes(index: &dyn TenantIndex, tenant: &str) {
    // A stale delete changes nothing.
    let version = index.get_system(tenant, SYSTEM).await.unwrap().unwrap().version;
    assert!(index.delete_system(tenant, SYSTEM, Some(version - 1)).await.unwrap_err().is_conflict());
    assert!(index.get_system(tenant, SYSTEM).await.unwrap().is_some());
    // Deleting a system removes its bindings and revision records too.
    index.delete_system(tenant, SYSTEM, Some(version)).await.unwrap();
    assert_eq!(index.get_system(tenant, SYSTEM).await.unwrap(), None);
    assert!(index.stacks_of_system(tenant, SYSTEM).await.unwrap().is_empty());
    assert!(index.revisions(tenant, SYSTEM, None).await.unwrap().is_empty());
    assert_eq!(index.systems_of_stack(tenant, "admin/baseline").await.unwrap(), ["c1/big/sys-0000"]);
    index.delete_system(tenant, SYSTEM, None).await.unwrap();
    assert!(matches!(index.delete_system(tenant, SYSTEM, Some(1)).await, Err(IndexError::NotFound { .. })));
    // Deleting a stack removes its bindings.
    assert!(index.delete_stack(tenant, "admin/baseline", Some(1)).await.unwrap_err().is_conflict());
    index.delete_stack(tenant, "admin/baseline", Some(2)).await.unwrap();
    assert_eq!(index.get_stack(tenant, "admin/baseline").await.unwrap(), None);
    assert!(index.systems_of_stack(tenant, "admin/baseline").await.unwrap().is_empty());
    assert!(index.stacks_of_system(tenant, "c1/big/sys-0000").await.unwrap().is_empty());
    index.delete_stack(tenant, "admin/big", None).await.unwrap();
    assert!(index.systems_of_stack(tenant, "admin/big").await.unwrap().is_empty());
}

async fn isolation(index: &dyn TenantIndex, tenant: &str) {
    let other = format!("{tenant}-other");
    assert_eq!(index.get_system(&other, "c1/payments/raced").await.unwrap(), None);
    assert!(index.systems_of_stack(&other, "admin/small").await.unwrap().is_empty());
    assert!(index.commits(&other, 5).await.unwrap().is_empty());
    assert!(index.data_keys(&other).await.unwrap().is_empty());
    let first = index.append_commit(&other, &commit("first", 1)).await.unwrap();
    let log = index.commits(&other, 5).await.unwrap();
    assert_eq!(log.iter().map(|c| (c.sequence, c.action.as_str())).collect::<Vec<_>>(), [(first, "first")]);
    for bad in ["", "a#b"] {
        let err = index.get_system(bad, SYSTEM).await.unwrap_err();
        assert!(matches!(err, IndexError::Invalid { .. }), "{err}");
    }
    let err = index.put_system(tenant, &system(""), None).await.unwrap_err();
    assert!(matches!(err, IndexError::Invalid { .. }), "{err}");
    let err =
        index.record_revision(tenant, SYSTEM, &revision("old", UNIX_EPOCH - Duration::from_secs(1))).await;
    assert!(matches!(err, Err(IndexError::Invalid { .. })), "{err:?}");
}

/// The multi-cluster view: every System of a tenant across clusters with its live revision,
/// and every Stack with its bindings, one query each.
async fn directory(index: &dyn TenantIndex, tenant: &str) {
    let systems = ["c1/payments/api", "c1/web/front", "c2/payments/api"];
    for id in systems {
        index.put_system(tenant, &system(id), None).await.unwrap();
    }
    let published = at(42, 0);
    let live =
        LiveRevision { published: Some(published), stacks: vec!["admin/baseline".into()], ..live("r1") };
    index.set_live(tenant, "c2/payments/api", &live, 1).await.unwrap();
    let baseline = StackRecord {
        id: "c1/admin/baseline".into(),
        stack_type: "kubernetes".into(),
        selector: serde_json::json!({"edict.dev/tier": ["1"]}),
        version: 0,
    };
    index.put_stack(tenant, &baseline, None).await.unwrap();
    for id in &systems[..2] {
        index.bind_system(tenant, id, &["c1/admin/baseline".into()], &[]).await.unwrap();
    }
    index.bind_system(tenant, "c2/payments/api", &["c2/admin/baseline".into()], &[]).await.unwrap();

    let (listed, stats) = measure(index, ReadOp::Systems, index.systems(tenant)).await;
    let listed = listed.unwrap();
    assert_eq!(listed.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), systems);
    let c2 = listed.iter().find(|s| s.id == "c2/payments/api").unwrap();
    assert_eq!(c2.live.as_ref().map(|l| (l.revision.as_str(), l.published)), Some(("r1", Some(published))));
    assert_eq!(c2.live.as_ref().unwrap().stacks, ["admin/baseline"]);
    assert_eq!((stats.calls, stats.requests), (1, 1), "one query: {stats:?}");

    let (stacks, stats) = measure(index, ReadOp::Stacks, index.stacks(tenant)).await;
    let stacks = stacks.unwrap();
    assert_eq!((stats.calls, stats.requests), (1, 1), "one query: {stats:?}");
    let summary: Vec<(&str, bool, Vec<&str>)> = stacks
        .iter()
        .map(|s| (s.id.as_str(), s.record.is_some(), s.systems.iter().map(String::as_str).collect()))
        .collect();
    assert_eq!(
        summary,
        [
            ("c1/admin/baseline", true, vec!["c1/payments/api", "c1/web/front"]),
            ("c2/admin/baseline", false, vec!["c2/payments/api"]),
        ]
    );
    assert_eq!(stacks[0].record.as_ref().map(|r| r.version), Some(1));
    assert_eq!(index.systems_of_stack(tenant, "c1/admin/baseline").await.unwrap(), &systems[..2]);
    assert_eq!(index.stacks_of_system(tenant, "c1/web/front").await.unwrap(), ["c1/admin/baseline"]);

    index.bind_system(tenant, "c1/web/front", &[], &["c1/admin/baseline".into()]).await.unwrap();
    assert_eq!(index.systems_of_stack(tenant, "c1/admin/baseline").await.unwrap(), ["c1/payments/api"]);
    assert!(index.stacks_of_system(tenant, "c1/web/front").await.unwrap().is_empty());
    // A stack whose name begins another's keeps its own bindings.
    index.bind_system(tenant, "c1/web/front", &["c1/admin/base".into()], &[]).await.unwrap();
    assert_eq!(index.systems_of_stack(tenant, "c1/admin/base").await.unwrap(), ["c1/web/front"]);
    assert_eq!(index.systems_of_stack(tenant, "c1/admin/baseline").await.unwrap(), ["c1/payments/api"]);
}

/// A stored decision object of `SYSTEM` with `allowed` and `denied` decisions, one every 10 s
/// from `from` (seconds after [`at`]'s origin), and its counts per minute.
fn decision_batch(
    id: &str,
    from: u64,
    allowed: u64,
    denied: u64,
    expires: Option<SystemTime>,
) -> (DecisionBatch, BTreeMap<String, MinuteCounts>) {
    let mut minutes: BTreeMap<String, MinuteCounts> = BTreeMap::new();
    for i in 0..allowed + denied {
        let m = minutes.entry(minute_of(at(from + 10 * i, 0)).unwrap()).or_default();
        let allow = i < allowed;
        m.total += 1;
        m.allowed += u64::from(allow);
        m.denied += u64::from(!allow);
        *m.by_tier.entry(if allow { 9 } else { 3 }).or_default() += 1;
        if !allow {
            *m.by_source.entry("stack/admin/baseline".into()).or_default() += 1;
        }
    }
    let batch = DecisionBatch {
        system: SYSTEM.into(),
        batch_id: id.into(),
        key: format!("decisions/acme/c1/payments/api/dt=2025-06-15/hour=15/{id}.json.gz"),
        from: at(from, 0),
        to: at(from + 10 * (allowed + denied - 1), 0),
        events: allowed + denied,
        allowed,
        denied,
        expires,
    };
    (batch, minutes)
}

/// Decision batches and per-minute counts: each batch counted once however often it is
/// recorded, found by time range with one query, expired items left out.
async fn decisions(index: &dyn TenantIndex, tenant: &str) {
    // Whole seconds: the TTL attribute keeps no fraction.
    let tomorrow = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 86_400;
    let later = Some(UNIX_EPOCH + Duration::from_secs(tomorrow));
    let (first, first_minutes) = decision_batch("aa01", 0, 3, 2, later);
    let (second, second_minutes) = decision_batch("bb02", 100, 4, 4, None);
    let (next_hour, next_hour_minutes) = decision_batch("cc03", 3700, 1, 0, later);
    let (gone, gone_minutes) = decision_batch("dd04", 200, 5, 5, Some(UNIX_EPOCH + Duration::from_secs(1)));
    for (batch, minutes) in [(&first, &first_minutes), (&second, &second_minutes)] {
        assert!(index.record_decisions(tenant, batch, minutes).await.unwrap(), "recorded once");
        assert!(!index.record_decisions(tenant, batch, minutes).await.unwrap(), "a batch sent again");
    }
    assert!(index.record_decisions(tenant, &next_hour, &next_hour_minutes).await.unwrap());
    assert!(index.record_decisions(tenant, &gone, &gone_minutes).await.unwrap());

    let (found, stats) = measure(index, ReadOp::DecisionBatches, async {
        index.decision_batches(tenant, SYSTEM, at(0, 0), at(170, 0)).await.unwrap()
    })
    .await;
    assert_eq!(found, [first.clone(), second.clone()], "the two batches of the range, in time order");
    assert_eq!(stats.calls, 1);
    let ids = |b: Vec<DecisionBatch>| b.into_iter().map(|b| b.batch_id).collect::<Vec<_>>();
    // A range inside the second batch finds it; one after every batch of the hour finds none.
    assert_eq!(ids(index.decision_batches(tenant, SYSTEM, at(120, 0), at(130, 0)).await.unwrap()), ["bb02"]);
    assert!(index.decision_batches(tenant, SYSTEM, at(1000, 0), at(3000, 0)).await.unwrap().is_empty());
    assert_eq!(
        ids(index.decision_batches(tenant, SYSTEM, at(0, 0), at(7200, 0)).await.unwrap()),
        ["aa01", "bb02", "cc03"]
    );
    assert!(
        index.decision_batches(tenant, "c1/payments/other", at(0, 0), at(7200, 0)).await.unwrap().is_empty()
    );

    let minutes = index.decision_minutes(tenant, SYSTEM, at(0, 0), at(7200, 0)).await.unwrap();
    let mut expected: BTreeMap<String, MinuteCounts> = BTreeMap::new();
    for m in [&first_minutes, &second_minutes, &next_hour_minutes] {
        for (minute, counts) in m {
            expected.entry(minute.clone()).or_default().add(counts);
        }
    }
    assert_eq!(minutes, expected, "each batch counted once, the expired one not at all");
    let total: u64 = minutes.values().map(|m| m.total).sum();
    assert_eq!(total, first.events + second.events + next_hour.events);
    let denied: u64 =
        minutes.values().map(|m| m.by_source.get("stack/admin/baseline").copied().unwrap_or(0)).sum();
    assert_eq!(denied, 6);
    // One minute only.
    let one = index.decision_minutes(tenant, SYSTEM, at(3700, 0), at(3700, 0)).await.unwrap();
    assert_eq!(one.values().map(|m| m.total).sum::<u64>(), 1);

    let (too_long, minutes) = decision_batch("ee05", 0, 400, 0, None);
    let err = index.record_decisions(tenant, &too_long, &minutes).await.unwrap_err();
    assert!(matches!(err, IndexError::Invalid { .. }), "{err}");
}

fn report(name: &str, m: &Measured) {
    let line = |what: &str, s: ReadStats| {
        println!(
            "[{name}] {what}: {} call(s), {} request(s), {} item(s) read, {:.1} items/call",
            s.calls,
            s.requests,
            s.items,
            s.items_per_call()
        );
    };
    line("systems_of_stack (250 bound)", m.systems_of_big_stack);
    line("systems_of_stack (5 bound)", m.systems_of_small_stack);
    line("stacks_of_system (2 stacks, 12 revisions in partition)", m.stacks_of_system);
    line("revisions (12)", m.all_revisions);
    line("revisions (limit 3 of 12)", m.newest_three);
}

/// Items read are exactly the items returned: no query reads other stacks' bindings or the
/// system's revisions.
fn assert_reads_are_exact(m: &Measured) {
    let exact = |s: ReadStats, items| assert_eq!((s.calls, s.items), (1, items), "{s:?}");
    exact(m.systems_of_big_stack, 250);
    exact(m.systems_of_small_stack, 5);
    exact(m.stacks_of_system, 2);
    exact(m.all_revisions, 12);
    exact(m.newest_three, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_index_suite() {
    let index = Arc::new(MemoryIndex::new());
    let m = suite(index, "acme", Transactions::Atomic).await;
    report("memory", &m);
    assert_reads_are_exact(&m);
    assert_eq!(m.systems_of_big_stack.requests, 1);
}

#[test]
fn no_scans() {
    for (file, text) in [
        ("mod.rs", include_str!("../src/registry/index/mod.rs")),
        ("memory.rs", include_str!("../src/registry/index/memory.rs")),
        ("dynamodb/mod.rs", include_str!("../src/registry/index/dynamodb/mod.rs")),
        ("dynamodb/requests.rs", include_str!("../src/registry/index/dynamodb/requests.rs")),
        ("dynamodb/items.rs", include_str!("../src/registry/index/dynamodb/items.rs")),
        ("dynamodb/table.rs", include_str!("../src/registry/index/dynamodb/table.rs")),
        ("dynamodb/errors.rs", include_str!("../src/registry/index/dynamodb/errors.rs")),
        ("dynamodb/keys.rs", include_str!("../src/registry/index/dynamodb/keys.rs")),
        ("dynamodb/decisions.rs", include_str!("../src/registry/index/dynamodb/decisions.rs")),
        ("decisions.rs", include_str!("../src/registry/index/decisions.rs")),
    ] {
        assert!(!text.contains(".scan()"), "{file} scans the table");
    }
}

#[cfg(feature = "aws")]
mod dynamodb {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Instant;

    use aws_sdk_dynamodb::Client;
    use aws_sdk_dynamodb::config::retry::RetryConfig;
    use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
    use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    use edict::registry::index::dynamodb::{DynamoIndex, TableState};

    use super::*;

    const REGION: &str = "eu-west-1";

    /// The moto server of the test run. Missing is a failure, not a skip.
    fn endpoint() -> String {
        match std::env::var("EDICT_MOTO_ENDPOINT") {
            Ok(url) if !url.is_empty() => url,
            _ => panic!(
                "EDICT_MOTO_ENDPOINT is not set: the DynamoDB tests need a moto server. Run `scripts/test.sh`, \
                 or `eval \"$(scripts/servers.sh start)\"` and then cargo test"
            ),
        }
    }

    fn client(endpoint: &str, attempts: u32, timeout: Duration) -> Client {
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(endpoint)
            .credentials_provider(Credentials::new("testing", "testing", None, None, "edict-tests"))
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(attempts)
                    .with_initial_backoff(Duration::from_millis(50)),
            )
            .timeout_config(
                TimeoutConfig::builder().connect_timeout(timeout).operation_timeout(timeout * 3).build(),
            )
            .build();
        Client::from_conf(config)
    }

    fn moto() -> Client {
        client(&endpoint(), 3, Duration::from_secs(5))
    }

    /// A table name no other test (or earlier run against the same server) uses.
    fn unique_table(test: &str) -> String {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        format!("edict-{test}-{}-{nanos}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
    }

    async fn delete_table(client: &Client, table: &str) {
        // Best effort: the server is reset between runs anyway.
        let _ = client.delete_table().table_name(table).send().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dynamodb_index_suite() {
        let client = moto();
        let table = unique_table("suite");
        let index = DynamoIndex::new(client.clone(), &table).with_page_size(100);
        assert_eq!(index.ensure_table(true).await.unwrap(), TableState::Created);
        assert_eq!(index.ensure_table(false).await.unwrap(), TableState::Existed);
        let index = Arc::new(index);
        // moto's transactions are not isolated (see `Transactions`); against real DynamoDB this
        // would be `Transactions::Atomic`.
        let m = suite(Arc::clone(&index) as Arc<dyn TenantIndex>, "acme", Transactions::NotIsolated).await;
        report("dynamodb", &m);
        assert_reads_are_exact(&m);
        // 250 items in pages of 100: 3 requests.
        assert_eq!(m.systems_of_big_stack.requests, 3, "{:?}", m.systems_of_big_stack);
        assert_eq!(m.newest_three.requests, 1);

        // An item written by something else does not decode: Corrupt, naming it.
        client
            .put_item()
            .table_name(&table)
            .item("PK", AttributeValue::S("T#acme#SYS#c1/x/broken".into()))
            .item("SK", AttributeValue::S("SYSTEM".into()))
            .item("systemId", AttributeValue::S("c1/x/broken".into()))
            .item("version", AttributeValue::S("one".into()))
            .send()
            .await
            .unwrap();
        let err = index.get_system("acme", "c1/x/broken").await.unwrap_err();
        assert!(matches!(err, IndexError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("T#acme#SYS#c1/x/broken/SYSTEM"), "{err}");
        delete_table(&client, &table).await;
    }

    #[tokio::test]
    async fn one_table_shared_by_tenants() {
        let client = moto();
        let table = unique_table("shared");
        let index = DynamoIndex::new(client.clone(), &table);
        index.ensure_table(true).await.unwrap();
        index.put_system("acme", &system(SYSTEM), None).await.unwrap();
        index.put_system("globex", &system(SYSTEM), None).await.unwrap();
        index.set_live("globex", SYSTEM, &live("g1"), 1).await.unwrap();
        assert_eq!(index.get_system("acme", SYSTEM).await.unwrap().unwrap().live, None);
        index.set_bindings("acme", "admin/s", &[SYSTEM.to_string()]).await.unwrap();
        assert!(index.systems_of_stack("globex", "admin/s").await.unwrap().is_empty());
        assert!(index.stacks_of_system("globex", SYSTEM).await.unwrap().is_empty());
        delete_table(&client, &table).await;
    }

    #[tokio::test]
    async fn ensure_table_detects_a_wrong_shape() {
        let client = moto();
        let table = unique_table("wrong-keys");
        client
            .create_table()
            .table_name(&table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("id")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            )
            .key_schema(
                KeySchemaElement::builder().attribute_name("id").key_type(KeyType::Hash).build().unwrap(),
            )
            .send()
            .await
            .unwrap();
        let index = DynamoIndex::new(client.clone(), &table);
        let err = index.ensure_table(true).await.unwrap_err();
        println!("wrong key schema: {err}");
        let IndexError::Misconfigured { table: t, op, code, message } = &err else { panic!("{err}") };
        assert_eq!((t.as_str(), *op, code.as_str()), (table.as_str(), "DescribeTable", "WrongTableShape"));
        assert!(message.contains("key schema is id (HASH), expected PK (HASH), SK (RANGE)"), "{message}");
        assert!(message.contains("global secondary index GSI1 is missing"), "{message}");
        assert!(!err.is_transient());
        // Writes against it fail as Misconfigured too, with the service's code.
        let err = index.put_system("acme", &system(SYSTEM), None).await.unwrap_err();
        println!("write to wrong key schema: {err}");
        assert!(
            matches!(&err, IndexError::Misconfigured { code, .. } if code == "ValidationException"),
            "{err}"
        );
        delete_table(&client, &table).await;
    }

    #[tokio::test]
    async fn ensure_table_checks_ttl() {
        let client = moto();
        let table = unique_table("no-ttl");
        let key =
            |name: &str, t| KeySchemaElement::builder().attribute_name(name).key_type(t).build().unwrap();
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap()
        };
        let gsi = aws_sdk_dynamodb::types::GlobalSecondaryIndex::builder()
            .index_name("GSI1")
            .key_schema(key("GSI1PK", KeyType::Hash))
            .key_schema(key("GSI1SK", KeyType::Range))
            .projection(
                aws_sdk_dynamodb::types::Projection::builder()
                    .projection_type(aws_sdk_dynamodb::types::ProjectionType::All)
                    .build(),
            )
            .build()
            .unwrap();
        client
            .create_table()
            .table_name(&table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("PK"))
            .attribute_definitions(attr("SK"))
            .attribute_definitions(attr("GSI1PK"))
            .attribute_definitions(attr("GSI1SK"))
            .key_schema(key("PK", KeyType::Hash))
            .key_schema(key("SK", KeyType::Range))
            .global_secondary_indexes(gsi)
            .send()
            .await
            .unwrap();
        let index = DynamoIndex::new(client.clone(), &table);
        let err = index.ensure_table(false).await.unwrap_err();
        println!("no TTL: {err}");
        assert!(err.to_string().contains("TTL is disabled; expected it enabled on expiresAt"), "{err}");
        // With `create`, edict may fix it.
        assert_eq!(index.ensure_table(true).await.unwrap(), TableState::Existed);
        assert_eq!(index.ensure_table(false).await.unwrap(), TableState::Existed);
        delete_table(&client, &table).await;
    }

    #[tokio::test]
    async fn missing_table_is_misconfigured() {
        let client = moto();
        let table = unique_table("missing");
        let index = DynamoIndex::new(client, &table);
        let err = index.ensure_table(false).await.unwrap_err();
        println!("missing table: {err}");
        let IndexError::Misconfigured { table: t, code, message, .. } = &err else { panic!("{err}") };
        assert_eq!((t.as_str(), code.as_str()), (table.as_str(), "ResourceNotFoundException"));
        assert_eq!(
            message,
            &format!(
                "table {table} does not exist in {REGION}; set spec.storage.dynamodb.create or create it"
            )
        );
        // Using it without ensure_table: the same diagnosis from the data path.
        let err = index.get_system("acme", SYSTEM).await.unwrap_err();
        println!("missing table on read: {err}");
        assert!(
            matches!(&err, IndexError::Misconfigured { code, message, .. }
                if code == "ResourceNotFoundException" && message.contains(&table)),
            "{err}"
        );
        assert!(!err.is_transient());
    }

    #[tokio::test]
    async fn unreachable_endpoint_is_transient() {
        // Port 9 (discard) is closed here: connection refused. Two attempts, short timeouts.
        let index = DynamoIndex::new(
            client("http://127.0.0.1:9", 2, Duration::from_millis(500)),
            "edict-unreachable",
        );
        let started = Instant::now();
        let err = index.get_system("acme", SYSTEM).await.unwrap_err();
        println!("unreachable: {err}");
        assert!(matches!(err, IndexError::Unavailable { op: "GetItem", .. }), "{err}");
        assert!(err.is_transient());
        let err = index.ensure_table(true).await.unwrap_err();
        assert!(matches!(err, IndexError::Unavailable { op: "DescribeTable", .. }), "{err}");
        let err = index.set_bindings("acme", "admin/s", &[SYSTEM.to_string()]).await.unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    }
}
