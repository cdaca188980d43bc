//! Publishing to a registry (object store + index): idempotence, history and retention, the
//! commit log, rollback, crashes mid-publish, stores that go away and come back, two writers.
//! The same suite runs on the embedded default (directory store + in-memory index) and, with
//! the `aws` feature, on moto's S3 and DynamoDB and on SeaweedFS.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use common::faults::FaultyStore;
use edict::bundle::{self, Bundle, BundleInput};
use edict::registry::Published;
use edict::registry::index::{MemoryIndex, TenantIndex};
use edict::registry::store::{DirStore, ObjectStore, Precondition, content_digest};
use edict::registry::{PublishError, Registry};
use edict::retry::Backoff;

/// The payments-cluster input from the examples, and variants of it (revision `n`).
fn input() -> BundleInput {
    let ws = edict::engine::workspace::Workspace::load(&[common::root().join("examples/acme")], "c1")
        .expect("examples");
    let build = ws.builds.into_values().find(|b| b.key.name == "payments-cluster").expect("payments");
    build.input.expect("input")
}

fn variant(input: &BundleInput, n: usize) -> Bundle {
    let mut input = input.clone();
    input.policies[0].rego = format!("{}\n# variant {n}\n", input.policies[0].rego).into();
    bundle::build(&input)
}

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

/// Every revision the index records has its object, and the live object is what the index says.
async fn assert_consistent(registry: &Registry, input: &BundleInput) {
    let id = input.system_id();
    let live = registry.live(&id).await.expect("live").expect("a live revision");
    let object = registry.store().get(&input.live_key()).await.expect("get").expect("live object");
    assert_eq!(content_digest(&object.bytes), live.sha256, "the live object is the indexed one");
    for r in registry.history(&id).await.expect("history") {
        let o = registry.store().get(&r.key).await.expect("get").expect("revision object");
        assert_eq!(content_digest(&o.bytes), r.sha256, "revision {} intact", r.revision);
    }
}

async fn suite(name: &str, store: Arc<dyn ObjectStore>, index: Arc<dyn TenantIndex>) {
    let faulty = Arc::new(FaultyStore::new(store));
    let registry = Registry::new("acme", faulty.clone(), index.clone()).with_retention(3).with_actor("tests");
    let input = input();
    let gens = BTreeMap::new();

    // Idempotent: the second publish of the same revision reads the index and writes nothing.
    let first = variant(&input, 0);
    assert_eq!(
        registry.publish(&input, &first, &gens, at(0)).await.expect("publish"),
        Published::Written,
        "{name}"
    );
    let puts = faulty.puts.load(Ordering::SeqCst);
    assert_eq!(
        registry.publish(&input, &first, &gens, at(1)).await.expect("again"),
        Published::Unchanged,
        "{name}"
    );
    assert_eq!(faulty.puts.load(Ordering::SeqCst), puts, "{name}: an unchanged revision writes nothing");
    assert_consistent(&registry, &input).await;

    // History newest first, trimmed to the retention; the live revision is never trimmed.
    let mut revisions = vec![first.revision().to_string()];
    for n in 1..=4 {
        let b = variant(&input, n);
        registry.publish(&input, &b, &gens, at(10 * n as u64)).await.expect("publish");
        revisions.push(b.revision().to_string());
    }
    let history: Vec<String> = registry
        .history(&input.system_id())
        .await
        .expect("history")
        .into_iter()
        .map(|r| r.revision)
        .collect();
    let newest: Vec<String> = revisions.iter().rev().take(3).cloned().collect();
    assert_eq!(history, newest, "{name}: three newest kept");
    let gone = format!("{}/revisions/{}.tar.gz", input.prefix(), revisions[0]);
    assert!(faulty.head(&gone).await.expect("head").is_none(), "{name}: trimmed objects are deleted");
    assert_consistent(&registry, &input).await;

    // Rollback to an older revision (by prefix), recorded in the commit log.
    let back = &revisions[3];
    registry.rollback(&input, &back[..12], at(100)).await.expect("rollback");
    let live = registry.live(&input.system_id()).await.expect("live").expect("live");
    assert_eq!(&live.revision, back, "{name}");
    assert_consistent(&registry, &input).await;
    let log = index.commits("acme", 10).await.expect("commits");
    assert_eq!(log[0].action, "rollback", "{name}");
    assert_eq!(log[0].revision.as_deref(), Some(back.as_str()));
    assert_eq!(log.iter().filter(|c| c.action == "publish").count(), 5, "{name}: one entry per publish");
    let objects = faulty.list("commits/acme/").await.expect("list");
    assert_eq!(objects.len(), log.len(), "{name}: every entry is also an object: {objects:?}");
    let last = faulty.get(objects.last().expect("one")).await.expect("get").expect("object").bytes;
    let entry: serde_json::Value = serde_json::from_slice(&last).expect("unsealed entries are JSON");
    assert_eq!(
        (entry["action"].as_str(), entry["actor"].as_str()),
        (Some("rollback"), Some("tests")),
        "{name}"
    );
    let unknown = registry.rollback(&input, "ffffffff", at(101)).await.expect_err("no such revision");
    assert!(matches!(unknown, PublishError::UnknownRevision { .. }), "{name}: {unknown}");

    // A crash after the revision object, before the live one: nothing changed for OPA or the
    // index; the retry completes.
    let crashed = variant(&input, 5);
    faulty.fail_put.store(faulty.attempted.load(Ordering::SeqCst) + 2, Ordering::SeqCst);
    let err =
        registry.publish(&input, &crashed, &gens, at(200)).await.expect_err("crash before the live object");
    assert!(err.is_transient(), "{name}: {err}");
    assert_ne!(
        registry.live(&input.system_id()).await.expect("live").expect("live").revision,
        crashed.revision()
    );
    assert_consistent(&registry, &input).await;
    assert_eq!(
        registry.publish(&input, &crashed, &gens, at(201)).await.expect("retry"),
        Published::Written,
        "{name}"
    );
    assert_consistent(&registry, &input).await;

    // A crash after the live object was replaced but before the index moved (the live object is
    // ahead of the index): the next publish finds its own bytes live and finishes.
    let ahead = variant(&input, 9);
    faulty
        .put(&input.live_key(), &ahead.archive(), Precondition::None)
        .await
        .expect("the write before the crash");
    assert_eq!(
        registry.publish(&input, &ahead, &gens, at(202)).await.expect("finish"),
        Published::Written,
        "{name}"
    );
    assert_consistent(&registry, &input).await;

    // The store goes away in the middle of publishing and comes back: back-off converges.
    let next = variant(&input, 6);
    faulty.down.store(true, Ordering::SeqCst);
    let flaky = faulty.clone();
    let revive = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        flaky.down.store(false, Ordering::SeqCst);
    });
    let backoff = Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(100),
        deadline: Duration::from_secs(30),
    };
    let mut reported = Vec::new();
    let out = backoff
        .run(
            || registry.publish(&input, &next, &gens, at(300)),
            PublishError::is_transient,
            |e, _| reported.push(e.to_string()),
        )
        .await
        .expect("converges once the store is back");
    revive.await.expect("revive");
    assert_eq!(out, Published::Written, "{name}");
    assert!(
        reported.iter().any(|r| r.contains("Unreachable")),
        "{name}: failures were reported: {reported:?}"
    );
    assert_consistent(&registry, &input).await;

    // An older build never replaces a newer live revision.
    let newer = BTreeMap::from([("Policy/acme-payments/no-privileged".to_string(), 7)]);
    let older = BTreeMap::from([("Policy/acme-payments/no-privileged".to_string(), 6)]);
    registry.publish(&input, &variant(&input, 7), &newer, at(400)).await.expect("newer");
    let stale = registry.publish(&input, &variant(&input, 8), &older, at(401)).await.expect_err("older");
    assert!(matches!(stale, PublishError::Stale { .. }), "{name}: {stale}");
    assert!(!stale.is_transient());
}

