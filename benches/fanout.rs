//! Fan-out: one Stack bound to 10,000 Systems changes; every System is rebuilt (with its
//! compile check) and published to the embedded registry (directory store, index on disk), as
//! `run --local` and the operator's embedded store publish. Then the same change is applied again
//! and must write nothing.
//!
//! The catalog is built in memory from the shared generated YAML (`workload`, parsed with
//! `manifest::parse`): one Tenant, one Stack (`baseline`) with three Policies (one with Rego
//! tests), and 10,000 Systems in 100 namespaces, each with one or two small Policies of its
//! own whose text differs per System, so every System's compile check really runs (no cache
//! hit across Systems).
//!
//! `cargo bench --bench fanout`; `EDICT_BENCH_SYSTEMS=N` changes the number of Systems. Run
//! without `--bench` (as `cargo test --benches` does) it only smoke-tests 40 Systems.

use std::time::{Duration, Instant};

use edict::engine::catalog::Catalog;
use edict::engine::pipeline::{self, Checks, SystemBuild};
use edict::model::ObjectKey;
use edict::registry::{Published, Registry, publishing};
use edict::sources::manifest;
use workload::Workload;

mod workload;

/// The allocator the edict binary runs with (see `main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Publishes in flight, as the operator's default parallelism.
const PUBLISHING: usize = 8;

fn apply_all(catalog: &mut Catalog, file: &str, text: &str) -> edict::engine::catalog::Affected {
    let loaded = manifest::parse(file, text);
    assert!(loaded.problems.is_empty(), "{file}: {:?}", loaded.problems);
    let mut affected = edict::engine::catalog::Affected::new();
    for located in loaded.objects {
        affected.extend(catalog.apply(located));
    }
    affected
}

#[derive(Default, Debug)]
struct Round {
    systems: usize,
    built: usize,
    failed: usize,
    written: usize,
    unchanged: usize,
    errors: usize,
    apply: Duration,
    build: Duration,
    publish: Duration,
    total: Duration,
}

impl Round {
    fn print(&self, title: &str) {
        println!(
            "{title:<46} {:>6} systems  built {:>6}  failed {:>3}  written {:>6}  unchanged {:>6}  errors {}\n\
             {:<46} total {:>7.2} s = apply {:.3} s + build {:.2} s + publish {:.2} s",
            self.systems,
            self.built,
            self.failed,
            self.written,
            self.unchanged,
            self.errors,
            "",
            self.total.as_secs_f64(),
            self.apply.as_secs_f64(),
            self.build.as_secs_f64(),
            self.publish.as_secs_f64()
        );
    }
}

fn build_and_publish(
    rt: &tokio::runtime::Runtime,
    catalog: &Catalog,
    keys: &[ObjectKey],
    checks: &Checks,
    registry: &Registry,
    parallel: usize,
    round: &mut Round,
) {
    let t = Instant::now();
    let builds: Vec<SystemBuild> = pipeline::build_systems(catalog, keys, "bench", checks);
    round.build = t.elapsed();
    round.systems = builds.len();
    let t = Instant::now();
    let mut jobs = Vec::new();
    for b in builds {
        let (Some(input), Some(bundle)) = (b.input, b.bundle) else {
            round.failed += 1;
            if round.failed == 1 {
                eprintln!("first failed build {}: {:?}", b.key, b.problems);
            }
            continue;
        };
        round.built += 1;
        jobs.push((b.key, input, bundle, b.generations, registry.clone()));
    }
    // As the operator and `run --local` publish: each publish on a task of its own.
    let outcomes = rt.block_on(publishing::on_tasks(
        jobs,
        parallel,
        |(key, input, bundle, generations, registry)| async move {
            (key, registry.publish(&input, &bundle, &generations, std::time::SystemTime::now()).await)
        },
    ));
    for (key, outcome) in outcomes {
        match outcome {
            Ok(Published::Written) => round.written += 1,
            Ok(Published::Unchanged) => round.unchanged += 1,
            Err(e) => {
                round.errors += 1;
                if round.errors == 1 {
                    eprintln!("publish {key}: {e}");
                }
            }
        }
    }
    round.publish = t.elapsed();
}

