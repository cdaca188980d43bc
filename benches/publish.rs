//! Publishing to a local S3 wire-protocol server with the DynamoDB index: bundles per second
//! for the example payments System (variants under many names), the cost of a reconcile whose
//! revision did not change (index only: zero S3 writes), and items read per index query.
//!
//! Needs the test servers: `scripts/bench.sh publish` starts them (or
//! `eval "$(scripts/servers.sh start)"` then `cargo bench --bench publish`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use edict::bundle::{self, Bundle, BundleInput};
use edict::model::ObjectKey;
use edict::registry::Registry;
use edict::registry::index::dynamodb::DynamoIndex;
use edict::registry::index::{ReadOp, TenantIndex};
use edict::registry::store::{ObjectMeta, ObjectStore, Precondition, S3Store, StoreError, StoredObject};
use futures::StreamExt;
use workload::aws::{config, s3};

mod workload;

/// The allocator the edict binary runs with (see `main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Counts writes that reach the store.
#[derive(Debug)]
struct Counting {
    inner: S3Store,
    puts: AtomicUsize,
}

#[async_trait]
impl ObjectStore for Counting {
    async fn put(&self, key: &str, bytes: &[u8], p: Precondition) -> Result<ObjectMeta, StoreError> {
        self.puts.fetch_add(1, Ordering::SeqCst);
        self.inner.put(key, bytes, p).await
    }
    async fn get(&self, key: &str) -> Result<Option<StoredObject>, StoreError> {
        self.inner.get(key).await
    }
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        self.inner.head(key).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list(prefix).await
    }
}

fn inputs(n: usize, prefix: &str) -> Vec<(BundleInput, Bundle)> {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let ws =
        edict::engine::workspace::Workspace::load(&[root.join("examples/acme")], "c1").expect("examples");
    let base = ws
        .builds
        .into_values()
        .find(|b| b.key.name == "payments-cluster")
        .and_then(|b| b.input)
        .expect("input");
    (0..n)
        .map(|i| {
            let mut input = base.clone();
            input.system = ObjectKey::new("acme-payments", format!("{prefix}cluster-{i:04}"));
            let b = bundle::build(&input);
            (input, b)
        })
        .collect()
}

