//! S3, DynamoDB and KMS go away in the middle of publishing many bundles, through a proxy
//! that cuts real connections, and come back: publishing retries with back-off, reports the
//! failures while they last, and converges to a state where every live bundle, revision object
//! and index item agree. Also: two `edict build --publish` processes racing on the same Systems.
#![cfg(feature = "aws")]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use common::aws;
use common::proxy::Proxy;
use edict::bundle::{self, BundleInput};
use edict::model::ObjectKey;
use edict::registry::index::TenantIndex;
use edict::registry::index::dynamodb::DynamoIndex;
use edict::registry::keys::{KeyRing, MasterKey};
use edict::registry::store::{ObjectStore, S3Store, content_digest};
use edict::registry::{PublishError, Registry};
use edict::retry::Backoff;

/// 40 Systems: the example payments cluster copied under other names.
fn inputs() -> Vec<BundleInput> {
    let ws = edict::engine::workspace::Workspace::load(&[common::root().join("examples/acme")], "c1")
        .expect("examples");
    let base = ws
        .builds
        .into_values()
        .find(|b| b.key.name == "payments-cluster")
        .and_then(|b| b.input)
        .expect("input");
    (0..40)
        .map(|n| {
            let mut i = base.clone();
            i.system = ObjectKey::new("acme-payments", format!("cluster-{n:02}"));
            i
        })
        .collect()
}

