//! Binding index benchmark: 10,000 systems × 1,000 stacks.
//!
//! Measures a full build, one system's labels changing and one stack's
//! selector changing, each against naive pairwise matching (every stack ×
//! every system with `StackSelector::matches`). Under `cargo bench` a summary
//! with the targets and the naive/index ratios is printed at the end.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion};
use edict::select::bindings::{BindingIndex, ObjectKey};
use edict::select::selector::{Labels, StackSelector, Terms};

/// The allocator the edict binary runs with (see `main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SYSTEMS: usize = 10_000;
const STACKS: usize = 1_000;
const TENANTS: &[&str] = &["acme", "globex", "initech"];
const TYPES: &[&str] = &["envoy", "kafka"];
const ENVS: &[&str] = &["dev", "staging", "prod-eu", "prod-us"];
const REGIONS: &[&str] = &[
    "eu-west-1",
    "eu-west-2",
    "eu-central-1",
    "eu-north-1",
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "ap-south-1",
    "ap-northeast-1",
];
const TIERS: &[&str] = &["frontend", "backend", "data"];

/// splitmix64, so the data set is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

#[derive(Clone)]
struct System {
    key: ObjectKey,
    tenant: &'static str,
    kind: &'static str,
    labels: Labels,
}

#[derive(Clone)]
struct Stack {
    key: ObjectKey,
    tenant: &'static str,
    kind: &'static str,
    selector: StackSelector,
}

struct Data {
    systems: Vec<System>,
    stacks: Vec<Stack>,
}

fn labels(rng: &mut Rng) -> Labels {
    let mut labels = Labels::new();
    labels.insert("env".into(), rng.pick(ENVS).into());
    labels.insert("region".into(), rng.pick(REGIONS).into());
    labels.insert("team".into(), format!("team-{}", rng.below(100)));
    if rng.below(10) != 0 {
        labels.insert("tier".into(), rng.pick(TIERS).into());
    }
    labels.insert("app".into(), format!("app-{}", rng.below(1000)));
    labels
}

fn terms(pairs: &[(&str, &[&str])]) -> Terms {
    pairs.iter().map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect())).collect()
}

