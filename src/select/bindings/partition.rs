//! One (tenant, type) partition of the index: its systems and stacks under dense `u32` ids,
//! the bindings in both directions, and their incremental updates.

use super::ids::{Bitset, Slab, for_each_change, insert_sorted, remove_sorted, toggle, union};
use super::labels::LabelIndex;
use super::{Affected, ObjectKey};
use crate::select::selector::{Labels, StackSelector};

#[derive(Debug)]
pub(super) struct SystemEntry {
    key: ObjectKey,
    labels: Labels,
    /// Ids of the stacks binding it, sorted.
    pub(super) stacks: Vec<u32>,
}

#[derive(Debug)]
pub(super) struct StackEntry {
    key: ObjectKey,
    selector: StackSelector,
    /// Ids of the systems it binds, sorted.
    pub(super) systems: Vec<u32>,
}

#[derive(Debug, Default)]
pub(super) struct Partition {
    pub(super) systems: Slab<SystemEntry>,
    pub(super) stacks: Slab<StackEntry>,
    labels: LabelIndex,
    /// The ids of live systems.
    live: Bitset,
}

impl Partition {
    pub(super) fn is_empty(&self) -> bool {
        self.systems.is_empty() && self.stacks.is_empty()
    }

    pub(super) fn keys(&self, systems: &[u32]) -> Affected {
        Affected { systems: systems.iter().map(|&id| self.systems[id].key.clone()).collect() }
    }

    pub(super) fn stack_keys(&self, stacks: &[u32]) -> Vec<ObjectKey> {
        let mut keys: Vec<_> = stacks.iter().map(|&id| self.stacks[id].key.clone()).collect();
        keys.sort_unstable();
        keys
    }

    /// Stacks whose selector matches the labels, by direct evaluation.
    pub(super) fn stacks_matching(&self, labels: &Labels) -> Vec<u32> {
        self.stacks.iter().filter(|(_, stack)| stack.selector.matches(labels)).map(|(id, _)| id).collect()
    }

    /// Systems a selector binds, through the inverted index.
    pub(super) fn systems_matching(&self, selector: &StackSelector) -> Vec<u32> {
        let mut hits = self.labels.select(&selector.include, &self.live);
        if selector.excludes_any() && !hits.is_empty() {
            hits.subtract(&self.labels.select(&selector.exclude, &self.live));
        }
        hits.ones().collect()
    }

    pub(super) fn add_system(&mut self, key: ObjectKey, labels: Labels) -> u32 {
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

    pub(super) fn update_system(&mut self, id: u32, labels: Labels) {
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

    pub(super) fn remove_system(&mut self, id: u32) {
        let entry = self.systems.remove(id);
        self.labels.remove(id, &entry.labels);
        self.live.remove(id);
        for &stack in &entry.stacks {
            remove_sorted(&mut self.stacks[stack].systems, id);
        }
    }

    pub(super) fn add_stack(&mut self, key: ObjectKey, selector: StackSelector) -> u32 {
        let systems = self.systems_matching(&selector);
        let id = self.stacks.next_id();
        for &system in &systems {
            insert_sorted(&mut self.systems[system].stacks, id);
        }
        self.stacks.insert(StackEntry { key, selector, systems })
    }

    /// Replaces a stack's selector; returns the systems bound before or after.
    pub(super) fn update_stack(&mut self, id: u32, selector: StackSelector) -> Vec<u32> {
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

    pub(super) fn remove_stack(&mut self, id: u32) -> StackEntry {
        let entry = self.stacks.remove(id);
        for &system in &entry.systems {
            remove_sorted(&mut self.systems[system].stacks, id);
        }
        entry
    }
}
