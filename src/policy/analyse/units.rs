//! What makes the gate compositional: a bundle's modules split into units that are checked
//! one at a time, each once per content.
//!
//! A unit is a set of modules that must be checked together: modules whose packages nest (their
//! rules may conflict, their names resolve into each other) and modules that read each other,
//! directly or around a cycle (recursion may run through them). Units are checked in dependency
//! order; a unit that reads another sees its rules (to resolve names, calls and arities) and
//! their types, but does not check them again. In an edict bundle a Stack's modules are one
//! unit, the System's own Policies another, and the generated entrypoint, which reads them all,
//! a third: when one Stack changes, only that Stack and the entrypoint are checked again.
//!
//! OPA's compiler runs each stage over the whole bundle and stops at the first stage that finds
//! errors; each unit records the first stage that found errors in it, and the bundle reports
//! the errors of the units that failed at the earliest of those stages, which is what OPA
//! reports. A stage's errors in one unit never depend on another unit's errors: names, calls
//! and types only flow from the units it reads, and only the type stage reads their types,
//! which a unit that failed before that stage never needs.

use std::collections::BTreeSet;

use super::model::Outline;
use super::recursion::components;

/// One unit: indexes of its modules and of the units it reads (all earlier in the list).
#[derive(Debug, PartialEq)]
pub struct Unit {
    pub members: Vec<usize>,
    pub reads: Vec<usize>,
}

/// Whether one path lies under the other (or they are the same): a module reading one may read
/// rules at the other, and rules at both may conflict.
pub fn nested(a: &[String], b: &[String]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// The units of a set of modules, each after the units it reads.
pub fn units(parsed: &[&Outline]) -> Vec<Unit> {
    let n = parsed.len();
    let edges: Vec<BTreeSet<usize>> = (0..n)
        .map(|i| {
            (0..n)
                .filter(|&j| {
                    j != i
                        && (nested(&parsed[i].package, &parsed[j].package)
                            || parsed[i].reads.iter().any(|r| nested(r, &parsed[j].package)))
                })
                .collect()
        })
        .collect();
    let found = components(&edges);
    let mut unit_of = vec![0; n];
    for (u, members) in found.iter().enumerate() {
        for &m in members {
            unit_of[m] = u;
        }
    }
    found
        .iter()
        .enumerate()
        .map(|(u, members)| {
            let reads: BTreeSet<usize> = members
                .iter()
                .flat_map(|&m| edges[m].iter().map(|&j| unit_of[j]))
                .filter(|&r| r != u)
                .collect();
            Unit { members: members.clone(), reads: reads.into_iter().collect() }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(modules: &[&str]) -> Vec<Outline> {
        modules
            .iter()
            .enumerate()
            .map(|(i, text)| super::super::parse(&format!("m{i}.rego"), text).expect("parses").outline())
            .collect()
    }

    fn split(modules: &[&str]) -> Vec<Unit> {
        let p = parsed(modules);
        units(&p.iter().collect::<Vec<_>>())
    }

    #[test]
    fn stacks_the_system_and_the_entrypoint_are_units_of_their_own() {
        let found = split(&[
            "package stacks.a\nenforce contains 1 if input.x\n",
            "package stacks.b\nimport data.lib.util\nenforce contains 2 if util.f(input)\n",
            "package lib.util\nf(x) := true if x.y\n",
            "package main\nmain := [data.stacks.a.enforce, data.stacks.b.enforce]\n",
        ]);
        let unit = |m: usize| found.iter().position(|u| u.members.contains(&m)).expect("placed");
        assert_eq!(found.len(), 4, "{found:?}");
        assert_eq!(found[unit(0)].reads, Vec::<usize>::new());
        assert_eq!(found[unit(1)].reads, vec![unit(2)]);
        let mut main_reads = vec![unit(0), unit(1)];
        main_reads.sort();
        assert_eq!(found[unit(3)].reads, main_reads);
        assert!(unit(2) < unit(1) && unit(0) < unit(3) && unit(1) < unit(3), "read units come first");
    }

    #[test]
    fn nested_packages_and_cycles_share_a_unit() {
        let found = split(&[
            "package a\nx := data.b.y\n",
            "package b\ny := data.a.z\n",
            "package c\nv := 1\n",
            "package c.d\nw := 2\n",
            "package e\nu := data[\"e2\"]\n",
        ]);
        let members: Vec<&Vec<usize>> = found.iter().map(|u| &u.members).collect();
        assert!(members.contains(&&vec![0, 1]), "{members:?}");
        assert!(members.contains(&&vec![2, 3]), "{members:?}");
        assert!(members.contains(&&vec![4]), "{members:?}");
    }
}
