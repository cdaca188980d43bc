//! The S3 store and the publisher against real S3 wire-protocol servers: moto (with SSE-KMS)
//! and SeaweedFS (a real object store, which has no KMS).
#![cfg(feature = "aws")]

mod common;

use std::sync::Arc;
use std::time::SystemTime;

use common::aws;
use edict::registry::index::MemoryIndex;
use edict::registry::store::{ObjectStore, Precondition, S3Store, StoreError, content_digest};
use edict::registry::{Published, Registry};

async fn bucket(client: &aws_sdk_s3::Client) -> String {
    let name = aws::unique("edict");
    client.create_bucket().bucket(&name).send().await.expect("create bucket");
    name
}

/// Backends under test: (name, client, store). SeaweedFS rejects SSE-KMS, so it gets none.
async fn stores() -> Vec<(&'static str, aws_sdk_s3::Client, S3Store)> {
    let moto = aws::s3(&aws::moto(), "testing", "testing");
    let moto_bucket = bucket(&moto).await;
    let moto_store = S3Store::new(moto.clone(), &moto_bucket, "tenants/acme", Some(aws::master_key().await));
    let (endpoint, access, secret) = aws::seaweed();
    let seaweed = aws::s3(&endpoint, &access, &secret);
    let seaweed_bucket = bucket(&seaweed).await;
    let seaweed_store = S3Store::new(seaweed.clone(), &seaweed_bucket, "", None);
    vec![("moto", moto, moto_store), ("seaweedfs", seaweed, seaweed_store)]
}

#[tokio::test]
async fn whole_object_writes_with_preconditions() {
    for (name, _, store) in stores().await {
        let key = "bundles/acme/c1/ns/sys/bundle.tar.gz";
        assert!(store.get(key).await.expect("get").is_none(), "{name}: absent at first");
        let first = store.put(key, b"one", Precondition::IfAbsent).await.expect("create");
        assert_eq!(first.sha256.as_deref(), Some(content_digest(b"one").as_str()), "{name}");
        let again = store.put(key, b"two", Precondition::IfAbsent).await;
        assert!(matches!(again, Err(StoreError::PreconditionFailed { .. })), "{name}: {again:?}");
        let stale = store.put(key, b"two", Precondition::IfMatch("\"0000\"".into())).await;
        assert!(matches!(stale, Err(StoreError::PreconditionFailed { .. })), "{name}: {stale:?}");
        let second =
            store.put(key, b"two", Precondition::IfMatch(first.etag.clone())).await.expect("replace");
        assert_ne!(second.etag, first.etag, "{name}");
        let got = store.get(key).await.expect("get").expect("present");
        assert_eq!(got.bytes, b"two", "{name}");
        assert_eq!(
            got.meta.sha256.as_deref(),
            Some(content_digest(b"two").as_str()),
            "{name}: digest recorded"
        );
        let head = store.head(key).await.expect("head").expect("present");
        assert_eq!((head.size, head.etag), (3, second.etag), "{name}");
        store.put("bundles/acme/c1/ns/other/bundle.tar.gz", b"x", Precondition::None).await.expect("put");
        let keys = store.list("bundles/acme/c1/ns/").await.expect("list");
        assert_eq!(
            keys,
            vec!["bundles/acme/c1/ns/other/bundle.tar.gz", key],
            "{name}: keys without the tenant prefix"
        );
        store.delete(key).await.expect("delete");
        assert!(store.head(key).await.expect("head").is_none(), "{name}");
    }
}

#[tokio::test]
async fn objects_live_under_the_prefix_and_use_the_tenant_key() {
    let (_, client, store) = stores().await.remove(0);
    store.put("commits/acme/1", b"entry", Precondition::None).await.expect("put");
    let bucket = client.list_buckets().send().await.expect("buckets");
    assert!(!bucket.buckets().is_empty());
    let raw = client
        .head_object()
        .bucket(store.bucket())
        .key("tenants/acme/commits/acme/1")
        .send()
        .await
        .expect("object under the prefix");
    assert_eq!(raw.server_side_encryption().map(|s| s.as_str()), Some("aws:kms"));
    assert!(raw.ssekms_key_id().is_some_and(|k| !k.is_empty()));
}

#[tokio::test]
async fn publishing_twice_writes_once() {
    for (name, _, store) in stores().await {
        let store: Arc<dyn ObjectStore> = Arc::new(store);
        let ws = edict::engine::workspace::Workspace::load(&[common::root().join("examples/acme")], "c1")
            .expect("examples");
        let registry = Registry::new("acme", store.clone(), Arc::new(MemoryIndex::new()));
        let mut written = 0;
        for b in ws.builds.values() {
            let (input, bundle) = (b.input.as_ref().expect("input"), b.bundle.as_ref().expect("bundle"));
            assert_eq!(
                registry.publish(input, bundle, &b.generations, SystemTime::now()).await.expect("publish"),
                Published::Written,
                "{name}"
            );
            written += 1;
            let live = store.get(&input.live_key()).await.expect("get").expect("live bundle");
            assert_eq!(live.bytes, bundle.archive(), "{name}");
            let revision = format!("{}/revisions/{}.tar.gz", input.prefix(), bundle.revision());
            assert!(store.head(&revision).await.expect("head").is_some(), "{name}: revision kept");
        }
        assert_eq!(written, 3);
        // A new registry whose index is gone (an embedded index lost with its process) learns
        // from the store that nothing changed.
        let restarted =
            Registry::new("acme", store.clone(), Arc::new(MemoryIndex::new())).adopting_unindexed();
        for b in ws.builds.values() {
            let (input, bundle) = (b.input.as_ref().expect("input"), b.bundle.as_ref().expect("bundle"));
            assert_eq!(
                restarted.publish(input, bundle, &b.generations, SystemTime::now()).await.expect("publish"),
                Published::Unchanged,
                "{name}"
            );
        }
    }
}

