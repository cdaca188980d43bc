//! The in-memory binding index: which Stacks bind which Systems.
//!
//! A Stack binds the Systems of its own tenant and type that its
//! [`StackSelector`] selects. The index keeps both directions (stack to
//! systems, system to stacks) up to date incrementally and tells, for every
//! change, which systems' bundles it affects ([`Affected`]).
//!
//! Layout: objects are partitioned by (tenant, type); inside a partition
//! systems and stacks get dense `u32` ids. Each partition keeps an inverted
//! index label key → value (sorted) → systems, so a stack's selector is
//! evaluated once per distinct label value rather than once per system: a
//! literal pattern is one lookup, a pattern with a literal prefix scans only
//! the values with that prefix, and the per-key hits are intersected as
//! bitsets. A system change is instead checked directly against the stacks
//! of its partition.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::ops::{Bound, Index, IndexMut};

use crate::glob::Glob;
use crate::selector::{Labels, Selector, StackSelector};

/// The namespace and name of a Kubernetes object.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// The object's namespace.
    pub namespace: String,
    /// The object's name.
    pub name: String,
}

impl ObjectKey {
    /// A key from namespace and name.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectKey { namespace: namespace.into(), name: name.into() }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The systems whose bundles an index change affects, sorted and deduplicated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Affected {
    /// The affected systems.
    pub systems: BTreeSet<ObjectKey>,
}

impl Affected {
    /// Just one system.
    pub fn one(system: ObjectKey) -> Self {
        Affected { systems: BTreeSet::from([system]) }
    }

    /// Whether no system is affected.
    pub fn is_empty(&self) -> bool {
        self.systems.is_empty()
    }

    /// The number of affected systems.
    pub fn len(&self) -> usize {
        self.systems.len()
    }

    /// Whether `system` is affected.
    pub fn contains(&self, system: &ObjectKey) -> bool {
        self.systems.contains(system)
    }

    /// Adds the systems of `other`.
    pub fn extend(&mut self, other: Affected) {
        self.systems.extend(other.systems);
    }
}

impl IntoIterator for Affected {
    type Item = ObjectKey;
    type IntoIter = std::collections::btree_set::IntoIter<ObjectKey>;

    fn into_iter(self) -> Self::IntoIter {
        self.systems.into_iter()
    }
}

/// (tenant, type)
type PartitionKey = (String, String);

/// Where an object lives in the index.
#[derive(Clone, Debug)]
struct Location {
    partition: PartitionKey,
    id: u32,
}

/// Stack ↔ System bindings, maintained incrementally.
#[derive(Debug, Default)]
pub struct BindingIndex {
    systems: HashMap<ObjectKey, Location>,
    stacks: HashMap<ObjectKey, Location>,
    partitions: HashMap<PartitionKey, Partition>,
}

