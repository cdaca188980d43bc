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
//!   NDJSON; and stored through `Ingest` into a directory store in a temporary directory;
//! - through a Tenant on moto (when `EDICT_MOTO_ENDPOINT` is set): decisions/s and S3 and
//!   DynamoDB requests per batch;
//! - over HTTP, against edict's server on a loopback port (the router of `run --local`):
//!   100 OPAs posting batches of 100 as fast as they are answered, the same 100 OPAs at 2,000
//!   decisions/s (acknowledgement p99), and 1,000 OPAs each sending its 60 KB status report
//!   once a second (server CPU per report).
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

mod workload;

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
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
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

    moto(bench, &rt);
    http(bench);
}

/// Decision batches stored through a Tenant on moto (S3 objects, DynamoDB batch index and
/// per-minute counters): decisions/s one batch at a time and with 8 in flight, and the S3 and
/// DynamoDB requests per batch.
fn moto(bench: bool, rt: &tokio::runtime::Runtime) {
    let Ok(endpoint) = std::env::var("EDICT_MOTO_ENDPOINT") else {
        println!(
            "decisions through moto: skipped, EDICT_MOTO_ENDPOINT is not set (`scripts/bench.sh ingest` starts the servers)"
        );
        return;
    };
    let (registry, requests) = rt.block_on(workload::aws::moto_registry(&endpoint));
    let ingest = Ingest::new(
        edict::ingest::Sink::of(&registry),
        ServedSystems::new([payments()]),
        Limits::default(),
        Duration::from_secs(600),
    );
    let batches = if bench { 100 } else { 3 };
    let bodies: Vec<Vec<u8>> = (0..2 * batches).map(|i| batch(BATCH, 2_000_000 + i)).collect();
    let before = requests.count();
    let t = Instant::now();
    for body in &bodies[..batches] {
        rt.block_on(ingest.store_decisions(body, Some("gzip"), None)).expect("stored");
    }
    let one = t.elapsed();
    let per_batch = (requests.count() - before) as f64 / batches as f64;
    let t = Instant::now();
    rt.block_on(async {
        use futures::StreamExt;
        futures::stream::iter(&bodies[batches..])
            .map(|body| ingest.store_decisions(body, Some("gzip"), None))
            .buffer_unordered(8)
            .for_each(|stored| async move {
                stored.expect("stored");
            })
            .await;
    });
    let eight = t.elapsed();
    println!(
        "{batches} batches of {BATCH} decisions through moto (S3 + DynamoDB, no KMS): {:.0} decisions/s one batch at a time, \
         {:.0} decisions/s with 8 in flight, {per_batch:.1} requests per batch (S3 and DynamoDB)",
        (batches * BATCH) as f64 / one.as_secs_f64(),
        (batches * BATCH) as f64 / eight.as_secs_f64(),
    );
}

/// An edict server on a loopback port, on its own two-worker runtime, ingesting into a
/// directory store in a temporary directory, as `run --local` does.
struct HttpServer {
    url: String,
    _dir: tempfile::TempDir,
    _runtime: tokio::runtime::Runtime,
}

impl HttpServer {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(SERVER_THREAD)
            .enable_all()
            .build()
            .expect("runtime");
        let registry = edict::registry::Registry::embedded(dir.path());
        let ingest = std::sync::Arc::new(Ingest::new(
            edict::ingest::Sink::of(&registry),
            ServedSystems::new([payments()]),
            Limits::default(),
            Duration::from_secs(600),
        ));
        let state = edict::server::ServerState {
            store: registry.store().clone(),
            statuses: Default::default(),
            ingest: Some(ingest),
            changes: Default::default(),
        };
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        runtime.spawn(async move { axum::serve(listener, edict::server::router(state)).await });
        HttpServer { url, _dir: dir, _runtime: runtime }
    }
}

const SERVER_THREAD: &str = "edict-server";

