//! What a workspace keeps to compute only the statuses a change touched: what the builds
//! found, by object, and the objects marked since the last round.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::engine::pipeline::SystemBuild;
use crate::engine::problem::{ObjectRef, Problem};
use crate::model::ObjectKey;

/// What the builds found, by the object each problem is about, and the Rego test counts they
/// ran, by Policy: kept as builds come and go, so that a round reads what it needs of
/// 10,000 builds, not all of them.
#[derive(Debug, Default)]
pub(super) struct Found {
    /// Problems by object, then by the System whose build found them.
    problems: HashMap<ObjectRef, BTreeMap<ObjectKey, Vec<Problem>>>,
    /// Test counts by Policy, then by the System whose build ran them.
    tests: HashMap<ObjectKey, BTreeMap<ObjectKey, crate::api::TestSummary>>,
}

impl Found {
    /// What `builds` found, read afresh.
    #[cfg(debug_assertions)]
    pub(super) fn of(builds: &BTreeMap<ObjectKey, SystemBuild>) -> Self {
        let mut found = Found::default();
        for b in builds.values() {
            found.add(b);
        }
        found
    }

    pub(super) fn add(&mut self, b: &SystemBuild) {
        for p in &b.problems {
            self.problems
                .entry(p.object.clone())
                .or_default()
                .entry(b.key.clone())
                .or_default()
                .push(p.clone());
        }
        for (policy, t) in &b.tests {
            self.tests.entry(policy.clone()).or_default().insert(b.key.clone(), t.clone());
        }
    }

    pub(super) fn remove(&mut self, b: &SystemBuild) {
        for p in &b.problems {
            if let Some(by_system) = self.problems.get_mut(&p.object) {
                by_system.remove(&b.key);
                if by_system.is_empty() {
                    self.problems.remove(&p.object);
                }
            }
        }
        for policy in b.tests.keys() {
            if let Some(by_system) = self.tests.get_mut(policy) {
                by_system.remove(&b.key);
                if by_system.is_empty() {
                    self.tests.remove(policy);
                }
            }
        }
    }

    /// The problems about `object`, System by System in key order.
    pub(super) fn problems(&self, object: &ObjectRef) -> impl Iterator<Item = &Problem> {
        self.problems.get(object).into_iter().flat_map(|by_system| by_system.values().flatten())
    }

    /// A Policy's test counts: the last System's (in key order) whose build ran its tests.
    pub(super) fn tests(&self, policy: &ObjectKey) -> Option<&crate::api::TestSummary> {
        self.tests.get(policy).and_then(|by_system| by_system.values().next_back())
    }
}

/// The objects whose status must be computed again: each change names what it touches, so that
/// a round costs what changed, not what exists.
#[derive(Debug, Default)]
pub(super) struct Dirty {
    /// Everything (after a load, a restart, a namespace's or a Tenant's change).
    pub(super) all: bool,
    /// `Tenant`, `Stack`, `System` and `Policy` references.
    pub(super) objects: BTreeSet<ObjectRef>,
}