impl BindingIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a system. Affects that system only: its labels are
    /// in its bundle, and stacks have no bundle of their own.
    pub fn upsert_system(
        &mut self,
        key: ObjectKey,
        tenant: &str,
        system_type: &str,
        labels: Labels,
    ) -> Affected {
        let partition = (tenant.to_owned(), system_type.to_owned());
        match self.systems.get(&key) {
            Some(loc) if loc.partition == partition => {
                let id = loc.id;
                self.partition_mut(&partition).update_system(id, labels);
            }
            Some(_) => {
                self.detach_system(&key);
                self.attach_system(key.clone(), partition, labels);
            }
            None => self.attach_system(key.clone(), partition, labels),
        }
        Affected::one(key)
    }

    /// Removes a system. Affects that system, whether or not it was indexed,
    /// so that the caller cleans up after it.
    pub fn remove_system(&mut self, key: &ObjectKey) -> Affected {
        self.detach_system(key);
        Affected::one(key.clone())
    }

    /// Adds or replaces a stack. Affects every system bound before or after:
    /// their bundles embed the stack, so any change of it concerns them all.
    pub fn upsert_stack(
        &mut self,
        key: ObjectKey,
        tenant: &str,
        system_type: &str,
        selector: StackSelector,
    ) -> Affected {
        let partition = (tenant.to_owned(), system_type.to_owned());
        match self.stacks.get(&key) {
            Some(loc) if loc.partition == partition => {
                let id = loc.id;
                let part = self.partition_mut(&partition);
                let ids = part.update_stack(id, selector);
                part.keys(&ids)
            }
            Some(_) => {
                let mut affected = self.remove_stack(&key);
                affected.extend(self.attach_stack(key, partition, selector));
                affected
            }
            None => self.attach_stack(key, partition, selector),
        }
    }

    /// Removes a stack. Affects the systems it bound.
    pub fn remove_stack(&mut self, key: &ObjectKey) -> Affected {
        let Some(loc) = self.stacks.remove(key) else {
            return Affected::default();
        };
        let part = self.partition_mut(&loc.partition);
        let entry = part.remove_stack(loc.id);
        let affected = part.keys(&entry.systems);
        self.drop_if_empty(&loc.partition);
        affected
    }

    /// The stacks binding a system, sorted; empty for an unknown system.
    pub fn stacks_of(&self, system: &ObjectKey) -> Vec<ObjectKey> {
        self.lookup(&self.systems, system)
            .map(|(part, id)| part.stack_keys(&part.systems[id].stacks))
            .unwrap_or_default()
    }

    /// The systems a stack binds, sorted; empty for an unknown stack.
    pub fn systems_of(&self, stack: &ObjectKey) -> Vec<ObjectKey> {
        self.lookup(&self.stacks, stack)
            .map(|(part, id)| {
                let mut keys: Vec<_> = part.keys(&part.stacks[id].systems).into_iter().collect();
                keys.sort_unstable();
                keys
            })
            .unwrap_or_default()
    }

    /// The number of systems indexed.
    pub fn system_count(&self) -> usize {
        self.systems.len()
    }

    /// The number of stacks indexed.
    pub fn stack_count(&self) -> usize {
        self.stacks.len()
    }

    /// The number of (stack, system) bindings.
    pub fn binding_count(&self) -> usize {
        self.partitions.values().flat_map(|p| p.stacks.iter()).map(|(_, s)| s.systems.len()).sum()
    }

    /// Whether the system is indexed.
    pub fn contains_system(&self, key: &ObjectKey) -> bool {
        self.systems.contains_key(key)
    }

    /// Whether the stack is indexed.
    pub fn contains_stack(&self, key: &ObjectKey) -> bool {
        self.stacks.contains_key(key)
    }

    fn lookup(&self, locations: &HashMap<ObjectKey, Location>, key: &ObjectKey) -> Option<(&Partition, u32)> {
        let loc = locations.get(key)?;
        Some((self.partitions.get(&loc.partition)?, loc.id))
    }

    fn partition_mut(&mut self, key: &PartitionKey) -> &mut Partition {
        self.partitions.entry(key.clone()).or_default()
    }

    fn drop_if_empty(&mut self, key: &PartitionKey) {
        if self.partitions.get(key).is_some_and(Partition::is_empty) {
            self.partitions.remove(key);
        }
    }

    fn attach_system(&mut self, key: ObjectKey, partition: PartitionKey, labels: Labels) {
        let id = self.partition_mut(&partition).add_system(key.clone(), labels);
        self.systems.insert(key, Location { partition, id });
    }

    fn detach_system(&mut self, key: &ObjectKey) {
        if let Some(loc) = self.systems.remove(key) {
            self.partition_mut(&loc.partition).remove_system(loc.id);
            self.drop_if_empty(&loc.partition);
        }
    }

    fn attach_stack(&mut self, key: ObjectKey, partition: PartitionKey, selector: StackSelector) -> Affected {
        let part = self.partition_mut(&partition);
        let id = part.add_stack(key.clone(), selector);
        let affected = part.keys(&part.stacks[id].systems);
        self.stacks.insert(key, Location { partition, id });
        affected
    }
}