/// CPU seconds (user + system) used so far by this process's threads named `SERVER_THREAD`.
fn server_cpu_seconds() -> f64 {
    let ticks: u64 = std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("stat")).ok())
        .filter_map(|stat| {
            // pid (comm) state ... utime stime: fields 14 and 15, counted after the `)`.
            let (head, rest) = stat.rsplit_once(')')?;
            head.contains(&SERVER_THREAD[..SERVER_THREAD.len().min(15)]).then_some(())?;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .sum();
    ticks as f64 / 100.0 // USER_HZ: 100 on Linux
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

/// What a client saw: acknowledgement times of delivered requests, and how many were
/// answered 429/503 (OPA keeps the batch and sends it again later).
#[derive(Default)]
struct Seen {
    /// Milliseconds.
    acks: Vec<f64>,
    refused: usize,
    failed: usize,
}

impl Seen {
    fn merge(mut self, other: Seen) -> Seen {
        self.acks.extend(other.acks);
        self.refused += other.refused;
        self.failed += other.failed;
        self
    }

    fn percentile_ms(&mut self, p: f64) -> f64 {
        self.acks.sort_by(f64::total_cmp);
        workload::percentile(&self.acks, p)
    }
}

/// POST one request as OPA does, and note in `seen` how it was answered.
fn post(agent: &ureq::Agent, url: &str, body: &[u8], gzip: bool, seen: &mut Seen) {
    let mut request = agent
        .post(url)
        .header("User-Agent", "Open Policy Agent/1.9.0 (linux, amd64)")
        .header("Content-Type", "application/json");
    if gzip {
        request = request.header("Content-Encoding", "gzip");
    }
    let t = Instant::now();
    match request.send(body) {
        Ok(response) if response.status() == 200 => seen.acks.push(t.elapsed().as_secs_f64() * 1e3),
        Ok(response) if [429, 503].contains(&response.status().as_u16()) => seen.refused += 1,
        _ => seen.failed += 1,
    }
}

/// `clients` threads, each sending `bodies` to `url` in turn, every `interval` (as fast as
/// answered when `None`), until `duration` has passed.
fn drive(
    url: &str,
    clients: usize,
    bodies: &[Vec<u8>],
    gzip: bool,
    interval: Option<Duration>,
    duration: Duration,
) -> Seen {
    let start = Instant::now();
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..clients)
            .map(|c| {
                scope.spawn(move || {
                    let agent = agent();
                    let mut seen = Seen::default();
                    // Spread the paced clients over one interval, as independent OPAs are.
                    let offset = interval.map_or(Duration::ZERO, |i| i.mul_f64(c as f64 / clients as f64));
                    let mut next = start + offset;
                    let mut sent = 0;
                    while start.elapsed() < duration {
                        if let Some(interval) = interval {
                            std::thread::sleep(next.saturating_duration_since(Instant::now()));
                            next += interval;
                        }
                        post(&agent, url, &bodies[(c + sent * clients) % bodies.len()], gzip, &mut seen);
                        sent += 1;
                    }
                    seen
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().expect("client")).fold(Seen::default(), Seen::merge)
    })
}

/// The HTTP figures of issue 11: decision batches from 100 OPAs at full speed and at 2,000
/// decisions/s, and 60 KB status reports from 1,000 OPAs once a second each. Clients and server
/// share this machine's cores, so the rates are a floor for a server with the machine to itself.
fn http(bench: bool) {
    let server = HttpServer::start();
    let duration = Duration::from_secs(if bench { 10 } else { 1 });
    let mark = |ok: bool| if ok { "ok" } else { "MISSED" };
    println!("\n==================== ingest over HTTP ====================");
    println!(
        "(server: 2 tokio workers on a loopback port; clients are threads of this process, sharing the cores)"
    );

    let opas = 100;
    let bodies: Vec<Vec<u8>> = (0..opas * 4).map(|i| batch(BATCH, 1_000_000 + i)).collect();
    let cpu = server_cpu_seconds();
    let t = Instant::now();
    let mut full = drive(&format!("{}/logs", server.url), opas, &bodies, true, None, duration);
    let (elapsed, cpu) = (t.elapsed(), server_cpu_seconds() - cpu);
    let rate = (full.acks.len() * BATCH) as f64 / elapsed.as_secs_f64();
    println!(
        "{opas} OPAs posting batches of {BATCH} decisions as fast as answered: {rate:.0} decisions/s stored \
         (target ≥ 20,000) [{}], ack p50 {:.1} ms p99 {:.1} ms, {} answered 429/503, {} failed, \
         server CPU {:.1} µs per decision",
        mark(rate >= 20_000.0 && full.failed == 0),
        full.percentile_ms(0.5),
        full.percentile_ms(0.99),
        full.refused,
        full.failed,
        cpu * 1e6 / (full.acks.len() * BATCH).max(1) as f64,
    );

    // 2,000 decisions/s: each of the 100 OPAs uploads a batch of 100 every 5 s.
    let interval = Duration::from_secs_f64(opas as f64 * BATCH as f64 / 2_000.0);
    let paced_duration = duration.max(interval * 2);
    let t = Instant::now();
    let mut paced =
        drive(&format!("{}/logs", server.url), opas, &bodies, true, Some(interval), paced_duration);
    let rate = (paced.acks.len() * BATCH) as f64 / t.elapsed().as_secs_f64();
    let p99 = paced.percentile_ms(0.99);
    println!(
        "{opas} OPAs at 2,000 decisions/s ({rate:.0} delivered): ack p50 {:.1} ms, p99 {p99:.1} ms (target ≤ 50 ms) [{}], \
         {} answered 429/503, {} failed",
        paced.percentile_ms(0.5),
        mark(p99 <= 50.0 && paced.refused == 0 && paced.failed == 0),
        paced.refused,
        paced.failed,
    );

    // 1,000 OPAs reporting once a second, each with its own id, from 50 threads of 20 OPAs.
    let template = String::from_utf8(fixture("status-activation-failed.json")).expect("utf-8");
    let id = "c522fd0f-a67f-4466-b48d-e1d27340e774";
    assert!(template.contains(id), "the fixture's OPA id");
    let reports: Vec<Vec<u8>> =
        (0..1_000).map(|i| template.replace(id, &format!("bench-opa-{i:04}")).into_bytes()).collect();
    let threads = 50;
    let interval = Duration::from_secs_f64(threads as f64 / reports.len() as f64);
    let cpu = server_cpu_seconds();
    let t = Instant::now();
    let mut status =
        drive(&format!("{}/status", server.url), threads, &reports, false, Some(interval), duration);
    let (elapsed, cpu) = (t.elapsed(), server_cpu_seconds() - cpu);
    let rate = status.acks.len() as f64 / elapsed.as_secs_f64();
    let p99 = status.percentile_ms(0.99);
    println!(
        "1,000 OPAs reporting once a second ({} bytes each): {rate:.0} reports/s acknowledged (target 1,000, \
         not falling behind) [{}], ack p50 {:.2} ms p99 {p99:.2} ms, server CPU {:.0} µs per report, {} refused, {} failed",
        reports[0].len(),
        mark(rate >= 950.0 && p99 < 1_000.0 && status.failed == 0 && status.refused == 0),
        status.percentile_ms(0.5),
        cpu * 1e6 / status.acks.len().max(1) as f64,
        status.refused,
        status.failed,
    );
}
