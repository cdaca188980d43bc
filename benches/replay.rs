//! Replay at scale (issue 12): recorded decisions of the reference System (20 Policies, 5
//! Stacks; `workload::reference`) and of `examples/acme`'s payments cluster, stored as
//! `run --local` stores them (directory store and embedded index), replayed end to end against
//! the bundle: the
//! objects found with the index, read and decoded one at a time, inputs deduplicated by
//! content, distinct inputs evaluated on all cores, each decision compared.
//!
//! Prints decisions replayed per second end to end (target ≥ 20,000/s for 100,000 decisions
//! with 30% distinct inputs on 2 cores), the rate of distinct inputs evaluated, and the same
//! replay in a one-thread pool. `EDICT_BENCH_DECISIONS` sets the count (default 100,000 with
//! `--bench`, 2,000 without, as `cargo test --benches` runs it).

use std::path::Path;
use std::time::{Duration, Instant};

use edict::engine::replay::{OUTCOME, Replay};
use edict::ingest::{Ingest, Limits, ServedSystems, Sink, SystemKey, query};
use serde_json::{Value, json};
use workload::reference::{benign_request, reference_input, violating_pod};

mod workload;

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

/// What is replayed: a System's bundle, its modules' sources, and how its recorded inputs look.
struct Case<'a, F: Fn(usize) -> Value> {
    /// Compiled as replay compiles it (the outcome in regorus's VM).
    proposed: &'a edict::policy::rego::Compiled,
    /// The same without the VM: the interpreter, for comparison.
    interpreted: &'a edict::policy::rego::Compiled,
    sources: edict::engine::replay::Sources,
    system: SystemKey,
    input: F,
}

/// Replay `total` recorded decisions with `distinct` distinct inputs of `case`, stored first
/// into `sink` as ingestion stores them, and print the figures; `target` says whether the
/// end-to-end rate is held to issue 12's target (the directory store) or only reported.
#[allow(clippy::too_many_arguments)]
fn measure<F: Fn(usize) -> Value>(
    title: &str,
    rt: &tokio::runtime::Runtime,
    sink: Sink,
    case: &Case<'_, F>,
    total: usize,
    distinct: usize,
    target: bool,
) {
    let Case { proposed, interpreted, sources, system, input } = case;
    let started = Instant::now();
    let ingest = Ingest::new(
        sink.clone(),
        ServedSystems::new([system.clone()]),
        Limits::default(),
        Duration::from_secs(600),
    );
    let labels = json!({"id": "opa-1", "system_id": system.system_id(), "tenant": system.tenant});
    let events: Vec<Value> = (0..total)
        .map(|i| {
            let k = i % distinct;
            json!({
                "labels": labels, "decision_id": format!("d-{i:08}"), "path": "main/main", "input": input(k),
                "result": {"response": {"allowed": !k.is_multiple_of(3)}},
                "timestamp": format!("2026-11-30T17:{:02}:{:02}.{:06}Z", (i / 60_000) % 60, (i / 1_000) % 60, i % 1_000),
            })
        })
        .collect();
    for chunk in events.chunks(BATCH) {
        let body = serde_json::to_vec(chunk).expect("json");
        rt.block_on(ingest.store_decisions(&body, None, None)).expect("stored");
    }
    drop(events);
    let recorded = started.elapsed();

    let replay_all = || {
        let t = Instant::now();
        let mut replay = Replay::new(&system.system.to_string(), proposed, sources.clone(), None);
        rt.block_on(async {
            for object in query::objects_of_shard(&sink, system, None, None).await.expect("index") {
                replay.add(&query::object_events(&sink, &object, None).await.expect("object"));
            }
        });
        (replay.finish(), t.elapsed())
    };
    let (report, took) = replay_all();
    assert_eq!((report.replayed, report.distinct_inputs), (total, distinct), "{report:?}");
    let one_thread = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("pool");
    let (_, took_one) = one_thread.install(replay_all);

    // The distinct inputs alone, evaluated on all cores: the evaluation's share; in the VM as
    // replay evaluates them, and a sample in the interpreter the VM replaced.
    let inputs: Vec<Value> = (0..distinct).map(&input).collect();
    let evaluate = |compiled: &edict::policy::rego::Compiled, inputs: &[Value]| {
        use rayon::prelude::*;
        let t = Instant::now();
        let allowed = inputs
            .par_iter()
            .filter(|i| compiled.eval(OUTCOME, i).ok().flatten().is_some_and(|o| o["allowed"] == true))
            .count();
        std::hint::black_box(allowed);
        t.elapsed()
    };
    let eval = evaluate(proposed, &inputs);
    let sample = &inputs[..inputs.len().min(3_000)];
    let interpreter = evaluate(interpreted, sample);
    assert_eq!(proposed.vm_fallbacks(), 0, "every input evaluated in the VM");

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_s = |n: usize, d: Duration| n as f64 / d.as_secs_f64();
    println!("{title}");
    println!(
        "  {total} recorded decisions ({distinct} distinct inputs) in {} stored objects, recorded in {:.2} s",
        total.div_ceil(BATCH),
        recorded.as_secs_f64()
    );
    let verdict = match (target, per_s(total, took) >= 20_000.0) {
        (false, _) => "   (reported, no target)",
        (true, true) => "   target ≥ 20,000/s [ok]",
        (true, false) => "   target ≥ 20,000/s [MISSED]",
    };
    println!(
        "  replay end to end (index, read, decode, dedupe, evaluate, compare), all cores: {:.2} s = {:.0} decisions/s{verdict}",
        took.as_secs_f64(),
        per_s(total, took)
    );
    println!(
        "  the same in a one-thread pool: {:.2} s = {:.0} decisions/s",
        took_one.as_secs_f64(),
        per_s(total, took_one)
    );
    let each = |d: Duration, n: usize| d.as_secs_f64() * 1e6 * cores as f64 / n as f64;
    println!(
        "  distinct inputs evaluated alone (data.main.outcome in regorus's VM), all cores: {:.2} s = {:.0} inputs/s, \
         {:.0} µs each per core (the interpreter: {:.0} µs, {:.1}× as long, on {} of them)",
        eval.as_secs_f64(),
        per_s(distinct, eval),
        each(eval, distinct),
        each(interpreter, sample.len()),
        each(interpreter, sample.len()) / each(eval, distinct),
        sample.len()
    );
    println!(
        "  report: {} unchanged, {} newly denied, {} newly allowed, {} not replayable, {} errors",
        report.unchanged, report.newly_denied, report.newly_allowed, report.masked, report.errors
    );
}