// ---------------------------------------------------------------------------
// One (tenant, type) partition

#[derive(Debug)]
struct SystemEntry {
    key: ObjectKey,
    labels: Labels,
    /// Ids of the stacks binding it, sorted.
    stacks: Vec<u32>,
}

#[derive(Debug)]
struct StackEntry {
    key: ObjectKey,
    selector: StackSelector,
    /// Ids of the systems it binds, sorted.
    systems: Vec<u32>,
}

#[derive(Debug, Default)]
struct Partition {
    systems: Slab<SystemEntry>,
    stacks: Slab<StackEntry>,
    labels: LabelIndex,
    /// The ids of live systems.
    live: Bitset,
}

impl Partition {
    fn is_empty(&self) -> bool {
        self.systems.is_empty() && self.stacks.is_empty()
    }

    fn keys(&self, systems: &[u32]) -> Affected {
        Affected { systems: systems.iter().map(|&id| self.systems[id].key.clone()).collect() }
    }

    fn stack_keys(&self, stacks: &[u32]) -> Vec<ObjectKey> {
        let mut keys: Vec<_> = stacks.iter().map(|&id| self.stacks[id].key.clone()).collect();
        keys.sort_unstable();
        keys
    }

    /// Stacks whose selector matches the labels, by direct evaluation.
    fn stacks_matching(&self, labels: &Labels) -> Vec<u32> {
        self.stacks.iter().filter(|(_, stack)| stack.selector.matches(labels)).map(|(id, _)| id).collect()
    }

    /// Systems a selector binds, through the inverted index.
    fn systems_matching(&self, selector: &StackSelector) -> Vec<u32> {
        let mut hits = self.labels.select(&selector.include, &self.live);
        if selector.excludes_any() && !hits.is_empty() {
            hits.subtract(&self.labels.select(&selector.exclude, &self.live));
        }
        hits.ones().collect()
    }

    fn add_system(&mut self, key: ObjectKey, labels: Labels) -> u32 {
        let stacks = self.stacks_matching(&labels);
        for &stack in &stacks {
            // Ids are handed out lowest-free-last, so this is usually a push.
            insert_sorted(&mut self.stacks[stack].systems, self.systems.next_id());
        }
        let id = self.systems.insert(SystemEntry { key, labels, stacks });
        self.labels.insert(id, &self.systems[id].labels);
        self.live.insert(id);
        id
    }

    fn update_system(&mut self, id: u32, labels: Labels) {
        if self.systems[id].labels == labels {
            return;
        }
        let old = std::mem::replace(&mut self.systems[id].labels, labels);
        self.labels.remove(id, &old);
        self.labels.insert(id, &self.systems[id].labels);
        let new_stacks = self.stacks_matching(&self.systems[id].labels);
        let old_stacks = std::mem::replace(&mut self.systems[id].stacks, new_stacks);
        let stacks = &mut self.stacks;
        for_each_change(&old_stacks, &self.systems[id].stacks, |stack, added| {
            toggle(&mut stacks[stack].systems, id, added);
        });
    }

    fn remove_system(&mut self, id: u32) {
        let entry = self.systems.remove(id);
        self.labels.remove(id, &entry.labels);
        self.live.remove(id);
        for &stack in &entry.stacks {
            remove_sorted(&mut self.stacks[stack].systems, id);
        }
    }

    fn add_stack(&mut self, key: ObjectKey, selector: StackSelector) -> u32 {
        let systems = self.systems_matching(&selector);
        let id = self.stacks.next_id();
        for &system in &systems {
            insert_sorted(&mut self.systems[system].stacks, id);
        }
        self.stacks.insert(StackEntry { key, selector, systems })
    }