fn owned_terms(pairs: &[(&str, Vec<String>)]) -> Terms {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

/// A realistic mix: literals, `prod-*`, `eu-**`, `team-1*`, existence-only
/// keys, alternations, multi-key selectors and excludes.
fn selector(rng: &mut Rng) -> StackSelector {
    let team = format!("team-{}", rng.below(100));
    let app = format!("app-{}", rng.below(1000));
    let app_prefix = format!("app-{}*", rng.below(100));
    let (include, exclude) = match rng.below(14) {
        0 => (terms(&[("env", &["prod-*"])]), Terms::new()),
        1 => (terms(&[("env", &["prod-eu"])]), Terms::new()),
        2 => (terms(&[("region", &["eu-**"])]), Terms::new()),
        3 => (terms(&[("team", &["team-1*"])]), Terms::new()),
        4 => (owned_terms(&[("app", vec![app])]), Terms::new()),
        5 => (terms(&[("tier", &[])]), Terms::new()),
        6 => (terms(&[("env", &["prod-*"]), ("tier", &["backend", "data"])]), Terms::new()),
        7 => (terms(&[("team", &["team-4?"]), ("region", &["us-**"])]), Terms::new()),
        8 => (terms(&[("app", &["app-1{0,1}?"])]), Terms::new()),
        9 => (Terms::new(), terms(&[("env", &["dev"])])),
        10 => (terms(&[("env", &["staging", "dev"])]), terms(&[("tier", &["frontend"])])),
        11 => (terms(&[("region", &["*-west-*"])]), Terms::new()),
        12 => (owned_terms(&[("app", vec![app_prefix])]), Terms::new()),
        _ => {
            (owned_terms(&[("team", vec![team]), ("app", vec!["app-*".into()])]), terms(&[("env", &["dev"])]))
        }
    };
    StackSelector::parse(&include, &exclude).expect("benchmark selectors are valid")
}

impl Data {
    fn generate() -> Data {
        let mut rng = Rng(42);
        let systems = (0..SYSTEMS)
            .map(|i| System {
                key: ObjectKey::new(format!("ns-{}", i % 50), format!("system-{i}")),
                tenant: rng.pick(TENANTS),
                kind: rng.pick(TYPES),
                labels: labels(&mut rng),
            })
            .collect();
        let stacks = (0..STACKS)
            .map(|i| Stack {
                key: ObjectKey::new(format!("ns-{}", i % 50), format!("stack-{i}")),
                tenant: rng.pick(TENANTS),
                kind: rng.pick(TYPES),
                selector: selector(&mut rng),
            })
            .collect();
        Data { systems, stacks }
    }
}

fn add_systems(index: &mut BindingIndex, systems: Vec<System>) {
    for s in systems {
        black_box(index.upsert_system(s.key, s.tenant, s.kind, s.labels));
    }
}

fn add_stacks(index: &mut BindingIndex, stacks: Vec<Stack>) {
    for s in stacks {
        black_box(index.upsert_stack(s.key, s.tenant, s.kind, s.selector));
    }
}

fn build_systems_first(systems: Vec<System>, stacks: Vec<Stack>) -> BindingIndex {
    let mut index = BindingIndex::new();
    add_systems(&mut index, systems);
    add_stacks(&mut index, stacks);
    index
}

fn build_stacks_first(systems: Vec<System>, stacks: Vec<Stack>) -> BindingIndex {
    let mut index = BindingIndex::new();
    add_stacks(&mut index, stacks);
    add_systems(&mut index, systems);
    index
}

fn binds(stack: &Stack, system: &System) -> bool {
    stack.tenant == system.tenant && stack.kind == system.kind && stack.selector.matches(&system.labels)
}

/// Every stack × every system.
fn naive_build(data: &Data) -> Vec<(u32, u32)> {
    let mut pairs = Vec::new();
    for (i, stack) in data.stacks.iter().enumerate() {
        for (j, system) in data.systems.iter().enumerate() {
            if binds(stack, system) {
                pairs.push((i as u32, j as u32));
            }
        }
    }
    pairs
}

fn naive_stacks_of(data: &Data, system: &System) -> Vec<u32> {
    (0..data.stacks.len() as u32).filter(|&i| binds(&data.stacks[i as usize], system)).collect()
}

fn naive_systems_of(data: &Data, stack: &Stack) -> Vec<u32> {
    (0..data.systems.len() as u32).filter(|&j| binds(stack, &data.systems[j as usize])).collect()
}

/// Alternative labels and selectors for the update benchmarks.
struct Updates {
    system: usize,
    labels: [Labels; 2],
    stack: usize,
    selectors: [StackSelector; 2],
}

impl Updates {
    fn new(data: &Data) -> Updates {
        let system = SYSTEMS / 2;
        let mut changed = data.systems[system].labels.clone();
        changed.insert("env".into(), "prod-eu".into());
        changed.insert("app".into(), "app-101".into());
        let stack = STACKS / 2;
        let broad = StackSelector::parse(
            &terms(&[("region", &["eu-**"]), ("tier", &[])]),
            &terms(&[("team", &["team-1*"])]),
        )
        .expect("valid");
        Updates {
            system,
            labels: [data.systems[system].labels.clone(), changed],
            stack,
            selectors: [data.stacks[stack].selector.clone(), broad],
        }
    }

    fn apply_system(&self, index: &mut BindingIndex, data: &Data, flip: usize) {
        let s = &data.systems[self.system];
        let labels = self.labels[flip % 2].clone();
        black_box(index.upsert_system(s.key.clone(), s.tenant, s.kind, labels));
    }

    fn apply_stack(&self, index: &mut BindingIndex, data: &Data, flip: usize) {
        let s = &data.stacks[self.stack];
        let selector = self.selectors[flip % 2].clone();
        black_box(index.upsert_stack(s.key.clone(), s.tenant, s.kind, selector));
    }

    fn naive_system(&self, data: &Data, flip: usize) -> Vec<u32> {
        let mut system = data.systems[self.system].clone();
        system.labels = self.labels[flip % 2].clone();
        naive_stacks_of(data, &system)
    }

    fn naive_stack(&self, data: &Data, flip: usize) -> Vec<u32> {
        let mut stack = data.stacks[self.stack].clone();
        stack.selector = self.selectors[flip % 2].clone();
        naive_systems_of(data, &stack)
    }
}

fn bench_build(c: &mut Criterion, data: &Data) {
    let mut group = c.benchmark_group("build");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(4));
    let inputs = || (data.systems.clone(), data.stacks.clone());
    group.bench_function("index_systems_then_stacks", |b| {
        b.iter_batched(inputs, |(sy, st)| build_systems_first(sy, st), BatchSize::PerIteration)
    });
    group.bench_function("index_stacks_then_systems", |b| {
        b.iter_batched(inputs, |(sy, st)| build_stacks_first(sy, st), BatchSize::PerIteration)
    });
    group.bench_function("naive_pairwise", |b| b.iter(|| naive_build(data)));
    group.finish();
}

