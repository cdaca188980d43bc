//! Bundle build, compile check and entrypoint evaluation for a reference System.
//!
//! The reference System: 20 Policies of its own and 5 bound Stacks with 3 Policies each
//! (one Stack also has a decision-log mask module), every Policy a realistic 20–40 line
//! Kubernetes admission module with `deny`, `enforce` and `monitor` rules.
//!
//! Measures (criterion, then a summary against the targets):
//! - `bundle::build` + `Bundle::archive()` on one thread (target ≥ 2,000 bundles/s);
//! - `rego::compile` of that bundle, the compile check the pipeline ran before the gate;
//! - the compile gate (`policy::Gate`, what the pipeline runs): cold (target ≤ 5 ms; on all
//!   cores and on one thread), after one Stack changed (target ≤ 2 ms), and after a change that
//!   retypes that Stack's decisions;
//! - `Compiled::eval("data.main.outcome", input)` p50/p99 (target p50 ≤ 20 µs), and the same
//!   evaluation on a prepared regorus engine without the per-call engine clone;
//! - OPA (Go, through the Python binding `scripts/setup.sh` installs) on the same bundle and
//!   input, when `.cache/venv` exists.
//!
//! `cargo bench --bench bundle` (add `-- --quick` for a faster, rougher run). Run without
//! `--bench` (as `cargo test --benches` does) it is a quick smoke test.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use edict::bundle::{self, Bundle, BundleInput};
use workload::reference::{benign_request, reference_input, small_input, violating_pod};

mod workload;

/// The allocator the edict binary runs with (see `main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Time `f` one call at a time, up to `max` calls or `budget` of wall time (at least 50 calls);
/// sorted per-call durations in µs.
fn sample_us(max: usize, budget: Duration, mut f: impl FnMut()) -> Vec<f64> {
    let start = Instant::now();
    let mut out = Vec::with_capacity(max);
    while out.len() < max && (out.len() < 50 || start.elapsed() < budget) {
        let t = Instant::now();
        f();
        out.push(t.elapsed().as_secs_f64() * 1e6);
    }
    out.sort_by(|a, b| a.total_cmp(b));
    out
}

/// [`sample_us`] in milliseconds.
fn sample_ms(max: usize, budget: Duration, f: impl FnMut()) -> Vec<f64> {
    sample_us(max, budget, f).into_iter().map(|us| us / 1000.0).collect()
}

fn to_regorus(v: &serde_json::Value) -> regorus::Value {
    regorus::Value::from_json_str(&v.to_string()).expect("input converts")
}

/// A regorus engine loaded and prepared once; each evaluation only sets the input.
fn prepared_engine(bundle: &Bundle) -> regorus::Engine {
    let mut engine = regorus::Engine::new();
    for (label, text) in bundle.modules() {
        engine.add_policy(label, text).expect("module parses");
    }
    engine.add_data(to_regorus(&bundle.data())).expect("data loads");
    let entry: regorus::Rc<str> = "data.main.main".into();
    engine.compile_with_entrypoint(&entry).expect("compiles");
    engine
}

struct OpaFigures {
    p50_us: f64,
    p99_us: f64,
    overhead_p50_us: f64,
    outcome: serde_json::Value,
    evals: usize,
}

/// Time OPA (Go) on a bundle and input through the Python binding, if installed.
fn opa_time(bundle_path: &Path, input: &serde_json::Value, evals: usize) -> Result<OpaFigures, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".cache/venv/bin/python");
    if !python.exists() {
        return Err("no .cache/venv (run scripts/setup.sh)".into());
    }
    let script = r#"
import json, sys, time
sys.path.insert(0, sys.argv[1])
import opa_bundle
bundle_path, n = sys.argv[2], int(sys.argv[3])
inp = json.load(sys.stdin)
engine, _, _ = opa_bundle.load(bundle_path)
def timed(path, n, budget_s=4.0):
    for _ in range(min(100, n)):
        engine.eval_document(path, inp)
    out, start = [], time.perf_counter()
    while len(out) < n and (len(out) < 50 or time.perf_counter() - start < budget_s):
        t = time.perf_counter_ns()
        engine.eval_document(path, inp)
        out.append((time.perf_counter_ns() - t) / 1000.0)
    out.sort()
    return out
