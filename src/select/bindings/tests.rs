use std::collections::BTreeMap;

use super::ids::{Bitset, for_each_change, union};
use super::*;
use crate::select::selector::Terms;

/// splitmix64: a small deterministic generator for randomized tests.
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

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const TENANTS: &[&str] = &["acme", "globex"];
const TYPES: &[&str] = &["envoy", "kafka"];
const LABELS: &[(&str, &[&str])] = &[
    ("env", &["dev", "staging", "prod-eu", "prod-us"]),
    ("region", &["eu-west-1", "eu-north-1", "us-east-1"]),
    ("tier", &["frontend", "backend", ""]),
    ("app", &["app-1", "app-12", "app-2", "app-123"]),
];
const PATTERNS: &[&str] = &[
    "prod-*",
    "prod*",
    "eu-**",
    "dev",
    "app-1*",
    "app-?",
    "{dev,staging}",
    "[fb]*",
    "**",
    "*-1",
    "app-12?",
    "",
    "*",
    "?*",
];

fn random_labels(rng: &mut Rng) -> Labels {
    let mut labels = Labels::new();
    for (key, values) in LABELS {
        if rng.chance(80) {
            labels.insert(key.to_string(), rng.pick(values).to_string());
        }
    }
    labels
}

fn random_terms(rng: &mut Rng, max_keys: usize) -> Terms {
    let keys = rng.below(max_keys + 1);
    (0..keys)
        .map(|_| {
            let key = LABELS[rng.below(LABELS.len())].0.to_string();
            let patterns = (0..rng.below(3)).map(|_| rng.pick(PATTERNS).to_string()).collect();
            (key, patterns)
        })
        .collect()
}

fn random_selector(rng: &mut Rng) -> StackSelector {
    let include = random_terms(rng, 2);
    let exclude = if rng.chance(50) { Terms::new() } else { random_terms(rng, 1) };
    StackSelector::parse(&include, &exclude).expect("test patterns are valid")
}

/// The obvious model: every stack against every system.
#[derive(Default)]
struct Naive {
    systems: BTreeMap<ObjectKey, (String, String, Labels)>,
    stacks: BTreeMap<ObjectKey, (String, String, StackSelector)>,
}

impl Naive {
    fn binds(&self, stack: &ObjectKey, system: &ObjectKey) -> bool {
        match (self.stacks.get(stack), self.systems.get(system)) {
            (Some((t1, y1, sel)), Some((t2, y2, labels))) => t1 == t2 && y1 == y2 && sel.matches(labels),
            _ => false,
        }
    }

    fn systems_of(&self, stack: &ObjectKey) -> BTreeSet<ObjectKey> {
        self.systems.keys().filter(|s| self.binds(stack, s)).cloned().collect()
    }

    fn stacks_of(&self, system: &ObjectKey) -> Vec<ObjectKey> {
        self.stacks.keys().filter(|st| self.binds(st, system)).cloned().collect()
    }
}

fn assert_same(index: &BindingIndex, naive: &Naive, context: &str) {
    assert_eq!(index.system_count(), naive.systems.len(), "{context}");
    assert_eq!(index.stack_count(), naive.stacks.len(), "{context}");
    let mut bindings = 0;
    for stack in naive.stacks.keys() {
        let want: Vec<_> = naive.systems_of(stack).into_iter().collect();
        bindings += want.len();
        assert_eq!(index.system_count_of(stack), want.len(), "{context}: system_count_of({stack})");
        assert_eq!(index.systems_of(stack), want, "{context}: systems_of({stack})");
    }
    for system in naive.systems.keys() {
        assert_eq!(index.stacks_of(system), naive.stacks_of(system), "{context}: stacks_of({system})");
    }
    assert_eq!(index.binding_count(), bindings, "{context}");
}