async fn run(label: &str, s3: aws_sdk_s3::Client, ddb: aws_sdk_dynamodb::Client, n: usize) {
    let bucket = format!("edict-bench-{}", std::process::id());
    let _ = s3.create_bucket().bucket(&bucket).send().await;
    let table = format!("edict-bench-{label}-{}", std::process::id());
    let index = DynamoIndex::new(ddb, &table);
    index.ensure_table(true).await.expect("table");
    let index = Arc::new(index);
    let store =
        Arc::new(Counting { inner: S3Store::new(s3, &bucket, label, None), puts: AtomicUsize::new(0) });
    let registry = Registry::new("bench", store.clone(), index.clone());
    let systems = inputs(n, "");
    let none = BTreeMap::new();

    // One at a time first; then with 8 and 32 in flight below.
    let started = Instant::now();
    for (input, b) in &systems {
        registry.publish(input, b, &none, SystemTime::now()).await.expect("publish");
    }
    let first = started.elapsed();
    let writes = store.puts.load(Ordering::SeqCst);

    let reads_before = index.read_stats(ReadOp::GetSystem);
    let started = Instant::now();
    for (input, b) in &systems {
        registry.publish(input, b, &none, SystemTime::now()).await.expect("publish");
    }
    let unchanged = started.elapsed();
    let reads = index.read_stats(ReadOp::GetSystem);
    let extra_writes = store.puts.load(Ordering::SeqCst) - writes;

    let id = systems[0].0.system_id();
    let stats_before = index.read_stats(ReadOp::Revisions);
    let revisions = index.revisions("bench", &id, None).await.expect("revisions");
    let stats_after = index.read_stats(ReadOp::Revisions);
    let bound: Vec<String> = systems.iter().map(|(i, _)| i.system_id()).collect();
    index.set_bindings("bench", "acme-platform/kubernetes-baseline", &bound).await.expect("bindings");
    let q_before = index.read_stats(ReadOp::SystemsOfStack);
    let of_stack = index.systems_of_stack("bench", "acme-platform/kubernetes-baseline").await.expect("query");
    let q_after = index.read_stats(ReadOp::SystemsOfStack);

    // Parallel publishers of one Tenant (new Systems, so every publish writes): the commit
    // log has no head item, so they never retry on each other.
    let mut parallel = Vec::new();
    for in_flight in [8, 32] {
        let systems = inputs(n, &format!("p{in_flight}-"));
        let retries = index.append_retries();
        let started = Instant::now();
        let failed = futures::stream::iter(&systems)
            .map(|(input, b)| registry.publish(input, b, &none, SystemTime::now()))
            .buffer_unordered(in_flight)
            .filter(|r| std::future::ready(r.is_err()))
            .count()
            .await;
        parallel.push((in_flight, started.elapsed(), failed, index.append_retries() - retries));
    }

    let per = |d: Duration| d.as_secs_f64() * 1e3 / n as f64;
    println!("[{label}] {n} Systems, bundle {} bytes", systems[0].1.archive().len());
    println!(
        "   first publish: {:.1} bundles/s ({:.1} ms each; {} S3 writes = {:.1} per publish)",
        n as f64 / first.as_secs_f64(),
        per(first),
        writes,
        writes as f64 / n as f64
    );
    for (in_flight, took, failed, retries) in parallel {
        println!(
            "   {in_flight:>2} in flight: {:.1} bundles/s ({:.1}× one at a time); {failed} failed, \
             {retries} commit-log appends retried",
            n as f64 / took.as_secs_f64(),
            first.as_secs_f64() / took.as_secs_f64()
        );
    }
    println!(
        "   unchanged reconcile: {:.2} ms each, {} S3 writes, {} index GetItem calls ({} items)",
        per(unchanged),
        extra_writes,
        reads.calls - reads_before.calls,
        reads.items - reads_before.items
    );
    println!(
        "   revisions of a System: 1 Query call, {} requests, {} items read ({} revisions)",
        stats_after.requests - stats_before.requests,
        stats_after.items - stats_before.items,
        revisions.len()
    );
    println!(
        "   systems of a stack: 1 call, {} requests, {} items read ({} bound)",
        q_after.requests - q_before.requests,
        q_after.items - q_before.items,
        of_stack.len()
    );
}

#[tokio::main]
async fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let Ok(moto) = std::env::var("EDICT_MOTO_ENDPOINT") else {
        println!(
            "publish bench: EDICT_MOTO_ENDPOINT is not set; run `scripts/bench.sh publish` (it starts the servers)"
        );
        return;
    };
    let n = std::env::var("EDICT_BENCH_SYSTEMS").ok().and_then(|v| v.parse().ok()).unwrap_or(if smoke {
        5
    } else {
        300
    });
    let moto_config = config(&moto, "testing", "testing");
    println!("==================== publish summary ====================");
    println!("(one task; then 8 and 32 publishes in flight; machine: 2 cores, shared)");
    run("moto", s3(&moto_config), aws_sdk_dynamodb::Client::new(&moto_config), n).await;
    if let (Ok(ep), Ok(ak), Ok(sk)) = (
        std::env::var("EDICT_SEAWEED_ENDPOINT"),
        std::env::var("EDICT_SEAWEED_ACCESS_KEY"),
        std::env::var("EDICT_SEAWEED_SECRET_KEY"),
    ) {
        run("seaweedfs", s3(&config(&ep, &ak, &sk)), aws_sdk_dynamodb::Client::new(&moto_config), n).await;
    }
    println!("==========================================================");
}