    /// Replaces a stack's selector; returns the systems bound before or after.
    fn update_stack(&mut self, id: u32, selector: StackSelector) -> Vec<u32> {
        if self.stacks[id].selector == selector {
            return self.stacks[id].systems.clone();
        }
        let new = self.systems_matching(&selector);
        let systems = &mut self.systems;
        for_each_change(&self.stacks[id].systems, &new, |system, added| {
            toggle(&mut systems[system].stacks, id, added);
        });
        let entry = &mut self.stacks[id];
        let before = std::mem::replace(&mut entry.systems, new);
        entry.selector = selector;
        union(&before, &entry.systems)
    }

    fn remove_stack(&mut self, id: u32) -> StackEntry {
        let entry = self.stacks.remove(id);
        for &system in &entry.systems {
            remove_sorted(&mut self.systems[system].stacks, id);
        }
        entry
    }
}

// ---------------------------------------------------------------------------
// Inverted label index

/// label key → value → ids of the systems with that label value (sorted).
#[derive(Debug, Default)]
struct LabelIndex {
    keys: HashMap<String, BTreeMap<String, Vec<u32>>>,
}

impl LabelIndex {
    fn insert(&mut self, id: u32, labels: &Labels) {
        for (key, value) in labels {
            let values = match self.keys.get_mut(key) {
                Some(values) => values,
                None => self.keys.entry(key.clone()).or_default(),
            };
            match values.get_mut(value) {
                Some(posting) => insert_sorted(posting, id),
                None => {
                    values.insert(value.clone(), vec![id]);
                }
            }
        }
    }

    fn remove(&mut self, id: u32, labels: &Labels) {
        for (key, value) in labels {
            let Some(values) = self.keys.get_mut(key) else {
                continue;
            };
            if let Some(posting) = values.get_mut(value) {
                remove_sorted(posting, id);
                if posting.is_empty() {
                    values.remove(value);
                }
            }
            if values.is_empty() {
                self.keys.remove(key);
            }
        }
    }

    /// The live systems a selector matches.
    fn select(&self, selector: &Selector, live: &Bitset) -> Bitset {
        let mut result: Option<Bitset> = None;
        for (key, globs) in selector.terms() {
            let mut hits = Bitset::with_len(live.len());
            if let Some(values) = self.keys.get(key) {
                collect_hits(values, globs, &mut hits);
            }
            match result.as_mut() {
                Some(acc) => acc.intersect(&hits),
                None => result = Some(hits),
            }
            if result.as_ref().is_some_and(Bitset::is_empty) {
                break;
            }
        }
        result.unwrap_or_else(|| live.clone())
    }
}