/// One random operation applied to both; checks the affected set.
fn step(rng: &mut Rng, index: &mut BindingIndex, naive: &mut Naive, context: &str) {
    let system = ObjectKey::new(rng.pick(&["ns1", "ns2"]), format!("sys-{}", rng.below(25)));
    let stack = ObjectKey::new(rng.pick(&["ns1", "ns2"]), format!("stack-{}", rng.below(10)));
    let tenant = rng.pick(TENANTS).to_string();
    let kind = rng.pick(TYPES).to_string();
    match rng.below(100) {
        0..=34 => {
            let labels = random_labels(rng);
            let got = index.upsert_system(system.clone(), &tenant, &kind, labels.clone());
            naive.systems.insert(system.clone(), (tenant, kind, labels));
            assert_eq!(got, Affected::one(system), "{context}");
        }
        35..=44 => {
            // Re-upsert identical data.
            let Some((key, (t, y, labels))) = naive.systems.iter().nth(rng.below(25)) else {
                return;
            };
            let got = index.upsert_system(key.clone(), t, y, labels.clone());
            assert_eq!(got, Affected::one(key.clone()), "{context}");
        }
        45..=54 => {
            let got = index.remove_system(&system);
            naive.systems.remove(&system);
            assert_eq!(got, Affected::one(system), "{context}");
        }
        55..=84 => {
            let selector = random_selector(rng);
            let mut want = naive.systems_of(&stack);
            naive.stacks.insert(stack.clone(), (tenant.clone(), kind.clone(), selector.clone()));
            want.extend(naive.systems_of(&stack));
            let got = index.upsert_stack(stack, &tenant, &kind, selector);
            assert_eq!(got.systems, want, "{context}");
        }
        85..=89 => {
            let Some((key, (t, y, sel))) = naive.stacks.iter().nth(rng.below(10)) else {
                return;
            };
            let want = naive.systems_of(key);
            let got = index.upsert_stack(key.clone(), t, y, sel.clone());
            assert_eq!(got.systems, want, "{context}: identical stack");
        }
        _ => {
            let want = naive.systems_of(&stack);
            naive.stacks.remove(&stack);
            let got = index.remove_stack(&stack);
            assert_eq!(got.systems, want, "{context}");
        }
    }
}

#[test]
fn randomized_operations_match_naive_recomputation() {
    for seed in 1..=8u64 {
        let mut rng = Rng(seed);
        let mut index = BindingIndex::new();
        let mut naive = Naive::default();
        for op in 0..500 {
            let context = format!("seed {seed} op {op}");
            step(&mut rng, &mut index, &mut naive, &context);
            assert_same(&index, &naive, &context);
        }
        // Tear everything down: no partition may be left behind.
        let systems: Vec<_> = naive.systems.keys().cloned().collect();
        let stacks: Vec<_> = naive.stacks.keys().cloned().collect();
        systems.iter().for_each(|s| drop(index.remove_system(s)));
        stacks.iter().for_each(|s| drop(index.remove_stack(s)));
        assert!(index.partitions.is_empty(), "seed {seed}: partitions leak");
        assert_eq!(index.binding_count(), 0);
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn selector(include: &[(&str, &[&str])], exclude: &[(&str, &[&str])]) -> StackSelector {
    let terms = |pairs: &[(&str, &[&str])]| -> Terms {
        pairs.iter().map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect())).collect()
    };
    StackSelector::parse(&terms(include), &terms(exclude)).expect("valid")
}

fn key(name: &str) -> ObjectKey {
    ObjectKey::new("ns", name)
}

fn keys(names: &[&str]) -> BTreeSet<ObjectKey> {
    names.iter().map(|n| key(n)).collect()
}

#[test]
fn binds_only_within_tenant_and_type() {
    let mut index = BindingIndex::new();
    let prod = labels(&[("env", "prod-eu")]);
    index.upsert_system(key("a"), "acme", "envoy", prod.clone());
    index.upsert_system(key("b"), "globex", "envoy", prod.clone());
    index.upsert_system(key("c"), "acme", "kafka", prod.clone());
    let affected = index.upsert_stack(key("s"), "acme", "envoy", selector(&[], &[]));
    assert_eq!(affected.systems, keys(&["a"]));
    assert_eq!(index.systems_of(&key("s")), vec![key("a")]);
    assert_eq!(index.stacks_of(&key("b")), Vec::<ObjectKey>::new());
}

