//! Replay at scale (issue 12): recorded decisions of the reference admission System
//! (`examples/acme`'s payments cluster), stored as `run --local` stores them (directory store
//! and embedded index), replayed end to end against the bundle its manifests build: the
//! objects found with the index, read and decoded one at a time, inputs deduplicated by
//! content, distinct inputs evaluated on all cores, each decision compared.
//!
//! Prints decisions replayed per second end to end (target ≥ 20,000/s for 100,000 decisions
//! with 30% distinct inputs on 2 cores), the rate of distinct inputs evaluated, and the same
//! replay in a one-thread pool. `EDICT_BENCH_DECISIONS` sets the count (default 100,000 with
//! `--bench`, 2,000 without, as `cargo test --benches` runs it).

use std::path::Path;
use std::time::{Duration, Instant};

use edict::engine::replay::Replay;
use edict::ingest::{Ingest, Limits, ServedSystems, Sink, SystemKey, query};
use serde_json::{Value, json};

/// The allocator the edict binary runs with (see `main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Decisions per stored batch (as OPA uploads them).
const BATCH: usize = 1_000;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("json")
}

/// `n` decisions of the payments cluster, of which `distinct` have distinct inputs: the example
/// admission requests, each made distinct by its request uid and object name.
fn decisions(n: usize, distinct: usize) -> Vec<Value> {
    let labels =
        json!({"id": "opa-1", "system_id": "local/acme-payments/payments-cluster", "tenant": "acme"});
    let bases: Vec<Value> =
        ["pod-with-nginx.json", "pod-by-superuser.json", "admin-from-internet.json", "secret.json"]
            .iter()
            .map(|f| read_json(&root().join("examples/inputs").join(f)))
            .collect();
    (0..n)
        .map(|i| {
            let k = i % distinct;
            let mut input = bases[k % bases.len()].clone();
            input["request"]["uid"] = json!(format!("uid-{k}"));
            if input["request"]["object"]["metadata"].is_object() {
                input["request"]["object"]["metadata"]["name"] = json!(format!("object-{k}"));
            }
            json!({
                "labels": labels, "decision_id": format!("d-{i:08}"), "path": "main/main", "input": input,
                "result": {"response": {"allowed": !k.is_multiple_of(3)}},
                "timestamp": format!("2026-11-30T17:{:02}:{:02}.{:06}Z", (i / 60_000) % 60, (i / 1_000) % 60, i % 1_000),
            })
        })
        .collect()
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let total: usize = std::env::var("EDICT_BENCH_DECISIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if bench { 100_000 } else { 2_000 });
    let distinct = (total * 3 / 10).max(1);
    let work = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(root().join("examples/acme")).expect("examples") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            std::fs::copy(&path, work.path().join(path.file_name().expect("name"))).expect("copy");
        }
    }
    let store = work.path().join(".edict/store");
    let sink = Sink::of(&edict::registry::Registry::embedded(&store));
    let system = SystemKey::new("acme", "local", "acme-payments", "payments-cluster");
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");

    let started = Instant::now();
    let ingest = Ingest::new(
        sink.clone(),
        ServedSystems::new([system.clone()]),
        Limits::default(),
        Duration::from_secs(600),
    );
    for chunk in decisions(total, distinct).chunks(BATCH) {
        let body = serde_json::to_vec(chunk).expect("json");
        rt.block_on(ingest.store_decisions(&body, None, None)).expect("stored");
    }
    let recorded = started.elapsed();

    let ws =
        edict::engine::workspace::Workspace::load(&[work.path().to_path_buf()], "local").expect("examples");
    let key = edict::model::ObjectKey::new("acme-payments", "payments-cluster");
    let bundle = ws.builds[&key].bundle.as_ref().expect("the payments cluster builds");
    let proposed =
        edict::policy::rego::compile(&bundle.modules(), &bundle.data(), edict::engine::pipeline::ENTRYPOINT)
            .expect("compiles");

    let replay_all = || {
        let t = Instant::now();
        let mut replay = Replay::new("acme-payments/payments-cluster", &proposed, None);
        rt.block_on(async {
            for object in query::objects_of_shard(&sink, &system, None, None).await.expect("index") {
                replay.add(&query::object_events(&sink, &object, None).await.expect("object"));
            }
        });
        (replay.finish(), t.elapsed())
    };
    let (report, took) = replay_all();
    assert_eq!((report.replayed, report.distinct_inputs), (total, distinct), "{report:?}");
    let one_thread = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("pool");
    let (_, took_one) = one_thread.install(replay_all);

    // The distinct inputs alone, evaluated on all cores: the evaluation's share.
    let inputs: Vec<Value> = decisions(distinct, distinct).into_iter().map(|e| e["input"].clone()).collect();
    let t = Instant::now();
    {
        use rayon::prelude::*;
        let allowed = inputs
            .par_iter()
            .filter(|i| {
                proposed.eval("data.main.outcome", i).ok().flatten().is_some_and(|o| o["allowed"] == true)
            })
            .count();
        std::hint::black_box(allowed);
    }
    let eval = t.elapsed();

    let per_s = |n: usize, d: Duration| n as f64 / d.as_secs_f64();
    println!("==================== replay summary ====================");
    println!(
        "(machine: {} cores, shared with whatever else runs)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "{total} recorded decisions ({distinct} distinct inputs) in {} stored objects, recorded in {:.2} s",
        total.div_ceil(BATCH),
        recorded.as_secs_f64()
    );
    let verdict = if per_s(total, took) >= 20_000.0 { "ok" } else { "MISSED" };
    println!(
        "replay end to end (index, read, decode, dedupe, evaluate, compare), all cores: {:.2} s = {:.0} decisions/s   target ≥ 20,000/s [{verdict}]",
        took.as_secs_f64(),
        per_s(total, took)
    );
    println!(
        "  the same in a one-thread pool: {:.2} s = {:.0} decisions/s",
        took_one.as_secs_f64(),
        per_s(total, took_one)
    );
    println!(
        "  distinct inputs evaluated alone (data.main.outcome), all cores: {:.2} s = {:.0} inputs/s, {:.0} µs each per core",
        eval.as_secs_f64(),
        per_s(distinct, eval),
        eval.as_secs_f64() * 1e6 * std::thread::available_parallelism().map_or(1, |n| n.get()) as f64
            / distinct as f64
    );
    println!(
        "  report: {} unchanged, {} newly denied, {} newly allowed, {} not replayable, {} errors",
        report.unchanged, report.newly_denied, report.newly_allowed, report.masked, report.errors
    );
    println!("========================================================");
}