/// An example admission request (`examples/inputs`), made distinct by its uid and object name.
fn distinct_request(base: &Value, k: usize) -> Value {
    let mut input = base.clone();
    input["request"]["uid"] = json!(format!("uid-{k}"));
    if input["request"]["object"]["metadata"].is_object() {
        input["request"]["object"]["metadata"]["name"] = json!(format!("object-{k}"));
    }
    input
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let total = workload::env_size("EDICT_BENCH_DECISIONS", if bench { 100_000 } else { 2_000 });
    let distinct = (total * 3 / 10).max(1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("==================== replay summary ====================");
    println!("(machine: {cores} cores, shared with whatever else runs)");

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let directory = |dir: &tempfile::TempDir| Sink::of(&edict::registry::Registry::embedded(dir.path()));

    // The reference System (20 Policies, 5 Stacks): three in four requests benign, one violating.
    let reference = edict::bundle::build(&reference_input());
    let compile = |bundle: &edict::bundle::Bundle| {
        edict::policy::rego::compile(&bundle.modules(), &bundle.data(), edict::engine::pipeline::ENTRYPOINT)
            .expect("compiles")
    };
    let (proposed, interpreted) = (compile(&reference).with_vm(OUTCOME), compile(&reference));
    let (violating, benign) = (violating_pod(), benign_request());
    let case = Case {
        proposed: &proposed,
        interpreted: &interpreted,
        sources: edict::engine::replay::sources(&reference.modules()),
        system: SystemKey::new("acme", "bench", "acme-payments", "payments-cluster"),
        input: |k: usize| distinct_request(if k.is_multiple_of(4) { &violating } else { &benign }, k),
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let title = "reference System (20 Policies, 5 Stacks), 1 in 4 requests violating, directory store:";
    measure(title, &rt, directory(&dir), &case, total, distinct, true);

    // The same through moto's S3 and DynamoDB, as `edict replay` reads a Tenant's storage.
    match std::env::var("EDICT_MOTO_ENDPOINT") {
        Ok(moto) => {
            let total = workload::env_size("EDICT_BENCH_MOTO_DECISIONS", total);
            let sink = Sink::of(&rt.block_on(workload::aws::moto_registry(&moto)).0);
            let title = "reference System through moto (S3 objects, DynamoDB index; no KMS):";
            measure(title, &rt, sink, &case, total, (total * 3 / 10).max(1), false);
        }
        Err(_) => println!(
            "reference System through moto: skipped, EDICT_MOTO_ENDPOINT is not set \
             (`scripts/bench.sh replay` starts the servers)"
        ),
    }

    // The examples' payments cluster, on the example requests.
    let work = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(root().join("examples/acme")).expect("examples") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            std::fs::copy(&path, work.path().join(path.file_name().expect("name"))).expect("copy");
        }
    }
    let ws =
        edict::engine::workspace::Workspace::load(&[work.path().to_path_buf()], "local").expect("examples");
    let key = edict::model::ObjectKey::new("acme-payments", "payments-cluster");
    let bundle = ws.builds[&key].bundle.as_ref().expect("the payments cluster builds");
    let (proposed, interpreted) = (compile(bundle).with_vm(OUTCOME), compile(bundle));
    let bases: Vec<Value> =
        ["pod-with-nginx.json", "pod-by-superuser.json", "admin-from-internet.json", "secret.json"]
            .iter()
            .map(|f| read_json(&root().join("examples/inputs").join(f)))
            .collect();
    let case = Case {
        proposed: &proposed,
        interpreted: &interpreted,
        sources: edict::engine::replay::sources(&bundle.modules()),
        system: SystemKey::new("acme", "local", "acme-payments", "payments-cluster"),
        input: |k: usize| distinct_request(&bases[k % bases.len()], k),
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let title = "examples/acme payments cluster, on the example requests, directory store:";
    measure(title, &rt, directory(&dir), &case, total, distinct, true);
    println!("========================================================");
}
