//! The operator's engine (`edict::operator::Engine`) against issue 4's targets, without a
//! cluster: objects arrive as the watches deliver them (`Change::Apply`, no file origin), each
//! change is applied, the affected Systems are reconciled (rebuilt, compile-checked and
//! published to the embedded directory store), then statuses are computed as `run` does.
//!
//! 1. 1,000 Systems and 50 Stacks (the shared `workload` generator): apply everything and
//!    reconcile every System once (the operator's start).
//! 2. A Stack Policy edit (a new rule, a new generation): time until every affected bundle is
//!    published; repeated on a regional Stack and on `baseline` (which binds every System).
//! 3. 200 single-System edits (alternately an option, which bumps the generation, and a label,
//!    which in Kubernetes does not): apply + reconcile latency, p50 / p99.
//! 4. In a child process (so the figure is not inflated by the phases above), 10,000 Systems
//!    and 50 Stacks loaded and reconciled: VmRSS and VmHWM from /proc/self/status against the
//!    300 MiB target, with the live heap at each stage and what a System's build holds.
//!
//! 5. A restart with nothing changed, at 10,000 Systems: a first engine reconciles and writes
//!    (to a mock API server) every finalizer, ConfigMap and status; a second one starts on the
//!    same store and gets every object with the status the first wrote, as its watches would.
//!    Counted: its writes to the API server, the files it changed in the store (bundles,
//!    revisions, commit log), and the time until it has nothing left to do. Target: no write.
//!
//! `cargo bench --bench operator`. Sizes: `EDICT_BENCH_SYSTEMS`, `EDICT_BENCH_STACKS`,
//! `EDICT_BENCH_EDITS`, `EDICT_BENCH_STACK_EDITS`, `EDICT_BENCH_MEMORY_SYSTEMS`,
//! `EDICT_BENCH_MEMORY_STACKS`, `EDICT_BENCH_RESTART_SYSTEMS`; `EDICT_BENCH_PHASE=latency`,
//! `memory` or `restart` runs one part only.
//! Run without `--bench` (as `cargo test --benches` does) it only smoke-tests small sizes.

use std::alloc::{GlobalAlloc, Layout};
use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use edict::engine::catalog::Catalog;
use edict::engine::pipeline::{self, Checks, SystemBuild};
use edict::engine::status::Statuses;
use edict::model::{Kind, ObjectKey};
use edict::operator::Engine;
use edict::operator::watch::Change;
use edict::sources::manifest::{self, Located, Object};
use workload::{TIERS, Workload, percentile};

mod workload;

/// The mock API server of the tests (it records every call and answers as a real one would).
#[path = "../tests/common/kube.rs"]
#[allow(dead_code)]
mod kube_mock;

/// The allocator the edict binary runs with (mimalloc, see `main.rs`), counting live heap bytes once [`COUNTING`] is on (in the memory
/// phase only, from its first line, so that the other phases pay one relaxed load per call).
struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static LIVE: AtomicIsize = AtomicIsize::new(0);