#[tokio::test]
async fn wrong_bucket_and_bad_credentials_say_what_and_where() {
    let moto = aws::s3(&aws::moto(), "testing", "testing");
    let missing = S3Store::new(moto, "no-such-bucket-edict", "", None);
    let err = missing.put("bundles/x/bundle.tar.gz", b"x", Precondition::None).await.expect_err("no bucket");
    let text = err.to_string();
    assert!(text.contains("PutObject s3://no-such-bucket-edict/bundles/x/bundle.tar.gz"), "{text}");
    assert!(text.contains("NoSuchBucket"), "{text}");
    assert!(!err.is_transient(), "a missing bucket waits for a fix");

    let (endpoint, access, _) = aws::seaweed();
    let wrong = aws::s3(&endpoint, &access, "not-the-secret");
    let denied = S3Store::new(wrong, "any-bucket", "", None);
    let err = denied.get("bundles/x/bundle.tar.gz").await.expect_err("denied");
    let text = err.to_string();
    assert!(text.contains("GetObject s3://any-bucket/bundles/x/bundle.tar.gz"), "{text}");
    assert!(text.contains("SignatureDoesNotMatch") || text.contains("AccessDenied"), "{text}");
}

#[tokio::test]
async fn an_unreachable_store_is_transient() {
    let client = aws::s3("http://127.0.0.1:9", "testing", "testing");
    let store = S3Store::new(client, "bucket", "", None);
    let err = store.put("k", b"x", Precondition::None).await.expect_err("nothing listens on port 9");
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("Unreachable"), "{err}");
}

/// OPA's decision batch, as a real OPA sent it (gzip), through edict's `POST /logs` into S3 on
/// moto (SSE-KMS) and SeaweedFS, under its Hive partition, read back as `edict decisions` reads
/// it; the same batch sent again is stored once.
#[tokio::test]
async fn decision_batches_land_in_s3_once_and_read_back() {
    use axum::body::Body;
    use http::Request;
    use tower::ServiceExt;

    let batch = std::fs::read(common::root().join("tests/fixtures/opa-wire/decision-logs-batch.json"))
        .expect("fixture");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &batch).expect("gzip");
    let body = gz.finish().expect("gzip");
    let system = edict::ingest::SystemKey::new("acme", "local", "acme-payments", "payments-cluster");
    let moto = aws::moto();
    for (name, _, store) in stores().await {
        let store: Arc<dyn ObjectStore> = Arc::new(store);
        // The index on moto's DynamoDB, as a Tenant with storage has it.
        let table = aws::unique("edict-decisions");
        let index = edict::registry::index::dynamodb::DynamoIndex::new(
            aws_sdk_dynamodb::Client::new(&aws::sdk_config(&moto, "testing", "testing")),
            &table,
        );
        index.ensure_table(true).await.expect("table");
        let sink = edict::ingest::Sink {
            store: store.clone(),
            index: Arc::new(index),
            index_tenant: "acme".into(),
            keep: Some(std::time::Duration::from_secs(86_400)),
        };
        let ingest = Arc::new(edict::ingest::Ingest::new(
            sink.clone(),
            edict::ingest::ServedSystems::new([system.clone()]),
            edict::ingest::Limits::default(),
            std::time::Duration::from_secs(600),
        ));
        let app = edict::server::router(edict::server::ServerState {
            store: store.clone(),
            statuses: Default::default(),
            ingest: Some(ingest.clone()),
            changes: Default::default(),
        });
        for _ in 0..2 {
            let request = Request::post("/logs")
                .header("Content-Encoding", "gzip")
                .header("Content-Type", "application/json")
                .body(Body::from(body.clone()))
                .expect("request");
            let answer = app.clone().oneshot(request).await.expect("answer");
            assert_eq!(answer.status(), http::StatusCode::OK, "{name}");
        }
        let keys = store.list("decisions/acme/local/acme-payments/payments-cluster/").await.expect("list");
        assert_eq!(keys.len(), 1, "{name}: one object for one batch sent twice: {keys:?}");
        assert!(keys[0].contains("/dt=2026-11-30/hour=17/"), "{name}: {}", keys[0]);
        let events = edict::ingest::query::events(&sink, &system, None).await.expect("read back");
        assert_eq!(events.len(), 2, "{name}");
        let decided: Vec<Option<bool>> =
            events.iter().map(|e| edict::ingest::query::Recorded::of(e).allowed).collect();
        assert_eq!(decided, [Some(false), Some(true)], "{name}");
        let counters = ingest.counters();
        assert_eq!((counters.stored_events, counters.duplicate_events), (2, 2), "{name}");
        // DynamoDB counted the batch once, though it came twice.
        let minutes = edict::ingest::query::minutes(&sink, &system, std::time::SystemTime::UNIX_EPOCH)
            .await
            .expect("minutes");
        let totals =
            minutes.values().fold((0, 0, 0), |(t, a, d), m| (t + m.total, a + m.allowed, d + m.denied));
        assert_eq!(totals, (2, 1, 1), "{name}: {minutes:?}");
        let batches = sink
            .index
            .decision_batches(
                "acme",
                &system.system_id(),
                std::time::SystemTime::UNIX_EPOCH,
                std::time::SystemTime::now(),
            )
            .await
            .expect("batches");
        assert_eq!(batches.iter().map(|b| b.key.as_str()).collect::<Vec<_>>(), [keys[0].as_str()], "{name}");
        assert!(
            batches[0].expires.is_some_and(|at| at > std::time::SystemTime::now()),
            "{name}: a TTL is set"
        );
    }
}