full = timed("main.outcome", n)
trivial = timed("context.name", 2000, 1.0)
pick = lambda xs, p: xs[min(len(xs) - 1, round((len(xs) - 1) * p))]
print(json.dumps({
    "p50": pick(full, 0.5), "p99": pick(full, 0.99), "n": len(full),
    "overhead_p50": pick(trivial, 0.5),
    "outcome": engine.eval_document("main.outcome", inp),
}))
"#;
    let mut child = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(root.join("scripts"))
        .arg(bundle_path)
        .arg(evals.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting python: {e}"))?;
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().ok_or("no stdin")?;
        stdin.write_all(input.to_string().as_bytes()).map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("python failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr)));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    let num = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    Ok(OpaFigures {
        p50_us: num("p50"),
        p99_us: num("p99"),
        overhead_p50_us: num("overhead_p50"),
        outcome: v["outcome"].clone(),
        evals: v["n"].as_u64().unwrap_or(0) as usize,
    })
}

/// One evaluation scenario: a bundle and an input.
struct Case {
    name: &'static str,
    bundle: Bundle,
    request: serde_json::Value,
}

/// The reference bundle's modules after `n` successive revisions of one Stack's first Policy
/// (a changed rule body each time), as the gate sees a System when only that Stack changed.
fn stack_revisions(input: &BundleInput, n: usize) -> Vec<Vec<(String, String)>> {
    (0..n)
        .map(|rev| {
            let mut changed = input.clone();
            let policy = &mut changed.stacks[0].policies[0];
            policy.rego = format!("{}\nrevision_{rev} := {rev}\n", policy.rego).into();
            bundle::build(&changed).modules()
        })
        .collect()
}

fn mark(ok: bool) -> &'static str {
    if ok { "ok" } else { "MISSED" }
}

/// Sorted durations (ms) of `runs` cold gates of `modules`, and the mean time to free one.
/// A gate keeps what it parsed and checked; freeing that is not part of checking: each gate is
/// dropped after its timing, and the drop is timed apart. (Keeping every gate until the end
/// instead would time page faults on ever fresh memory, which a running edict does not pay per
/// System.)
fn cold_gates(modules: &[(String, String)], runs: usize) -> (Vec<f64>, f64) {
    let caps = edict::policy::Capabilities::latest();
    let mut took: Vec<f64> = Vec::with_capacity(runs);
    let mut freeing = Duration::ZERO;
    for _ in 0..runs {
        let gate = edict::policy::Gate::new();
        let t = Instant::now();
        black_box(gate.check(modules, caps).is_empty());
        took.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        drop(gate);
        freeing += t.elapsed();
    }
    took.sort_by(f64::total_cmp);
    (took, freeing.as_secs_f64() * 1e3 / runs.max(1) as f64)
}

/// With `EDICT_PROFILE_GATE=cold`, for a profiler: only cold gates of `modules`, for five
/// seconds, then exit.
fn profile_cold_gates_if_asked(modules: &[(String, String)]) {
    if std::env::var("EDICT_PROFILE_GATE").as_deref() != Ok("cold") {
        return;
    }
    let caps = edict::policy::Capabilities::latest();
    let until = Instant::now() + Duration::from_secs(5);
    let mut took = Vec::new();
    while Instant::now() < until {
        let gate = edict::policy::Gate::new();
        let t = Instant::now();
        black_box(gate.check(modules, caps).is_empty());
        took.push(t.elapsed().as_secs_f64() * 1e3);
    }
    took.sort_by(f64::total_cmp);
    let at = |p: f64| took[((took.len() - 1) as f64 * p) as usize];
    eprintln!(
        "{} cold gates: min {:.2} p10 {:.2} p50 {:.2} p80 {:.2} p90 {:.2} max {:.2} ms",
        took.len(),
        at(0.0),
        at(0.1),
        at(0.5),
        at(0.8),
        at(0.9),
        at(1.0)
    );
    std::process::exit(0);
}