async fn check_consistent(registry: &Registry, inputs: &[BundleInput]) {
    for input in inputs {
        let id = input.system_id();
        let live = registry.live(&id).await.expect("index").expect("every System is live");
        let object = registry.store().get(&input.live_key()).await.expect("store").expect("live object");
        assert_eq!(content_digest(&object.bytes), live.sha256, "{id}: live object and index agree");
        assert_eq!(object.meta.etag, live.etag, "{id}: the index knows the live ETag");
        let rebuilt = bundle::build(input);
        assert_eq!(live.revision, rebuilt.revision(), "{id}: the newest build is live");
        for r in registry.history(&id).await.expect("history") {
            let o = registry.store().get(&r.key).await.expect("store").expect("revision object");
            assert_eq!(content_digest(&o.bytes), r.sha256, "{id}: revision {} is whole", r.revision);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outages_mid_publish_converge() {
    let moto = aws::moto();
    let s3_proxy = Proxy::start(&moto).await;
    let ddb_proxy = Proxy::start(&moto).await;
    let kms_proxy = Proxy::start(&moto).await;
    let direct = aws::s3(&moto, "testing", "testing");
    let bucket = aws::unique("edict-outage");
    direct.create_bucket().bucket(&bucket).send().await.expect("bucket");
    let table = aws::unique("edict-outage");
    // No SDK retries: every failure reaches edict's own back-off, which reports it.
    let once = |url: &str| aws::sdk_config_with_attempts(url, "testing", "testing", 1);
    let ddb = aws_sdk_dynamodb::Client::new(&once(&ddb_proxy.url));
    let index = DynamoIndex::new(ddb, &table);
    index.ensure_table(true).await.expect("table");
    let index: Arc<dyn TenantIndex> = Arc::new(index);
    let store: Arc<dyn ObjectStore> =
        Arc::new(S3Store::new(aws::s3_from(&once(&s3_proxy.url)), &bucket, "", None));
    let kms = aws_sdk_kms::Client::new(&once(&kms_proxy.url));
    let master_id = aws::master_key().await;
    let master = MasterKey::new(kms, &master_id, "acme");
    let (key, wrapped) = master.generate("dk-1").await.expect("data key");
    let registry = Registry::new("acme", store, index).with_sealer(Arc::new(KeyRing::new(key)));

    let inputs = inputs();
    // Version 1 of every bundle, with everything up.
    for input in &inputs {
        registry
            .publish(input, &bundle::build(input), &BTreeMap::new(), SystemTime::now())
            .await
            .expect("publish");
    }
    // Version 2, while S3, then DynamoDB, then both go away for a while.
    let changed: Vec<BundleInput> = inputs
        .iter()
        .map(|i| {
            let mut c = i.clone();
            c.policies[0].rego = format!("{}\n# version 2\n", c.policies[0].rego).into();
            c
        })
        .collect();
    // Publish version 2 in four phases; in each, an endpoint is cut just before the phase and
    // comes back 300 ms later, while publishing keeps trying.
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let backoff = Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
        deadline: Duration::from_secs(60),
    };
    let no_generations = BTreeMap::new();
    let (s3, ddb, kms) = (Arc::new(s3_proxy), Arc::new(ddb_proxy), Arc::new(kms_proxy));
    let phases: [(&str, Vec<&Arc<Proxy>>); 4] =
        [("s3", vec![&s3]), ("dynamodb", vec![&ddb]), ("both", vec![&s3, &ddb]), ("kms", vec![&kms])];
    for ((phase, cut), systems) in phases.into_iter().zip(changed.chunks(10)) {
        for p in &cut {
            p.set_down(true);
        }
        let revive: Vec<Arc<Proxy>> = cut.iter().map(|p| Arc::clone(p)).collect();
        let back = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            for p in revive {
                p.set_down(false);
            }
        });
        if phase == "kms" {
            // A restart while KMS is away: the data key cannot be unwrapped until it returns.
            let log = failures.clone();
            backoff
                .run(
                    || master.unwrap("dk-1", &wrapped),
                    edict::registry::keys::KeyError::is_transient,
                    |e, _| log.lock().expect("lock").push(e.to_string()),
                )
                .await
                .expect("KMS comes back");
        }
        for input in systems {
            let bundle = bundle::build(input);
            let log = failures.clone();
            backoff
                .run(
                    || registry.publish(input, &bundle, &no_generations, SystemTime::now()),
                    PublishError::is_transient,
                    |e, _| log.lock().expect("lock").push(format!("{phase}: {e}")),
                )
                .await
                .unwrap_or_else(|e| panic!("{}: did not converge: {e}", input.system_id()));
        }
        back.await.expect("revive");
    }
    let failures = failures.lock().expect("lock").clone();
    let seen = |phase: &str, text: &str| failures.iter().any(|f| f.starts_with(phase) && f.contains(text));
    assert!(seen("s3", "s3://") && seen("s3", "Unreachable"), "S3 failures name the object: {failures:?}");
    assert!(seen("dynamodb", "index unavailable"), "index failures are reported: {failures:?}");
    assert!(seen("both", "unavailable") || seen("both", "Unreachable"), "{failures:?}");
    assert!(
        failures.iter().any(|f| f.starts_with("KMS Decrypt") && f.contains("Unreachable")),
        "{failures:?}"
    );
    check_consistent(&registry, &changed).await;
}

/// A batch of `n` admission decisions of the example payments cluster, one a second from
/// 17:01:00 on 2026-11-30, every third one denied by the baseline Stack.
fn decision_batch(prefix: &str, n: usize) -> Vec<u8> {
    let events: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            let allowed = i % 3 != 0;
            serde_json::json!({
                "labels": {"id": "opa-1", "system_id": "local/acme-payments/payments-cluster", "tenant": "acme"},
                "decision_id": format!("{prefix}-{i}"),
                "timestamp": format!("2026-11-30T17:{:02}:{:02}Z", 1 + i / 60, i % 60),
                "path": "main/main",
                "result": {"allowed": allowed, "tier": if allowed { 9 } else { 3 },
                    "decided_by": [{"source": "stack", "name": "acme-platform/kubernetes-baseline"}]},
            })
        })
        .collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &serde_json::to_vec(&events).expect("json")).expect("gzip");
    gz.finish().expect("gzip")
}