fn bench_updates(c: &mut Criterion, data: &Data) {
    let updates = Updates::new(data);
    let mut index = build_systems_first(data.systems.clone(), data.stacks.clone());
    let mut group = c.benchmark_group("update");
    group.measurement_time(Duration::from_secs(3));
    let mut flip = 0;
    group.bench_function("system_labels_changed", |b| {
        b.iter(|| {
            flip += 1;
            updates.apply_system(&mut index, data, flip)
        })
    });
    group.bench_function("system_labels_changed_naive", |b| {
        b.iter(|| {
            flip += 1;
            updates.naive_system(data, flip)
        })
    });
    group.bench_function("stack_selector_changed", |b| {
        b.iter(|| {
            flip += 1;
            updates.apply_stack(&mut index, data, flip)
        })
    });
    group.bench_function("stack_selector_changed_naive", |b| {
        b.iter(|| {
            flip += 1;
            updates.naive_stack(data, flip)
        })
    });
    group.finish();
}

/// Median wall time of `reps` runs of `f`.
fn median(reps: usize, mut f: impl FnMut(usize)) -> Duration {
    let mut times: Vec<Duration> = (0..reps)
        .map(|i| {
            let start = Instant::now();
            f(i);
            start.elapsed()
        })
        .collect();
    times.sort();
    times[reps / 2]
}

/// Median time of `f` over batches of `per_batch` calls, per call.
fn per_call(per_batch: usize, mut f: impl FnMut(usize)) -> Duration {
    let mut call = 0;
    median(9, |_| {
        for _ in 0..per_batch {
            call += 1;
            f(call);
        }
    }) / per_batch as u32
}

fn line(what: &str, index: Duration, target: &str, naive: Duration) {
    let ratio = naive.as_secs_f64() / index.as_secs_f64();
    println!(
        "{what:<36} {index:>12.3?}  (target {target:>7})  naive {naive:>12.3?}  naive/index {ratio:>8.1}x"
    );
}

fn check_against_naive(data: &Data) -> usize {
    let index = build_systems_first(data.systems.clone(), data.stacks.clone());
    let pairs = naive_build(data);
    assert_eq!(index.binding_count(), pairs.len(), "index disagrees with naive");
    let stacks_first = build_stacks_first(data.systems.clone(), data.stacks.clone());
    assert_eq!(stacks_first.binding_count(), pairs.len());
    let mut by_stack: BTreeMap<u32, Vec<ObjectKey>> = BTreeMap::new();
    for (i, j) in &pairs {
        by_stack.entry(*i).or_default().push(data.systems[*j as usize].key.clone());
    }
    for (i, stack) in data.stacks.iter().enumerate() {
        let mut want = by_stack.remove(&(i as u32)).unwrap_or_default();
        want.sort();
        assert_eq!(index.systems_of(&stack.key), want, "{}", stack.key);
    }
    pairs.len()
}

fn summary(data: &Data) {
    let bindings = check_against_naive(data);
    let updates = Updates::new(data);
    let build = median(5, |_| drop(build_systems_first(data.systems.clone(), data.stacks.clone())));
    let build_rev = median(5, |_| drop(build_stacks_first(data.systems.clone(), data.stacks.clone())));
    let naive = median(3, |_| drop(black_box(naive_build(data))));
    let mut index = build_systems_first(data.systems.clone(), data.stacks.clone());
    let system = per_call(200, |i| updates.apply_system(&mut index, data, i));
    let system_naive = per_call(20, |i| drop(black_box(updates.naive_system(data, i))));
    let stack = per_call(20, |i| updates.apply_stack(&mut index, data, i));
    let stack_naive = per_call(5, |i| drop(black_box(updates.naive_stack(data, i))));
    println!();
    println!("{SYSTEMS} systems x {STACKS} stacks, {bindings} bindings (checked against naive)");
    line("full build (systems, then stacks)", build, "250 ms", naive);
    line("full build (stacks, then systems)", build_rev, "250 ms", naive);
    line("one system's labels changed", system, "1 ms", system_naive);
    line("one stack's selector changed", stack, "20 ms", stack_naive);
}

fn main() {
    let data = Data::generate();
    let mut c = Criterion::default().configure_from_args();
    bench_build(&mut c, &data);
    bench_updates(&mut c, &data);
    c.final_summary();
    if std::env::args().any(|a| a == "--bench") {
        summary(&data);
    }
}