/// Adds to `hits` the systems whose value for a key matches one of `globs`
/// (or that have the key at all, when `globs` is empty).
fn collect_hits(values: &BTreeMap<String, Vec<u32>>, globs: &[Glob], hits: &mut Bitset) {
    if globs.is_empty() {
        values.values().for_each(|posting| hits.extend(posting));
        return;
    }
    for glob in globs {
        if let Some(literal) = glob.as_literal() {
            if let Some(posting) = values.get(literal) {
                hits.extend(posting);
            }
            continue;
        }
        let prefix = glob.literal_prefix();
        let range = values.range::<str, _>((Bound::Included(prefix), Bound::Unbounded));
        for (value, posting) in range.take_while(|(v, _)| v.starts_with(prefix)) {
            if glob.matches(value) {
                hits.extend(posting);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Containers

/// A vector of slots with reusable `u32` ids.
#[derive(Debug)]
struct Slab<T> {
    slots: Vec<Option<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab { slots: Vec::new(), free: Vec::new(), len: 0 }
    }
}

impl<T> Slab<T> {
    fn next_id(&self) -> u32 {
        match self.free.last() {
            Some(&id) => id,
            None => u32::try_from(self.slots.len()).expect("fewer than 2^32 objects per partition"),
        }
    }

    fn insert(&mut self, value: T) -> u32 {
        let id = self.next_id();
        match self.free.pop() {
            Some(_) => self.slots[id as usize] = Some(value),
            None => self.slots.push(Some(value)),
        }
        self.len += 1;
        id
    }

    fn remove(&mut self, id: u32) -> T {
        let value = self.slots[id as usize].take().expect("removing a live id");
        self.free.push(id);
        self.len -= 1;
        value
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Live entries in ascending id order.
    fn iter(&self) -> impl Iterator<Item = (u32, &T)> {
        self.slots.iter().enumerate().filter_map(|(i, slot)| Some((i as u32, slot.as_ref()?)))
    }
}

impl<T> Index<u32> for Slab<T> {
    type Output = T;

    fn index(&self, id: u32) -> &T {
        self.slots[id as usize].as_ref().expect("a live id")
    }
}

impl<T> IndexMut<u32> for Slab<T> {
    fn index_mut(&mut self, id: u32) -> &mut T {
        self.slots[id as usize].as_mut().expect("a live id")
    }
}

/// A growable set of small integers.
#[derive(Clone, Debug, Default)]
struct Bitset {
    words: Vec<u64>,
}

impl Bitset {
    /// An empty set sized like a set of `words` words.
    fn with_len(words: usize) -> Self {
        Bitset { words: vec![0; words] }
    }

    /// The number of words.
    fn len(&self) -> usize {
        self.words.len()
    }

    fn insert(&mut self, bit: u32) {
        let w = bit as usize / 64;
        if w >= self.words.len() {
            self.words.resize(w + 1, 0);
        }
        self.words[w] |= 1 << (bit % 64);
    }

    fn remove(&mut self, bit: u32) {
        if let Some(word) = self.words.get_mut(bit as usize / 64) {
            *word &= !(1 << (bit % 64));
        }
    }

    fn extend(&mut self, bits: &[u32]) {
        bits.iter().for_each(|&b| self.insert(b));
    }

    fn intersect(&mut self, other: &Bitset) {
        self.words.truncate(other.words.len());
        self.words.iter_mut().zip(&other.words).for_each(|(a, b)| *a &= b);
    }

    fn subtract(&mut self, other: &Bitset) {
        self.words.iter_mut().zip(&other.words).for_each(|(a, b)| *a &= !b);
    }

    fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }

    /// Set bits, ascending.
    fn ones(&self) -> impl Iterator<Item = u32> + '_ {
        self.words.iter().enumerate().flat_map(|(w, &word)| {
            let mut bits = word;
            std::iter::from_fn(move || {
                if bits == 0 {
                    return None;
                }
                let bit = bits.trailing_zeros();
                bits &= bits - 1;
                Some(w as u32 * 64 + bit)
            })
        })
    }
}

fn insert_sorted(ids: &mut Vec<u32>, id: u32) {
    if let Err(at) = ids.binary_search(&id) {
        ids.insert(at, id);
    }
}

fn remove_sorted(ids: &mut Vec<u32>, id: u32) {
    if let Ok(at) = ids.binary_search(&id) {
        ids.remove(at);
    }
}

fn toggle(ids: &mut Vec<u32>, id: u32, present: bool) {
    if present {
        insert_sorted(ids, id);
    } else {
        remove_sorted(ids, id);
    }
}

/// Calls `f(id, true)` for ids only in `new`, `f(id, false)` for ids only in `old`.
fn for_each_change(old: &[u32], new: &[u32], mut f: impl FnMut(u32, bool)) {
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        match (old.get(i), new.get(j)) {
            (Some(a), Some(b)) if a == b => {
                i += 1;
                j += 1;
            }
            (Some(&a), Some(&b)) if a < b => {
                f(a, false);
                i += 1;
            }
            (Some(&a), None) => {
                f(a, false);
                i += 1;
            }
            (_, Some(&b)) => {
                f(b, true);
                j += 1;
            }
            (None, None) => unreachable!("loop condition"),
        }
    }
}

/// The sorted union of two sorted id lists.
fn union(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selector::Terms;

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
}