/// Decision batches while S3, then DynamoDB, go away mid-batch: OPA is told to send again
/// (503), nothing is counted twice when it does, and the per-minute counts in DynamoDB equal
/// the decisions stored in S3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decision_batches_cut_off_mid_way_are_stored_and_counted_once() {
    use axum::body::Body;
    use edict::ingest::{Ingest, Limits, ServedSystems, Sink, SystemKey, query};
    use tower::ServiceExt;

    let moto = aws::moto();
    let s3_proxy = Proxy::start(&moto).await;
    let ddb_proxy = Proxy::start(&moto).await;
    let bucket = aws::unique("edict-decisions");
    aws::s3(&moto, "testing", "testing").create_bucket().bucket(&bucket).send().await.expect("bucket");
    let once = |url: &str| aws::sdk_config_with_attempts(url, "testing", "testing", 1);
    let index = DynamoIndex::new(
        aws_sdk_dynamodb::Client::new(&once(&ddb_proxy.url)),
        aws::unique("edict-decisions"),
    );
    index.ensure_table(true).await.expect("table");
    let sink = Sink {
        store: Arc::new(S3Store::new(aws::s3_from(&once(&s3_proxy.url)), &bucket, "", None)),
        index: Arc::new(index),
        index_tenant: "acme".into(),
        keep: Some(Duration::from_secs(86_400)),
    };
    let payments = SystemKey::new("acme", "local", "acme-payments", "payments-cluster");
    let ingest = Arc::new(Ingest::new(
        sink.clone(),
        ServedSystems::new([payments.clone()]),
        Limits::default(),
        Duration::from_secs(600),
    ));
    let app = edict::server::router(edict::server::ServerState {
        store: sink.store.clone(),
        statuses: Default::default(),
        ingest: Some(ingest.clone()),
        changes: Default::default(),
    });
    let post = |body: Vec<u8>| {
        let app = app.clone();
        async move {
            let request = http::Request::post("/logs")
                .header("Content-Encoding", "gzip")
                .header("Content-Type", "application/json")
                .body(Body::from(body))
                .expect("request");
            app.oneshot(request).await.expect("answer").status()
        }
    };
    let (first, second) = (decision_batch("a", 90), decision_batch("b", 30));

    s3_proxy.set_down(true);
    assert_eq!(post(first.clone()).await, http::StatusCode::SERVICE_UNAVAILABLE, "S3 away");
    s3_proxy.set_down(false);
    ddb_proxy.set_down(true);
    // The object lands in S3; the index is away: not acknowledged, OPA keeps the batch.
    assert_eq!(post(first.clone()).await, http::StatusCode::SERVICE_UNAVAILABLE, "DynamoDB away");
    ddb_proxy.set_down(false);
    for body in [&first, &first, &second, &second] {
        assert_eq!(post(body.clone()).await, http::StatusCode::OK);
    }

    let since = SystemTime::UNIX_EPOCH;
    let stored = query::events(&sink, &payments, Some(since)).await.expect("read back");
    assert_eq!(stored.len(), 120, "each decision stored once");
    let minutes = query::minutes(&sink, &payments, since).await.expect("minutes");
    let total: u64 = minutes.values().map(|m| m.total).sum();
    let denied: u64 = minutes.values().map(|m| m.denied).sum();
    let recorded_denied = stored.iter().filter(|e| e["result"]["allowed"] == false).count() as u64;
    assert_eq!((total, denied), (stored.len() as u64, recorded_denied), "{minutes:?}");
    let per_minute: Vec<(&str, u64)> = minutes.iter().map(|(m, c)| (m.as_str(), c.total)).collect();
    assert_eq!(per_minute, [("2026-11-30T17:01", 90), ("2026-11-30T17:02", 30)]);
    let by_stack: u64 =
        minutes.values().map(|m| m.by_source["stack/acme-platform/kubernetes-baseline"]).sum();
    assert_eq!(by_stack, 120);
    let counters = ingest.counters();
    assert_eq!(counters.stored_events, 120, "{counters:?}");
    assert_eq!(counters.rejected_requests, 2, "{counters:?}");
}