#[test]
fn system_moving_partition_rebinds() {
    let mut index = BindingIndex::new();
    index.upsert_stack(key("s1"), "acme", "envoy", selector(&[("env", &[])], &[]));
    index.upsert_stack(key("s2"), "globex", "envoy", selector(&[("env", &[])], &[]));
    let env = labels(&[("env", "dev")]);
    index.upsert_system(key("a"), "acme", "envoy", env.clone());
    assert_eq!(index.stacks_of(&key("a")), vec![key("s1")]);
    let affected = index.upsert_system(key("a"), "globex", "envoy", env);
    assert_eq!(affected.systems, keys(&["a"]));
    assert_eq!(index.stacks_of(&key("a")), vec![key("s2")]);
    assert!(index.systems_of(&key("s1")).is_empty());
    assert_eq!(index.systems_of(&key("s2")), vec![key("a")]);
}

#[test]
fn stack_changes_affect_old_and_new_systems() {
    let mut index = BindingIndex::new();
    for (name, env) in [("a", "prod-eu"), ("b", "prod-us"), ("c", "dev")] {
        index.upsert_system(key(name), "t", "y", labels(&[("env", env)]));
    }
    let prod = selector(&[("env", &["prod-*"])], &[]);
    assert_eq!(index.upsert_stack(key("s"), "t", "y", prod.clone()).systems, keys(&["a", "b"]));
    // Identical re-upsert still affects the bound systems (content may differ).
    assert_eq!(index.upsert_stack(key("s"), "t", "y", prod).systems, keys(&["a", "b"]));
    let eu_or_dev = selector(&[("env", &["prod-eu", "dev"])], &[]);
    assert_eq!(index.upsert_stack(key("s"), "t", "y", eu_or_dev).systems, keys(&["a", "b", "c"]));
    assert_eq!(index.systems_of(&key("s")), vec![key("a"), key("c")]);
    let moved = index.upsert_stack(key("s"), "other", "y", selector(&[], &[]));
    assert_eq!(moved.systems, keys(&["a", "c"]));
    assert_eq!(index.remove_stack(&key("s")).systems, BTreeSet::new());
    assert_eq!(index.remove_stack(&key("s")), Affected::default());
}

#[test]
fn exclude_and_label_changes() {
    let mut index = BindingIndex::new();
    let sel = selector(&[("env", &["prod-*"])], &[("tier", &["frontend"])]);
    index.upsert_stack(key("s"), "t", "y", sel);
    index.upsert_system(key("a"), "t", "y", labels(&[("env", "prod-eu"), ("tier", "backend")]));
    assert_eq!(index.stacks_of(&key("a")), vec![key("s")]);
    index.upsert_system(key("a"), "t", "y", labels(&[("env", "prod-eu"), ("tier", "frontend")]));
    assert!(index.stacks_of(&key("a")).is_empty());
    index.upsert_system(key("a"), "t", "y", labels(&[("env", "prod-eu")]));
    assert_eq!(index.systems_of(&key("s")), vec![key("a")]);
    assert_eq!(index.remove_system(&key("a")).systems, keys(&["a"]));
    assert_eq!(index.remove_system(&key("a")).systems, keys(&["a"]));
    assert!(index.systems_of(&key("s")).is_empty());
    assert_eq!(index.system_count(), 0);
    assert!(index.contains_stack(&key("s")));
}

#[test]
fn set_helpers() {
    let mut changes = Vec::new();
    for_each_change(&[1, 3, 5], &[2, 3, 6], |id, added| changes.push((id, added)));
    assert_eq!(changes, vec![(1, false), (2, true), (5, false), (6, true)]);
    assert_eq!(union(&[1, 3, 5], &[2, 3, 6]), vec![1, 2, 3, 5, 6]);
    let mut bits = Bitset::default();
    bits.extend(&[0, 63, 64, 200]);
    bits.remove(63);
    assert_eq!(bits.ones().collect::<Vec<_>>(), vec![0, 64, 200]);
    let mut other = Bitset::default();
    other.extend(&[64, 100]);
    let mut both = bits.clone();
    both.intersect(&other);
    assert_eq!(both.ones().collect::<Vec<_>>(), vec![64]);
    bits.subtract(&other);
    assert_eq!(bits.ones().collect::<Vec<_>>(), vec![0, 200]);
    assert_eq!(key("x").to_string(), "ns/x");
}