fn main() {
    // `cargo bench` passes --bench; without it (`cargo test --benches`) run a small smoke version.
    let bench = std::env::args().any(|a| a == "--bench");
    let n = workload::env_size("EDICT_BENCH_SYSTEMS", if bench { 10_000 } else { 40 }).max(1);
    let workload = Workload::new(n, 100, 1);
    // A runtime like the CLI's and the operator's: one worker thread per core.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = workload::scratch_dir();
    let registry = Registry::embedded(dir.path());
    let checks = Checks::new();
    println!(
        "fan-out: {n} Systems bound by one Stack; {} worker threads; store {}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        dir.path().display()
    );

    // Setup: generate and apply every manifest, build and publish everything once.
    let t = Instant::now();
    let mut catalog = Catalog::new();
    apply_all(&mut catalog, "platform.yaml", &workload.platform());
    for i in 0..n {
        apply_all(&mut catalog, &workload.file(i), &workload.system(i, Default::default()));
    }
    let own_policies = catalog.policies().len() - workload.stack_policies();
    println!(
        "setup: parsed and applied {} objects ({n} Systems, {own_policies} System Policies) in {:.2} s",
        catalog.tenants().len() + catalog.stacks().len() + catalog.systems().len() + catalog.policies().len(),
        t.elapsed().as_secs_f64()
    );
    let keys: Vec<ObjectKey> = catalog.systems().keys().cloned().collect();
    let mut initial = Round::default();
    let t = Instant::now();
    build_and_publish(&rt, &catalog, &keys, &checks, &registry, PUBLISHING, &mut initial);
    initial.total = t.elapsed();
    initial.print("setup: initial build + publish (empty store)");

    // 1. The Stack's Policy changes: every bound System is rebuilt and republished.
    let edited = workload::host_access(&["/var/lib/kubelet/pods"]);
    let mut change = Round::default();
    let t = Instant::now();
    let affected = apply_all(&mut catalog, "host-access.yaml", &edited);
    change.apply = t.elapsed();
    let affected: Vec<ObjectKey> = affected.into_iter().collect();
    build_and_publish(&rt, &catalog, &affected, &checks, &registry, PUBLISHING, &mut change);
    change.total = t.elapsed();

    // 2. The same change again: every bound System is rebuilt (whether or not the catalog
    // reports an unchanged object as affecting them), nothing may be written.
    let mut again = Round::default();
    let t = Instant::now();
    apply_all(&mut catalog, "host-access.yaml", &edited);
    again.apply = t.elapsed();
    build_and_publish(&rt, &catalog, &affected, &checks, &registry, PUBLISHING, &mut again);
    again.total = t.elapsed();

    // 3. Again with a fresh registry (as after a restart): it must read what is live from the
    // index on disk.
    let cold_registry = Registry::embedded(dir.path());
    let mut cold = Round::default();
    let t = Instant::now();
    build_and_publish(&rt, &catalog, &affected, &checks, &cold_registry, PUBLISHING, &mut cold);
    cold.total = t.elapsed();

    let files = rt.block_on(registry.store().list("bundles/")).map(|k| k.len()).unwrap_or(0);

    // 4. The path before publishes ran on tasks of their own, for comparison: another edit of
    // the Stack, published one at a time.
    let edited = workload::host_access(&["/var/lib/kubelet/pods", "/var/lib/docker"]);
    let mut serial = Round::default();
    let t = Instant::now();
    let affected = apply_all(&mut catalog, "host-access.yaml", &edited);
    serial.apply = t.elapsed();
    let affected: Vec<ObjectKey> = affected.into_iter().collect();
    build_and_publish(&rt, &catalog, &affected, &checks, &cold_registry, 1, &mut serial);
    serial.total = t.elapsed();

    // The cost of one System on one thread, with fresh caches: what the two workers share.
    let sample: Vec<ObjectKey> = keys.iter().step_by((keys.len() / 200).max(1)).cloned().collect();
    let fresh = Checks::new();
    let t = Instant::now();
    for key in &sample {
        std::hint::black_box(pipeline::build_system(&catalog, key, "bench", &fresh));
    }
    let per_system = t.elapsed().as_secs_f64() / sample.len() as f64;
    let t = Instant::now();
    for key in &sample {
        std::hint::black_box(pipeline::build_system(&catalog, key, "bench", &fresh));
    }
    let per_system_cached = t.elapsed().as_secs_f64() / sample.len() as f64;

    println!("\n==================== fan-out summary ====================");
    println!(
        "(machine: {} cores, shared)",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    change.print("2. stack policy edited → rebuild + publish");
    println!(
        "   target ≤ 5 s (issue 13, at 10,000 Systems): [{}]   ({:.0} systems/s end to end)",
        if change.total.as_secs_f64() <= 5.0 && change.written == n { "ok" } else { "MISSED" },
        n as f64 / change.total.as_secs_f64()
    );
    again.print("   same change again (warm publisher)");
    println!(
        "   nothing written: [{}]",
        if again.written == 0 && again.unchanged == n { "ok" } else { "MISSED" }
    );
    cold.print("   no change, fresh publisher (reads store)");
    println!(
        "   nothing written: [{}]",
        if cold.written == 0 && cold.unchanged == n { "ok" } else { "MISSED" }
    );
    println!("   objects in the store: {files} (live + one revision per publish)");
    serial.print(&format!("4. another edit, one publish at a time (before; now {PUBLISHING} on tasks)"));
    println!(
        "   publishing on tasks: {:.2}× as fast as one at a time",
        serial.publish.as_secs_f64() / change.publish.as_secs_f64()
    );
    println!(
        "   one System on one thread ({} sampled): build_system {:.2} ms with its compile check, \
         {:.3} ms when the check is cached;\n   {n} Systems on {} idle cores would take ≈ {:.1} s to build",
        sample.len(),
        per_system * 1e3,
        per_system_cached * 1e3,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        per_system * n as f64 / std::thread::available_parallelism().map(|n| n.get() as f64).unwrap_or(1.0)
    );
    println!("==========================================================");
}
