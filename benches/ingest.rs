//! OPA status and decision-log ingestion, on the requests a real OPA 1.9 sent
//! (`tests/fixtures/opa-wire/`).
//!
//! Measures (criterion, then a summary):
//! - parsing a 60 KB status report for the fields edict uses (`StatusReport::parse` +
//!   `summary`), against building the whole report as a `serde_json::Value`; 10,000 parses
//!   timed in one loop, as reports per second on one core (issue 11: 1,000 OPAs reporting once a
//!   second must not fall behind on 2 cores);
//! - recording a report in the fleet and computing a System's summary;
//! - a batch of 100 decisions (gzip, as OPA sends it): decode, re-mask check, lay out as gzip
//!   NDJSON; and stored through `Ingest` into a directory store in a temporary directory.
//!
//! `cargo bench --bench ingest` (add `-- --quick` for a faster, rougher run). Run without
//! `--bench` (as `cargo test --benches` does) it is a quick smoke test.

use std::hint::black_box;
use std::io::Write;
use std::time::{Duration, Instant, SystemTime};

use criterion::{Criterion, Throughput};
use edict::ingest::decisions;
use edict::ingest::status::StatusReport;
use edict::ingest::{Fleet, Ingest, Limits, ServedSystems, SystemKey};
use serde_json::Value;

/// The allocator the edict binary runs with (see `main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: usize = 100;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/opa-wire/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn payments() -> SystemKey {
    SystemKey::new("acme", "local", "acme-payments", "payments-cluster")
}

/// A batch of `n` events cycling through the fixture's Pod and Secret decisions, each with
/// its own decision id (`seed` keeps batches apart), gzip as OPA sends it.
fn batch(n: usize, seed: usize) -> Vec<u8> {
    let events: Vec<Value> = serde_json::from_slice(&fixture("decision-logs-batch.json")).expect("fixture");
    let batch: Vec<Value> = (0..n)
        .map(|i| {
            let mut event = events[i % events.len()].clone();
            event["decision_id"] = Value::String(format!("{seed:08}-{i:04}"));
            event
        })
        .collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&serde_json::to_vec(&batch).expect("json")).expect("gzip");
    gz.finish().expect("gzip")
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let quick = !bench || std::env::args().any(|a| a == "--quick");
    let report = fixture("status-activation-failed.json");
    let summary = StatusReport::parse(&report).expect("parse").summary().expect("summary");
    let body = batch(BATCH, 0);
    let now = SystemTime::now();

    let (warm, measure) = if quick {
        (Duration::from_millis(300), Duration::from_secs(1))
    } else {
        (Duration::from_secs(1), Duration::from_secs(3))
    };
    let mut c = Criterion::default()
        .sample_size(if quick { 10 } else { 30 })
        .warm_up_time(warm)
        .measurement_time(measure)
        .configure_from_args();
    {
        let mut g = c.benchmark_group("status");
        g.throughput(Throughput::Bytes(report.len() as u64));
        g.bench_function("parse+summary (60 KB)", |b| {
            b.iter(|| StatusReport::parse(black_box(&report)).and_then(|r| r.summary()))
        });
        g.bench_function("serde_json::Value (60 KB, for comparison)", |b| {
            b.iter(|| serde_json::from_slice::<Value>(black_box(&report)).map(|v| v.is_object()))
        });
        g.finish();
    }
    {
        let mut g = c.benchmark_group("fleet");
        let mut fleet = Fleet::new(Duration::from_secs(600));
        g.bench_function("record+summary", |b| {
            b.iter(|| {
                fleet.record(&payments(), black_box(&summary), now);
                fleet.summary(&payments(), Some("95220d66ab12"), now, Duration::from_secs(60))
            })
        });
        g.finish();
    }
    {
        let mut g = c.benchmark_group("decisions");
        g.throughput(Throughput::Elements(BATCH as u64));
        g.bench_function("decode+remask+objects (100 events)", |b| {
            b.iter(|| {
                let mut events = decisions::decode(black_box(&body), Some("gzip"), 64 << 20).expect("decode");
                events.iter_mut().for_each(|e| {
                    decisions::remask_secret(&mut e.value);
                });
                decisions::objects(&payments(), &events)
            })
        });
        g.finish();
    }
    c.final_summary();

    println!("\n==================== ingest summary ====================");
    println!(
        "(one thread; machine: {} cores, shared with whatever else runs)",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    let n = if bench { 10_000 } else { 100 };
    let t = Instant::now();
    for _ in 0..n {
        black_box(StatusReport::parse(black_box(&report)).and_then(|r| r.summary()).expect("summary"));
    }
    let parse = t.elapsed();
    let t = Instant::now();
    for _ in 0..n {
        black_box(serde_json::from_slice::<Value>(black_box(&report)).expect("value"));
    }
    let value = t.elapsed();
    println!(
        "status report ({} bytes) parsed {n} times: {:.0} ms, {:.1} µs per report, {:.0} reports/s per core, {:.0} MB/s \
         (whole serde_json::Value: {:.1} µs per report)",
        report.len(),
        parse.as_secs_f64() * 1e3,
        parse.as_secs_f64() * 1e6 / n as f64,
        n as f64 / parse.as_secs_f64(),
        (report.len() * n) as f64 / parse.as_secs_f64() / 1e6,
        value.as_secs_f64() * 1e6 / n as f64,
    );

    let batches = if bench { 200 } else { 5 };
    let bodies: Vec<Vec<u8>> = (0..batches).map(|i| batch(BATCH, i + 1)).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let ingest = Ingest::new(
        edict::ingest::Sink::of(&edict::registry::Registry::embedded(dir.path())),
        ServedSystems::new([payments()]),
        Limits::default(),
        Duration::from_secs(600),
    );
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let mut latencies = Vec::with_capacity(batches);
    let t = Instant::now();
    for body in &bodies {
        let one = Instant::now();
        rt.block_on(ingest.store_decisions(body, Some("gzip"), None)).expect("stored");
        latencies.push(one.elapsed());
    }
    let total = t.elapsed();
    latencies.sort();
    let p99 = latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)];
    println!(
        "{batches} batches of {BATCH} decisions ({} bytes gzip each) into the directory store: {:.0} decisions/s \
         on one thread, p50 {:.2} ms, p99 {:.2} ms per batch",
        bodies[0].len(),
        (batches * BATCH) as f64 / total.as_secs_f64(),
        latencies[latencies.len() / 2].as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
    );
}