/// Two writers publish different revisions of the same System at once: exactly what one of
/// them wrote is live, and the index agrees with the store.
async fn two_writers(name: &str, store: Arc<dyn ObjectStore>, index: Arc<dyn TenantIndex>) {
    let input = input();
    let a = Registry::new("acme", store.clone(), index.clone());
    let b = Registry::new("acme", store.clone(), index.clone());
    a.publish(&input, &variant(&input, 0), &BTreeMap::new(), at(0)).await.expect("seed");
    let (ra, rb) = (variant(&input, 1), variant(&input, 2));
    let gens = BTreeMap::new();
    let (x, y) = tokio::join!(a.publish(&input, &ra, &gens, at(1)), b.publish(&input, &rb, &gens, at(1)));
    let ok = [x.as_ref().is_ok(), y.as_ref().is_ok()];
    assert!(ok.iter().any(|o| *o), "{name}: at least one writer wins: {x:?} {y:?}");
    for r in [&x, &y] {
        if let Err(e) = r {
            assert!(e.is_transient(), "{name}: the loser is told to retry: {e}");
        }
    }
    let live = a.live(&input.system_id()).await.expect("live").expect("live");
    assert!(live.revision == ra.revision() || live.revision == rb.revision(), "{name}");
    assert_consistent(&a, &input).await;
}

#[tokio::test]
async fn embedded_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    suite("dir+memory", Arc::new(DirStore::new(dir.path())), Arc::new(MemoryIndex::new())).await;
    let dir = tempfile::tempdir().expect("tempdir");
    two_writers("dir+memory", Arc::new(DirStore::new(dir.path())), Arc::new(MemoryIndex::new())).await;
}

#[cfg(feature = "aws")]
mod aws_backends {
    use super::*;
    use common::aws;
    use edict::registry::index::dynamodb::DynamoIndex;
    use edict::registry::store::S3Store;

    async fn dynamodb() -> Arc<dyn TenantIndex> {
        let client = aws_sdk_dynamodb::Client::new(&aws::sdk_config(&aws::moto(), "testing", "testing"));
        let index = DynamoIndex::new(client, aws::unique("edict-index"));
        index.ensure_table(true).await.expect("create table");
        Arc::new(index)
    }

    async fn bucket(client: &aws_sdk_s3::Client) -> String {
        let name = aws::unique("edict");
        client.create_bucket().bucket(&name).send().await.expect("bucket");
        name
    }

    #[tokio::test]
    async fn moto_s3_and_dynamodb() {
        let s3 = aws::s3(&aws::moto(), "testing", "testing");
        let store = Arc::new(S3Store::new(s3.clone(), &bucket(&s3).await, "acme", None));
        suite("moto", store, dynamodb().await).await;
        let store = Arc::new(S3Store::new(s3.clone(), &bucket(&s3).await, "acme", None));
        two_writers("moto", store, dynamodb().await).await;
    }

    #[tokio::test]
    async fn seaweedfs_and_dynamodb() {
        let (endpoint, access, secret) = aws::seaweed();
        let s3 = aws::s3(&endpoint, &access, &secret);
        let store = Arc::new(S3Store::new(s3.clone(), &bucket(&s3).await, "", None));
        suite("seaweedfs", store, dynamodb().await).await;
        let store = Arc::new(S3Store::new(s3.clone(), &bucket(&s3).await, "", None));
        two_writers("seaweedfs", store, dynamodb().await).await;
    }
}