fn count(delta: isize) {
    if COUNTING.load(Ordering::Relaxed) {
        LIVE.fetch_add(delta, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to `MiMalloc`; only a counter is updated beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        let p = unsafe { mimalloc::MiMalloc.alloc(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `MiMalloc` with `layout` (every allocation goes through here).
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) };
        count(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`, with the caller's contract for `realloc`.
        let p = unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const MIB: f64 = 1024.0 * 1024.0;
const RSS_TARGET_MIB: f64 = 300.0;

/// Objects as the API server delivers them: no file to point at.
fn objects(file: &str, text: &str) -> Vec<Located> {
    let loaded = manifest::parse(file, text);
    assert!(loaded.problems.is_empty(), "{file}: {:?}", loaded.problems);
    loaded
        .objects
        .into_iter()
        .map(|mut l| {
            l.origin = Default::default();
            l
        })
        .collect()
}

fn apply(engine: &mut Engine, located: Located) -> BTreeSet<ObjectKey> {
    engine.apply(Change::Apply(Box::new(located))).into_iter().collect()
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut figures: Vec<f64>) -> f64 {
    figures.sort_by(|a, b| a.total_cmp(b));
    percentile(&figures, 0.5)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Systems among `keys` whose served revision differs between `before` and `after`.
fn republished(keys: &BTreeSet<ObjectKey>, before: &Statuses, after: &Statuses) -> usize {
    keys.iter()
        .map(|k| k.to_string())
        .filter(|k| {
            let new = after.systems.get(k.as_str()).and_then(|s| s.revision.as_ref());
            new.is_some() && new != before.systems.get(k.as_str()).and_then(|s| s.revision.as_ref())
        })
        .count()
}

/// A real Rego change to a Policy with `deny` rules: one more rule, and the next generation.
fn edit_policy(base: &Located, edit: usize) -> Located {
    let mut l = base.clone();
    if let Object::Policy(p) = &mut l.object {
        p.spec.rego.push_str(&format!(
            "\ndeny contains msg if {{\n\tinput.request.kind.kind == \"ConfigMap\"\n\tinput.request.object.metadata.name == \"reserved-{edit}\"\n\tmsg := \"config map reserved-{edit} belongs to the platform\"\n}}\n"
        ));
        p.metadata.generation = Some(p.metadata.generation.unwrap_or(1) + edit as i64);
    }
    l
}

/// One figure of the stack-edit phase.
struct StackEdit {
    affected: usize,
    republished: usize,
    converge: Duration,
    statuses: Duration,
}

fn main() {
    let phase = std::env::var("EDICT_BENCH_PHASE").unwrap_or_else(|_| "all".into());
    if phase == "memory" {
        COUNTING.store(true, Ordering::Relaxed);
    }
    // `cargo bench` passes --bench; without it (`cargo test --benches`) run a small smoke version.
    let bench = std::env::args().any(|a| a == "--bench");
    let size =
        |name: &str, full: usize, smoke: usize| workload::env_size(name, if bench { full } else { smoke });
    let memory_systems = size("EDICT_BENCH_MEMORY_SYSTEMS", 10_000, 200).max(1);
    let memory_stacks = size("EDICT_BENCH_MEMORY_STACKS", 50, 10);
    if phase == "memory" {
        let figures = memory_phase(Workload::new(memory_systems, 50, memory_stacks));
        println!("{}", figures.line());
        return;
    }

    let load_before = load_average();
    let latency = (phase == "all" || phase == "latency").then(|| {
        let w = Workload::new(
            size("EDICT_BENCH_SYSTEMS", 1000, 40).max(1),
            50,
            size("EDICT_BENCH_STACKS", 50, 10),
        );
        latency_phase(
            w,
            size("EDICT_BENCH_STACK_EDITS", 5, 2).max(1),
            size("EDICT_BENCH_EDITS", 200, 10).max(1),
        )
    });
    let load_between = load_average();
    let memory = (phase == "all").then(|| {
        // A fresh process, so that the figure is the engine's with 10,000 Systems and nothing else.
        let exe = std::env::current_exe().expect("the bench's own path");
        let out = Command::new(exe)
            .env("EDICT_BENCH_PHASE", "memory")
            .env("EDICT_BENCH_MEMORY_SYSTEMS", memory_systems.to_string())
            .env("EDICT_BENCH_MEMORY_STACKS", memory_stacks.to_string())
            .output()
            .expect("start the memory phase");
        let text = String::from_utf8_lossy(&out.stdout);
        for line in text.lines().filter(|l| !l.starts_with(MemoryFigures::TAG)) {
            println!("{line}");
        }
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "memory phase failed: {}", out.status);
        text.lines().find_map(MemoryFigures::parse).expect("memory figures")
    });
    let restart = (phase == "all" || phase == "restart").then(|| {
        restart_phase(Workload::new(
            size("EDICT_BENCH_RESTART_SYSTEMS", 10_000, 40).max(1),
            50,
            memory_stacks,
        ))
    });
    let load_after = load_average();

    println!("\n==================== operator engine summary ====================");
    println!(
        "(machine: {} cores, shared; load average {load_before} before, {load_between} after the latency phase, \
         {load_after} at the end)",
        cores()
    );
    if let Some(l) = &latency {
        l.print();
    }
    if let Some(m) = &memory {
        println!(
            "4. {} Systems, {} Stacks loaded and reconciled:  VmRSS {:.0} MiB  VmHWM {:.0} MiB   target ≤ {RSS_TARGET_MIB:.0} MiB  [{}]",
            m.systems,
            m.stacks,
            m.rss_kib as f64 / 1024.0,
            m.hwm_kib as f64 / 1024.0,
            if (m.rss_kib.max(m.hwm_kib) as f64) / 1024.0 <= RSS_TARGET_MIB { "ok" } else { "MISSED" }
        );
        println!(
            "   live heap {:.0} MiB (builds {:.0} MiB, statuses {:.0} MiB); after malloc_trim VmRSS {:.0} MiB",
            m.heap as f64 / MIB,
            m.builds_heap as f64 / MIB,
            m.statuses_heap as f64 / MIB,
            m.trimmed_kib as f64 / 1024.0
        );
    }
    if let Some(r) = &restart {
        r.print();
    }
    println!("=================================================================");
}

/// What the restart phase measured.
struct Restart {
    systems: usize,
    first: Duration,
    first_calls: usize,
    restart: Duration,
    calls: Vec<String>,
    files_changed: usize,
    statuses_equal: bool,
}

impl Restart {
    fn print(&self) {
        let ok = self.calls.is_empty() && self.files_changed == 0 && self.statuses_equal;
        println!(
            "5. restart with nothing changed, {} Systems: first start {:.2} s ({} writes to the API server); \
             restart to nothing left to do {:.2} s, {} writes, {} store files changed, statuses equal: {}   \
             target: no write [{}]",
            self.systems,
            secs(self.first),
            self.first_calls,
            secs(self.restart),
            self.calls.len(),
            self.files_changed,
            self.statuses_equal,
            if ok { "ok" } else { "MISSED" }
        );
        for call in self.calls.iter().take(5) {
            println!("   written: {call}");
        }
    }
}

/// The store's files, with their size and time of change.
fn store_files(dir: &std::path::Path) -> BTreeSet<(std::path::PathBuf, std::time::SystemTime, u64)> {
    let mut out = BTreeSet::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let meta = entry.metadata().expect("metadata");
            if meta.is_dir() {
                todo.push(entry.path());
            } else {
                out.insert((entry.path(), meta.modified().expect("mtime"), meta.len()));
            }
        }
    }
    out
}

fn restart_phase(w: Workload) -> Restart {
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let dir = workload::scratch_dir();
    let platform = objects("", &w.platform());
    let all: Vec<Located> = platform
        .into_iter()
        .chain((0..w.systems).flat_map(|i| objects("", &w.system(i, Default::default()))))
        .collect();
    let keys = |engine: &mut Engine, objects: Vec<Located>| -> Vec<ObjectKey> {
        let mut affected = BTreeSet::new();
        for l in objects {
            affected.extend(apply(engine, l));
        }
        affected.into_iter().collect()
    };
    // Everything the engine writes to the API server, after a round: finalizers, ConfigMaps,
    // annotations (sync), then the statuses that changed.
    let write = |engine: &mut Engine| -> (Vec<String>, Statuses) {
        rt.block_on(async {
            let (client, server) = kube_mock::api_server(kube_mock::echo);
            engine.sync(&client).await;
            let statuses = engine.statuses();
            edict::operator::status_writer::write(&client, &engine.written, &statuses).await;
            drop(client);
            let calls = server.await.expect("mock API server");
            (calls.iter().map(|c| format!("{} {}", c.method, c.path)).collect(), statuses)
        })
    };

    let t = Instant::now();
    let mut first = Engine::new("bench", dir.path().to_path_buf());
    let affected = keys(&mut first, all.clone());
    rt.block_on(first.reconcile(&affected));
    let (first_calls, _) = write(&mut first);
    let before = first.statuses();
    let first_time = t.elapsed();
    drop(first);
    let files = store_files(dir.path());

    // The new leader: its watches list every object with the status the first one wrote.
    let observed: Vec<Located> = all
        .into_iter()
        .map(|mut l| {
            let key = l.object.key().to_string();
            match &mut l.object {
                Object::Tenant(o) => {
                    o.status = before
                        .tenants
                        .get(o.metadata.name.as_deref().unwrap_or_default())
                        .map(|s| (**s).clone())
                }
                Object::Stack(o) => o.status = before.stacks.get(key.as_str()).map(|s| (**s).clone()),
                Object::System(o) => {
                    o.status = before.systems.get(key.as_str()).map(|s| (**s).clone());
                    o.metadata.finalizers = Some(vec![edict::operator::wiring::FINALIZER.to_string()]);
                }
                Object::Policy(o) => o.status = before.policies.get(key.as_str()).map(|s| (**s).clone()),
            }
            l
        })
        .collect();
    let t = Instant::now();
    let mut second = Engine::new("bench", dir.path().to_path_buf());
    let affected = keys(&mut second, observed);
    second.adopt_observed_statuses();
    rt.block_on(second.reconcile(&affected));
    let (calls, after) = write(&mut second);
    let restart = t.elapsed();
    let now = store_files(dir.path());
    Restart {
        systems: w.systems,
        first: first_time,
        first_calls: first_calls.len(),
        restart,
        calls,
        files_changed: files.symmetric_difference(&now).count(),
        statuses_equal: after == before,
    }
}

/// What the latency phase measured.
struct Latency {
    workload: Workload,
    objects: usize,
    stacks_per_system: (u32, f64, u32),
    systems_per_stack: (u32, u32, u32),
    apply: Duration,
    reconcile: Duration,
    statuses: Duration,
    ready: usize,
    stack_edits: Vec<(String, Vec<StackEdit>)>,
    system_ms: Vec<f64>,
    system_with_statuses_ms: Vec<f64>,
    /// Per System edit: computing the statuses and what the round derives from them (the
    /// statuses to write and the events).
    status_work_ms: Vec<f64>,
    /// Of that, computing the statuses (the rest: diffing them against the last round's).
    status_compute_ms: Vec<f64>,
    /// Per System edit: how many statuses the round writes.
    status_written: Vec<usize>,
    /// The same status work with every status computed again.
    from_scratch_ms: Vec<f64>,
    system_republished: usize,
}

impl Latency {
    fn print(&self) {
        let w = &self.workload;
        println!(
            "workload: {} Systems in {} namespaces, {} Stacks ({} Policies), {} objects; a System is bound by \
             {}–{} Stacks (mean {:.1}), a Stack binds {}–{} Systems (median {})",
            w.systems,
            w.namespaces(),
            w.stacks,
            w.stack_policies(),
            self.objects,
            self.stacks_per_system.0,
            self.stacks_per_system.2,
            self.stacks_per_system.1,
            self.systems_per_stack.0,
            self.systems_per_stack.2,
            self.systems_per_stack.1
        );
        println!(
            "1. initial convergence: {} Systems published in {:.2} s  (apply {:.3} s + reconcile {:.2} s); \
             then statuses {:.3} s  [{}]",
            self.ready,
            secs(self.apply + self.reconcile),
            secs(self.apply),
            secs(self.reconcile),
            secs(self.statuses),
            if self.ready == w.systems { "all published" } else { "NOT ALL PUBLISHED" }
        );
        for (stack, edits) in &self.stack_edits {
            let affected = edits.first().map(|e| e.affected).unwrap_or_default();
            let all = edits.iter().all(|e| e.republished == e.affected && e.affected > 0);
            let converge: Vec<f64> = edits.iter().map(|e| secs(e.converge)).collect();
            let lo = converge.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = converge.iter().copied().fold(0.0, f64::max);
            println!(
                "2. stack edit ({stack}): {affected} Systems affected, all published in median {:.2} s \
                 (min {lo:.2}, max {hi:.2}, {} edits; {:.1} ms per System); then statuses {:.3} s  [{}]",
                median(converge.clone()),
                edits.len(),
                median(converge) * 1e3 / affected.max(1) as f64,
                median(edits.iter().map(|e| secs(e.statuses)).collect()),
                if all { "all republished" } else { "NOT ALL REPUBLISHED" }
            );
        }
        let mut sorted = self.system_ms.clone();
        sorted.sort_by(|a, b| a.total_cmp(b));
        let mut with = self.system_with_statuses_ms.clone();
        with.sort_by(|a, b| a.total_cmp(b));
        println!(
            "3. system edit → its bundle published ({} edits): p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms  [{}]",
            sorted.len(),
            percentile(&sorted, 0.5),
            percentile(&sorted, 0.99),
            sorted.last().copied().unwrap_or(f64::NAN),
            if self.system_republished == sorted.len() { "each republished" } else { "NOT ALL REPUBLISHED" }
        );
        // Edits alternate: options at even positions, labels at odd ones.
        let kind = |parity: usize| {
            let mut v: Vec<f64> = self.system_ms.iter().skip(parity).step_by(2).copied().collect();
            v.sort_by(|a, b| a.total_cmp(b));
            v
        };
        let (options, labels) = (kind(0), kind(1));
        println!(
            "   option edits (data.json only, compile check cached): p50 {:.1} ms  p99 {:.1} ms;  \
             label edits (tier: data.json, usually new Stacks to compile): p50 {:.1} ms  p99 {:.1} ms",
            percentile(&options, 0.5),
            percentile(&options, 0.99),
            percentile(&labels, 0.5),
            percentile(&labels, 0.99)
        );
        println!(
            "   with the statuses of all objects computed after it (as each `run` round does): p50 {:.1} ms  p99 {:.1} ms",
            percentile(&with, 0.5),
            percentile(&with, 0.99)
        );
        let mut work = self.status_work_ms.clone();
        work.sort_by(|a, b| a.total_cmp(b));
        let mut scratch = self.from_scratch_ms.clone();
        scratch.sort_by(|a, b| a.total_cmp(b));
        let mut written = self.status_written.clone();
        written.sort_unstable();
        println!(
            "   status work of that round (statuses, then the writes and events derived from them): p50 {:.2} ms  p99 {:.2} ms, \
             {} statuses written per edit (median)   target ≤ 5 ms [{}]",
            percentile(&work, 0.5),
            percentile(&work, 0.99),
            written.get(written.len() / 2).copied().unwrap_or_default(),
            if percentile(&work, 0.5) <= 5.0 { "ok" } else { "MISSED" }
        );
        let mut compute = self.status_compute_ms.clone();
        compute.sort_by(|a, b| a.total_cmp(b));
        println!(
            "     of which computing the statuses p50 {:.2} ms, diffing them against the last round's (writes, events) the rest",
            percentile(&compute, 0.5)
        );
        println!(
            "     the same with every status computed again (each round before statuses were incremental): p50 {:.1} ms ({:.0}×)",
            percentile(&scratch, 0.5),
            percentile(&scratch, 0.5) / percentile(&work, 0.5)
        );
    }
}

/// What a `run` round derives from two rounds' statuses: how many to write, and the events.
fn round_diff(old: &Statuses, new: &Statuses) -> (usize, usize) {
    use edict::engine::status::changed;
    let writes = changed(&old.tenants, &new.tenants).count()
        + changed(&old.stacks, &new.stacks).count()
        + changed(&old.systems, &new.systems).count()
        + changed(&old.policies, &new.policies).count();
    (writes, edict::operator::status_writer::notices(old, new).len())
}

fn latency_phase(w: Workload, stack_edits: usize, system_edits: usize) -> Latency {
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let dir = workload::scratch_dir();
    let mut engine = Engine::new("bench", dir.path().to_path_buf());
    println!(
        "operator engine: {} Systems, {} Stacks; {} worker threads; store {}",
        w.systems,
        w.stacks,
        cores(),
        dir.path().display()
    );

    // 1. The start: every object arrives (parsed beforehand: the API server's JSON is decoded by
    // the watch, not by the engine), then every System is reconciled once.
    let platform = objects("", &w.platform());
    let mut systems: Vec<Vec<Located>> =
        (0..w.systems).map(|i| objects("", &w.system(i, Default::default()))).collect();
    let all: Vec<Located> = platform.iter().chain(systems.iter().flatten()).cloned().collect();
    let count = all.len();
    let t = Instant::now();
    let mut affected = BTreeSet::new();
    for l in all {
        affected.extend(apply(&mut engine, l));
    }
    let applied = t.elapsed();
    let keys: Vec<ObjectKey> = affected.into_iter().collect();
    let t = Instant::now();
    rt.block_on(engine.reconcile(&keys));
    let reconciled = t.elapsed();
    let t = Instant::now();
    let mut statuses = engine.statuses();
    let status_time = t.elapsed();
    let ready = statuses.systems.values().filter(|s| s.revision.is_some()).count();
    if let Some((key, s)) = statuses.systems.iter().find(|(_, s)| s.revision.is_none()) {
        eprintln!("first unpublished System {key}: {:?}", s.conditions);
    }
    let bound: Vec<u32> = statuses.systems.values().map(|s| s.stack_count).collect();
    let mut binds: Vec<u32> = statuses.stacks.values().map(|s| s.systems).collect();
    binds.sort_unstable();
    let stacks_per_system = (
        bound.iter().copied().min().unwrap_or(0),
        bound.iter().map(|&b| b as f64).sum::<f64>() / bound.len().max(1) as f64,
        bound.iter().copied().max().unwrap_or(0),
    );
    let systems_per_stack = (
        binds.first().copied().unwrap_or(0),
        binds.get(binds.len() / 2).copied().unwrap_or(0),
        binds.last().copied().unwrap_or(0),
    );
    println!(
        "1. initial: applied {count} objects in {:.3} s, reconciled {} Systems in {:.2} s ({ready} published), statuses in {:.3} s",
        secs(applied),
        keys.len(),
        secs(reconciled),
        secs(status_time)
    );

    // 2. A Stack Policy edit: everything it affects is rebuilt and republished.
    let policy_of = |stack: &str| {
        let name =
            if stack == "baseline" { "host-access".to_string() } else { format!("{stack}-registries") };
        platform.iter().find(|l| l.object.kind() == Kind::Policy && l.object.key().name == name).cloned()
    };
    let mut stack_results = Vec::new();
    let targets = [(w.stack_name(1), stack_edits), ("baseline".to_string(), stack_edits.min(3))];
    for (stack, times) in targets {
        let Some(base) = policy_of(&stack) else { continue };
        let mut edits = Vec::new();
        for edit in 1..=times {
            let before = statuses;
            let t = Instant::now();
            let affected = apply(&mut engine, edit_policy(&base, edit));
            let keys: Vec<ObjectKey> = affected.iter().cloned().collect();
            rt.block_on(engine.reconcile(&keys));
            let converge = t.elapsed();
            let t = Instant::now();
            statuses = engine.statuses();
            let status_time = t.elapsed();
            let done = republished(&affected, &before, &statuses);
            println!(
                "2. edit {edit} of {stack}'s Policy: {} Systems affected, {done} republished in {:.2} s; statuses {:.3} s",
                keys.len(),
                secs(converge),
                secs(status_time)
            );
            edits.push(StackEdit {
                affected: keys.len(),
                republished: done,
                converge,
                statuses: status_time,
            });
        }
        stack_results.push((stack, edits));
    }

    // 3. Single System edits: an option (a spec change: next generation) or a label (metadata:
    // the generation stays), alternately; the new tier also changes which Stacks bind it.
    let mut latencies = Vec::new();
    let mut with_statuses = Vec::new();
    let mut status_work = Vec::new();
    let mut status_compute = Vec::new();
    let mut written = Vec::new();
    let mut republished_count = 0;
    for edit in 0..system_edits {
        let i = (edit * 37 + 11) % w.systems;
        let Some(Object::System(s)) = systems[i].first_mut().map(|l| &mut l.object) else {
            panic!("System {i} comes first in its manifest")
        };
        if edit % 2 == 0 {
            s.spec.options.insert("revision".into(), serde_json::json!(edit));
            s.metadata.generation = Some(s.metadata.generation.unwrap_or(1) + 1);
        } else {
            let labels = s.metadata.labels.get_or_insert_with(Default::default);
            let tier = labels.get("tier").and_then(|t| TIERS.iter().position(|x| x == t)).unwrap_or(0);
            labels.insert("tier".into(), TIERS[(tier + 1) % TIERS.len()].to_string());
        }
        let located = systems[i][0].clone();
        let before = statuses;
        let t = Instant::now();
        let affected = apply(&mut engine, located);
        let keys: Vec<ObjectKey> = affected.iter().cloned().collect();
        rt.block_on(engine.reconcile(&keys));
        latencies.push(ms(t.elapsed()));
        let work = Instant::now();
        statuses = engine.statuses();
        status_compute.push(ms(work.elapsed()));
        let (writes, _) = round_diff(&before, &statuses);
        status_work.push(ms(work.elapsed()));
        written.push(writes);
        with_statuses.push(ms(t.elapsed()));
        let done = republished(&affected, &before, &statuses);
        if done == 1 && keys.len() == 1 {
            republished_count += 1;
        } else {
            eprintln!("system edit {edit} of {}: {} affected, {done} republished", w.name(i), keys.len());
        }
    }

    // The same round's status work when every status is computed again (every round before
    // statuses were incremental; now only the first after a restart).
    let mut from_scratch = Vec::new();
    for _ in 0..3 {
        let work = Instant::now();
        let all = engine.statuses_from_scratch();
        std::hint::black_box(round_diff(&statuses, &all));
        from_scratch.push(ms(work.elapsed()));
        statuses = all;
    }

    Latency {
        workload: w,
        status_work_ms: status_work,
        status_compute_ms: status_compute,
        status_written: written,
        from_scratch_ms: from_scratch,
        objects: count,
        stacks_per_system,
        systems_per_stack,
        apply: applied,
        reconcile: reconciled,
        statuses: status_time,
        ready,
        stack_edits: stack_results,
        system_ms: latencies,
        system_with_statuses_ms: with_statuses,
        system_republished: republished_count,
    }
}

/// The memory phase's result, passed from the child process as one tagged line.
struct MemoryFigures {
    systems: usize,
    stacks: usize,
    rss_kib: u64,
    hwm_kib: u64,
    trimmed_kib: u64,
    heap: i64,
    builds_heap: i64,
    statuses_heap: i64,
}

impl MemoryFigures {
    const TAG: &'static str = "memory-figures";

    fn line(&self) -> String {
        format!(
            "{} {} {} {} {} {} {} {} {}",
            Self::TAG,
            self.systems,
            self.stacks,
            self.rss_kib,
            self.hwm_kib,
            self.trimmed_kib,
            self.heap,
            self.builds_heap,
            self.statuses_heap
        )
    }

    fn parse(line: &str) -> Option<Self> {
        let mut f = line.strip_prefix(Self::TAG)?.split_whitespace();
        Some(MemoryFigures {
            systems: f.next()?.parse().ok()?,
            stacks: f.next()?.parse().ok()?,
            rss_kib: f.next()?.parse().ok()?,
            hwm_kib: f.next()?.parse().ok()?,
            trimmed_kib: f.next()?.parse().ok()?,
            heap: f.next()?.parse().ok()?,
            builds_heap: f.next()?.parse().ok()?,
            statuses_heap: f.next()?.parse().ok()?,
        })
    }
}

/// Fields of /proc/self/status, in KiB.
#[derive(Clone, Copy, Default)]
struct Rss {
    rss: u64,
    hwm: u64,
    anon: u64,
    file: u64,
}

fn rss() -> Rss {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    Rss { rss: field("VmRSS:"), hwm: field("VmHWM:"), anon: field("RssAnon:"), file: field("RssFile:") }
}

fn live_heap() -> i64 {
    LIVE.load(Ordering::Relaxed) as i64
}

/// Give the allocator's free pages back to the kernel (glibc), to tell free memory it keeps
/// from memory in use.
fn malloc_trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: glibc's malloc_trim takes no pointers and may be called at any time.
        unsafe { malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    false
}

fn stage(name: &str, took: Option<Duration>) -> (Rss, i64) {
    let (r, heap) = (rss(), live_heap());
    println!(
        "   {name:<44} VmRSS {:>6.0} MiB  VmHWM {:>6.0} MiB  (anon {:>6.0}, file {:>4.0})  live heap {:>6.0} MiB{}",
        r.rss as f64 / 1024.0,
        r.hwm as f64 / 1024.0,
        r.anon as f64 / 1024.0,
        r.file as f64 / 1024.0,
        heap as f64 / MIB,
        took.map(|d| format!("  in {:.2} s", secs(d))).unwrap_or_default()
    );
    (r, heap)
}

fn memory_phase(w: Workload) -> MemoryFigures {
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let dir = workload::scratch_dir();
    println!(
        "\nmemory phase (own process): {} Systems in {} namespaces, {} Stacks; store {}",
        w.systems,
        w.namespaces(),
        w.stacks,
        dir.path().display()
    );
    stage("start", None);
    let mut engine = Engine::new("bench", dir.path().to_path_buf());

    // Objects arrive one by one, as from the watches; nothing else holds them.
    let t = Instant::now();
    let mut affected = BTreeSet::new();
    for l in objects("", &w.platform()) {
        affected.extend(apply(&mut engine, l));
    }
    for i in 0..w.systems {
        for l in objects("", &w.system(i, Default::default())) {
            affected.extend(apply(&mut engine, l));
        }
    }
    let (_, catalog_heap) = stage("objects applied (catalog + binding index)", Some(t.elapsed()));
    let keys: Vec<ObjectKey> = affected.into_iter().collect();
    let t = Instant::now();
    rt.block_on(engine.reconcile(&keys));
    let (_, reconciled_heap) = stage("every System reconciled", Some(t.elapsed()));
    let t = Instant::now();
    // As `run` does: the engine keeps the transitions it reported, and one copy of the statuses
    // is shared by `engine.written` and the bundle API's view.
    let statuses = std::sync::Arc::new(engine.statuses());
    let view = statuses.clone();
    engine.written = statuses;
    let (after, heap) = stage("statuses computed, written and shown", Some(t.elapsed()));
    let published = view.systems.values().filter(|s| s.revision.is_some()).count();
    if published != w.systems {
        println!("   only {published} of {} Systems published", w.systems);
    }
    let statuses_heap = heap - reconciled_heap;
    let trimmed = malloc_trim();
    let (trim, _) =
        stage(if trimmed { "after malloc_trim(0)" } else { "after malloc_trim(0) (nothing freed)" }, None);

    // What one System's build holds, on a sample built again outside the engine.
    let builds = build_sizes(&w, 200);
    // The engine drops each bundle and its generations once published: what it keeps is the rest.
    let builds_heap = ((builds.per_system - builds.bundle - builds.generations) * w.systems as f64) as i64;
    println!(
        "   per System, a fresh build holds {:.1} KiB of heap ({} sampled) = bundle {:.1} KiB, dropped once \
         published ({:.1} files, {:.1} KiB of file bytes; its tar.gz is {:.1} KiB) + bundle input {:.1} KiB \
         (its {:.1} KiB of Rego text is shared with the catalog) + input generations {:.1} KiB, dropped once \
         published + the rest {:.1} KiB",
        builds.per_system / 1024.0,
        builds.sampled,
        builds.bundle / 1024.0,
        builds.files,
        builds.file_bytes / 1024.0,
        builds.archive / 1024.0,
        builds.input / 1024.0,
        builds.input_rego / 1024.0,
        builds.generations / 1024.0,
        builds.rest / 1024.0
    );
    println!(
        "   × {} Systems ≈ {:.0} MiB of builds kept (inputs {:.0} MiB); catalog {:.0} MiB; \
         statuses (one shared copy + transitions) {:.0} MiB; everything else {:.0} MiB",
        w.systems,
        builds_heap as f64 / MIB,
        builds.input * w.systems as f64 / MIB,
        catalog_heap as f64 / MIB,
        statuses_heap as f64 / MIB,
        (reconciled_heap - catalog_heap - builds_heap) as f64 / MIB
    );
    // What the compile gate and the Policy tests keep, by content (parsed modules, verdicts).
    let before = LIVE.load(Ordering::Relaxed);
    engine.forget_checks();
    let checks_heap = before - LIVE.load(Ordering::Relaxed);
    println!(
        "   of everything else, the compile gate's and the tests' caches (parsed modules, verdicts): {:.0} MiB",
        checks_heap as f64 / MIB
    );
    drop(engine);
    MemoryFigures {
        systems: w.systems,
        stacks: w.stacks,
        rss_kib: after.rss,
        hwm_kib: after.hwm,
        trimmed_kib: trim.rss,
        heap,
        builds_heap,
        statuses_heap,
    }
}

/// Heap held by one System's build, by part, averaged over a sample.
struct BuildSizes {
    sampled: usize,
    per_system: f64,
    bundle: f64,
    input: f64,
    generations: f64,
    rest: f64,
    files: f64,
    file_bytes: f64,
    archive: f64,
    input_rego: f64,
}

fn build_sizes(w: &Workload, sample: usize) -> BuildSizes {
    let mut catalog = Catalog::new();
    for l in objects("", &w.platform()) {
        catalog.apply(l);
    }
    // Spread over the labels: a stride coprime with their periods (and with most sizes).
    let sampled: BTreeSet<usize> = (0..sample.min(w.systems)).map(|k| k * 7919 % w.systems).collect();
    for i in sampled {
        for l in objects("", &w.system(i, Default::default())) {
            catalog.apply(l);
        }
    }
    let keys: Vec<ObjectKey> = catalog.systems().keys().cloned().collect();
    let checks = Checks::new();
    // Warm the check caches first, so that the builds measured below hold only themselves.
    drop(pipeline::build_systems(&catalog, &keys, "bench", &checks));
    let before = live_heap();
    let mut builds: Vec<SystemBuild> =
        keys.iter().map(|k| pipeline::build_system(&catalog, k, "bench", &checks)).collect();
    let held = live_heap() - before;
    let n = builds.len().max(1) as f64;
    let bundles = builds.iter().filter_map(|b| b.bundle.as_ref());
    let files = bundles.clone().map(|b| b.files.len()).sum::<usize>() as f64 / n;
    let file_bytes =
        bundles.clone().map(|b| b.files.values().map(Vec::len).sum::<usize>()).sum::<usize>() as f64 / n;
    let archive = bundles.map(|b| b.archive().len()).sum::<usize>() as f64 / n;
    let input_rego = builds
        .iter()
        .filter_map(|b| b.input.as_ref())
        .map(|i| {
            i.policies
                .iter()
                .chain(i.stacks.iter().flat_map(|s| s.policies.iter()))
                .map(|m| m.rego.len())
                .sum::<usize>()
        })
        .sum::<usize>() as f64
        / n;
    let t = live_heap();
    for b in &mut builds {
        b.bundle = None;
    }
    let bundle = (t - live_heap()) as f64 / n;
    let t = live_heap();
    for b in &mut builds {
        b.input = None;
    }
    let input = (t - live_heap()) as f64 / n;
    let t = live_heap();
    for b in &mut builds {
        b.generations.clear();
    }
    let generations = (t - live_heap()) as f64 / n;
    let per_system = held as f64 / n;
    BuildSizes {
        sampled: builds.len(),
        per_system,
        bundle,
        input,
        generations,
        rest: per_system - bundle - input - generations,
        files,
        file_bytes,
        archive,
        input_rego,
    }
}