/// Eval figures for one case: Compiled::eval, the clone alone, a prepared engine, OPA.
fn eval_case(case: &Case, quick: bool, opa: bool, dir: &Path) {
    let modules = case.bundle.modules();
    let data = case.bundle.data();
    let compiled =
        edict::policy::rego::compile(&modules, &data, "data.main.main").unwrap_or_else(|e| panic!("{e}"));
    profile_cold_gates_if_asked(&modules);
    let outcome = compiled.eval("data.main.outcome", &case.request).expect("evaluates").expect("defined");
    let mut prepared = prepared_engine(&case.bundle);
    let value = to_regorus(&case.request);
    let (max, budget) = match (opa, quick) {
        (false, _) => (50, Duration::from_millis(50)),
        (true, true) => (1000, Duration::from_millis(500)),
        (true, false) => (10_000, Duration::from_secs(3)),
    };

    let eval_us = sample_us(max, budget, || {
        black_box(compiled.eval("data.main.outcome", &case.request).ok());
    });
    let clone_us = sample_us(max, budget / 4, || {
        black_box(prepared.clone());
    });
    let fast_us = sample_us(max, budget, || {
        prepared.set_input(value.clone());
        black_box(prepared.eval_rule("data.main.outcome".to_string()).ok());
    });
    let fast_result = {
        prepared.set_input(value.clone());
        let v = prepared.eval_rule("data.main.outcome".to_string()).expect("evaluates");
        serde_json::from_str::<serde_json::Value>(&v.to_json_str().expect("json")).expect("json")
    };
    assert_eq!(fast_result, outcome, "the prepared engine must give Compiled::eval's answer");

    let path = dir.join(format!("{}.tar.gz", case.name.replace([' ', ','], "_")));
    std::fs::write(&path, case.bundle.archive()).expect("write bundle");
    let opa = if opa {
        opa_time(&path, &case.request, if quick { 500 } else { 5000 })
    } else {
        Err("not in --bench mode".to_string())
    };

    println!(
        "   [{}] outcome allowed={} tier={} ({} enforced, {} monitored decisions)",
        case.name,
        outcome["allowed"],
        outcome["tier"],
        outcome["enforced"].as_array().map(Vec::len).unwrap_or(0),
        outcome["monitored"].as_array().map(Vec::len).unwrap_or(0)
    );
    println!(
        "     Compiled::eval(outcome):       p50 {:>8.1} µs  p99 {:>8.1} µs  ({} calls)  target p50 ≤ 20 µs [{}]",
        percentile(&eval_us, 0.5),
        percentile(&eval_us, 0.99),
        eval_us.len(),
        mark(percentile(&eval_us, 0.5) <= 20.0)
    );
    println!(
        "       of which Engine::clone:      p50 {:>8.2} µs  p99 {:>8.2} µs",
        percentile(&clone_us, 0.5),
        percentile(&clone_us, 0.99)
    );
    println!(
        "     prepared engine, no clone:     p50 {:>8.1} µs  p99 {:>8.1} µs  ({} calls, input pre-converted)",
        percentile(&fast_us, 0.5),
        percentile(&fast_us, 0.99),
        fast_us.len()
    );
    match opa {
        Ok(o) => {
            println!(
                "     OPA v1.20.2 via Python binding: p50 {:>8.1} µs  p99 {:>8.1} µs  ({} evals; binding round trip \
                 on data.context.name p50 {:.1} µs, so OPA net ≈ {:.1} µs); same outcome as regorus: {}",
                o.p50_us,
                o.p99_us,
                o.evals,
                o.overhead_p50_us,
                o.p50_us - o.overhead_p50_us,
                if o.outcome == outcome { "yes" } else { "NO" }
            );
            if o.outcome != outcome {
                println!("       OPA:     {}\n       regorus: {}", o.outcome, outcome);
            }
        }
        Err(e) => println!("     OPA: skipped: {e}"),
    }
}

/// The tar inside a bundle archive, and gzip of it at `level`: (µs per compression, bytes).
fn gzip_at(tar: &[u8], level: u32, n: usize) -> (f64, usize) {
    use std::io::Write;
    let mut size = 0;
    let t = Instant::now();
    for _ in 0..n {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
        gz.write_all(tar).expect("gzip");
        size = black_box(gz.finish().expect("gzip")).len();
    }
    (t.elapsed().as_secs_f64() * 1e6 / n as f64, size)
}

