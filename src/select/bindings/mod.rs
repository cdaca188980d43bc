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

mod ids;
mod labels;
mod partition;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};

use self::partition::Partition;
pub use crate::model::ObjectKey;
use crate::select::selector::{Labels, StackSelector};

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

    /// How many systems a stack binds; 0 for an unknown stack.
    pub fn system_count_of(&self, stack: &ObjectKey) -> usize {
        self.lookup(&self.stacks, stack).map(|(part, id)| part.stacks[id].systems.len()).unwrap_or_default()
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