fn main() {
    // `cargo bench` passes --bench; without it (`cargo test --benches`) criterion runs each
    // benchmark once and the summary below uses few samples and skips OPA.
    let bench = std::env::args().any(|a| a == "--bench");
    let quick = !bench || std::env::args().any(|a| a == "--quick");
    let input = reference_input();
    let request = violating_pod();
    let bundle = bundle::build(&input);
    let archive = bundle.archive();
    let modules = bundle.modules();
    let data = bundle.data();
    let policy_lines: usize = input
        .policies
        .iter()
        .chain(input.stacks.iter().flat_map(|s| &s.policies))
        .map(|p| p.rego.lines().count())
        .sum();
    let policy_count = input.policies.len() + input.stacks.iter().map(|s| s.policies.len()).sum::<usize>();
    let main_lines = String::from_utf8_lossy(&bundle.files["main/main.rego"]).lines().count();
    let raw_bytes: usize = bundle.files.values().map(Vec::len).sum();
    println!(
        "reference system: {} own policies, {} stacks, {policy_count} policy modules ({policy_lines} lines, \
         avg {:.0}); bundle: {} modules, main.rego {main_lines} lines, {raw_bytes} bytes raw, archive {} bytes",
        input.policies.len(),
        input.stacks.len(),
        policy_lines as f64 / policy_count as f64,
        modules.len(),
        archive.len()
    );
    let compiled =
        edict::policy::rego::compile(&modules, &data, "data.main.main").unwrap_or_else(|e| panic!("{e}"));
    profile_cold_gates_if_asked(&modules);

    // --- criterion ---------------------------------------------------------------------
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
        let mut g = c.benchmark_group("bundle");
        g.throughput(Throughput::Elements(1));
        g.bench_function("build", |b| b.iter(|| bundle::build(black_box(&input))));
        g.bench_function("build+archive", |b| b.iter(|| bundle::build(black_box(&input)).archive()));
        g.finish();
    }
    {
        let mut g = c.benchmark_group("rego");
        g.sample_size(10);
        g.bench_function("compile_check", |b| {
            b.iter(|| {
                edict::policy::rego::compile(black_box(&modules), black_box(&data), "data.main.main").is_ok()
            })
        });
        g.finish();
    }
    let mut prepared = prepared_engine(&bundle);
    let request_value = to_regorus(&request);
    {
        let mut g = c.benchmark_group("eval");
        g.sample_size(10);
        g.bench_function("Compiled::eval(outcome)", |b| {
            b.iter(|| compiled.eval("data.main.outcome", black_box(&request)))
        });
        g.bench_function("prepared_engine(outcome)", |b| {
            b.iter(|| {
                prepared.set_input(request_value.clone());
                prepared.eval_rule("data.main.outcome".to_string())
            })
        });
        g.finish();
    }
    c.final_summary();

    // --- summary against the targets -----------------------------------------------------
    println!("\n==================== bundle / rego summary ====================");
    println!(
        "(one thread; machine: {} cores, shared with whatever else runs)",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    let n_build = if !bench {
        50
    } else if quick {
        500
    } else {
        3000
    };
    let t = Instant::now();
    for _ in 0..n_build {
        black_box(bundle::build(black_box(&input)).archive());
    }
    let per_bundle = t.elapsed().as_secs_f64() / n_build as f64;
    let t = Instant::now();
    for _ in 0..n_build {
        black_box(bundle::build(black_box(&input)));
    }
    let per_build_only = t.elapsed().as_secs_f64() / n_build as f64;
    println!(
        "1. build + archive():        {:>7.1} µs/bundle = {:>6.0} bundles/s   target ≥ 2,000/s [{}]",
        per_bundle * 1e6,
        1.0 / per_bundle,
        mark(1.0 / per_bundle >= 2000.0)
    );
    println!(
        "   build only (no archive):  {:>7.1} µs/bundle = {:>6.0} bundles/s",
        per_build_only * 1e6,
        1.0 / per_build_only
    );
    let mut tar = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(archive.as_slice()), &mut tar)
        .expect("gunzip");
    for level in [6, 1] {
        let (us, size) = gzip_at(&tar, level, n_build / 5);
        println!(
            "   gzip of the {}-byte tar at level {level}{}: {us:>6.1} µs → {size} bytes",
            tar.len(),
            if level == 6 { " (Compression::default)" } else { " (Compression::fast, what archive() uses)" }
        );
    }

    let compile_ms: Vec<f64> = sample_ms(if quick { 10 } else { 40 }, Duration::from_secs(2), || {
        black_box(edict::policy::rego::compile(&modules, &data, "data.main.main").is_ok());
    });
    let parse_ms: Vec<f64> = sample_ms(if quick { 10 } else { 40 }, Duration::from_secs(2), || {
        let mut e = regorus::Engine::new();
        for (label, text) in &modules {
            black_box(e.add_policy(label.clone(), text.clone()).is_ok());
        }
    });
    println!(
        "   compile check (rego::compile): p50 {:>5.2} ms  p90 {:>5.2} ms  min {:>5.2} ms   target ≤ 5 ms [{}]",
        percentile(&compile_ms, 0.5),
        percentile(&compile_ms, 0.9),
        compile_ms[0],
        mark(percentile(&compile_ms, 0.5) <= 5.0)
    );
    println!(
        "     of which parsing the {} modules (add_policy): p50 {:>5.2} ms",
        modules.len(),
        percentile(&parse_ms, 0.5)
    );

    // The compile gate (what the pipeline runs now), cold and after one Stack changed.
    let caps = edict::policy::Capabilities::latest();
    assert!(edict::policy::check_modules(&modules, caps).is_empty(), "the reference bundle passes the gate");
    let gate_runs = if quick { 10 } else { 40 };
    let (gate_cold_ms, gate_drop_ms) = cold_gates(&modules, gate_runs);
    // The same on one thread: what a System costs when every core is busy with other Systems.
    let one_thread = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("a pool of one thread");
    let (gate_cold_one_ms, _) = one_thread.install(|| cold_gates(&modules, gate_runs));
    let warm = edict::policy::Gate::new();
    warm.check(&modules, caps);
    let variants = stack_revisions(&input, gate_runs);
    if std::env::var_os("EDICT_PROFILE_GATE").is_some() {
        // For a profiler: only the warm gate, for a few seconds.
        let until = Instant::now() + Duration::from_secs(5);
        for changed in variants.iter().cycle() {
            black_box(warm.check(changed, caps).is_empty());
            if Instant::now() > until {
                std::process::exit(0);
            }
        }
    }
    let mut next = variants.iter().cycle();
    let gate_stack_ms: Vec<f64> = sample_ms(gate_runs, Duration::from_secs(2), || {
        let changed = next.next().expect("variants");
        black_box(warm.check(changed, caps).is_empty());
    });
    // The same, when the change also alters what the Stack's decisions hold (a `deny` that may now
    // be a number): the generated entrypoint, which reads them, is checked again too.
    let mut retyped = input.clone();
    let policy = &mut retyped.stacks[0].policies[0];
    policy.rego = format!("{}\ndeny contains 7 if input.retyped\n", policy.rego).into();
    let retyped = bundle::build(&retyped).modules();
    let mut gates: Vec<edict::policy::Gate> = (0..gate_runs)
        .map(|_| {
            let gate = edict::policy::Gate::new();
            gate.check(&modules, caps);
            gate
        })
        .collect();
    let mut used = Vec::new();
    let gate_retyped_ms: Vec<f64> = sample_ms(gate_runs, Duration::from_secs(2), || {
        let gate = gates.pop().expect("one warm gate per run");
        black_box(gate.check(&retyped, caps).is_empty());
        used.push(gate); // dropped after the timing
    });
    println!(
        "   compile gate (policy::Gate), cold:          p50 {:>5.2} ms  p90 {:>5.2} ms   target ≤ 5 ms [{}]",
        percentile(&gate_cold_ms, 0.5),
        percentile(&gate_cold_ms, 0.9),
        mark(percentile(&gate_cold_ms, 0.5) <= 5.0)
    );
    println!(
        "     the same on one thread:                   p50 {:>5.2} ms  p90 {:>5.2} ms",
        percentile(&gate_cold_one_ms, 0.5),
        percentile(&gate_cold_one_ms, 0.9)
    );
    println!("     freeing a gate that checked the bundle once: {gate_drop_ms:>5.2} ms");
    println!(
        "   compile gate, one Stack changed (warm gate): p50 {:>5.2} ms  p90 {:>5.2} ms   target ≤ 2 ms [{}]",
        percentile(&gate_stack_ms, 0.5),
        percentile(&gate_stack_ms, 0.9),
        mark(percentile(&gate_stack_ms, 0.5) <= 2.0)
    );
    println!(
        "     the same, the Stack's decisions retyped (entrypoint checked again): p50 {:>5.2} ms  p90 {:>5.2} ms",
        percentile(&gate_retyped_ms, 0.5),
        percentile(&gate_retyped_ms, 0.9),
    );

    println!("3. data.main.outcome:");
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        Case { name: "reference, violating pod", bundle: bundle.clone(), request: request.clone() },
        Case { name: "reference, benign configmap", bundle: bundle.clone(), request: benign_request() },
        Case { name: "small (1+1 policies), violating pod", bundle: bundle::build(&small_input()), request },
    ];
    for case in &cases {
        eval_case(case, quick, bench, dir.path());
    }
    println!("================================================================");
}
