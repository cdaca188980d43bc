//! Status of every object, computed from what the catalog and the builds found.
//!
//! Pure: the same problems give the same conditions. `lastTransitionTime` is filled in by
//! [`carry_transitions`] from the previous status, so it only moves on a real transition.

use std::sync::Arc;

use crate::api::conditions::{READY, RECONCILING, STALLED};
use crate::api::{
    Condition, ConditionStatus, PolicyStatus, StackStatus, SystemStatus, TargetKind, TenantStatus,
};
use crate::engine::catalog::{Catalog, key_of};
use crate::engine::pipeline::SystemBuild;
use crate::engine::problem::{ObjectRef, Problem, Reason};
use crate::model::ObjectKey;

/// Statuses of one kind by key: a persistent map, so that a copy costs one pointer and two
/// rounds that differ in a few statuses share everything else (see [`changed`]).
pub type StatusMap<T> = imbl::OrdMap<Arc<str>, Arc<T>>;

/// The status of every object, keyed like the catalog. A copy of the whole is cheap, and a
/// status that did not change between two rounds is the same allocation in both.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Statuses {
    /// Tenants by name.
    pub tenants: StatusMap<TenantStatus>,
    /// Stacks by `namespace/name`.
    pub stacks: StatusMap<StackStatus>,
    /// Systems by `namespace/name`.
    pub systems: StatusMap<SystemStatus>,
    /// Policies by `namespace/name`.
    pub policies: StatusMap<PolicyStatus>,
}

/// The entries of `new` that are not in `old` as they are, in key order, each with what `old`
/// held. Parts of the two maps they share (everything a round did not touch) are skipped
/// without being visited, and an entry whose status is the same allocation or equal is not
/// listed.
pub fn changed<'a, T: PartialEq>(
    old: &'a StatusMap<T>,
    new: &'a StatusMap<T>,
) -> impl Iterator<Item = (&'a Arc<str>, Option<&'a Arc<T>>, &'a Arc<T>)> + 'a {
    old.diff(new).filter_map(|d| match d {
        imbl::ordmap::DiffItem::Add(key, status) => Some((key, None, status)),
        imbl::ordmap::DiffItem::Update { old: (_, before), new: (key, status) } => {
            (!Arc::ptr_eq(before, status) && before != status).then_some((key, Some(before), status))
        }
        imbl::ordmap::DiffItem::Remove(..) => None,
    })
}

/// The statuses the objects carry as the catalog last saw them (what the API server holds):
/// what an operator that just started has written, as far as it can know.
pub fn observed(catalog: &Catalog) -> Statuses {
    Statuses {
        tenants: catalog
            .tenants()
            .iter()
            .filter_map(|(k, e)| e.tenant.status.clone().map(|s| (Arc::from(k.as_str()), Arc::new(s))))
            .collect(),
        stacks: catalog
            .stacks()
            .iter()
            .filter_map(|(k, e)| e.stack.status.clone().map(|s| (Arc::from(k.to_string()), Arc::new(s))))
            .collect(),
        systems: catalog
            .systems()
            .iter()
            .filter_map(|(k, e)| e.system.status.clone().map(|s| (Arc::from(k.to_string()), Arc::new(s))))
            .collect(),
        policies: catalog
            .policies()
            .iter()
            .filter_map(|(k, e)| e.policy.status.clone().map(|s| (Arc::from(k.to_string()), Arc::new(s))))
            .collect(),
    }
}

/// Where OPA downloads a System's bundle: `s3://<bucket>/<prefix>/bundles/…` for a Tenant with
/// storage, the bundle API's path (`bundles/…`) for the embedded store.
fn bundle_location(catalog: &Catalog, input: &crate::bundle::BundleInput) -> String {
    let storage = catalog.tenants().get(&input.tenant).and_then(|t| t.tenant.spec.storage.as_ref());
    match storage {
        Some(s) => {
            let prefix = s.s3.prefix.trim_matches('/');
            let key =
                if prefix.is_empty() { input.live_key() } else { format!("{prefix}/{}", input.live_key()) };
            format!("s3://{}/{key}", s.s3.bucket)
        }
        None => input.live_key(),
    }
}

/// kstatus conditions for an object with these problems (`ok_reason` when there are none).
pub fn conditions(
    problems: &[&Problem],
    ok_reason: &str,
    ok_message: &str,
    generation: Option<i64>,
) -> Vec<Condition> {
    let make = |type_: &str, status, reason: &str, message: String| Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time: None,
    };
    match problems.first() {
        None => vec![
            make(READY, ConditionStatus::True, ok_reason, ok_message.to_string()),
            make(STALLED, ConditionStatus::False, ok_reason, String::new()),
            make(RECONCILING, ConditionStatus::False, ok_reason, String::new()),
        ],
        Some(first) if problems.iter().all(|p| p.reason.is_transient()) => {
            // Only passing failures: edict keeps retrying, so the object is still in progress.
            let message = problems.iter().map(|p| p.message.as_str()).collect::<Vec<_>>().join("\n");
            vec![
                make(READY, ConditionStatus::False, first.reason.as_str(), message.clone()),
                make(STALLED, ConditionStatus::False, first.reason.as_str(), String::new()),
                make(
                    RECONCILING,
                    ConditionStatus::True,
                    first.reason.as_str(),
                    format!("retrying: {message}"),
                ),
            ]
        }
        Some(_) => {
            // What waits for a person comes first.
            let mut ordered: Vec<&&Problem> = problems.iter().filter(|p| !p.reason.is_transient()).collect();
            ordered.extend(problems.iter().filter(|p| p.reason.is_transient()));
            let first = ordered[0];
            let message = ordered.iter().map(|p| p.message.as_str()).collect::<Vec<_>>().join("\n");
            vec![
                make(READY, ConditionStatus::False, first.reason.as_str(), message.clone()),
                make(STALLED, ConditionStatus::True, first.reason.as_str(), message),
                make(RECONCILING, ConditionStatus::False, first.reason.as_str(), String::new()),
            ]
        }
    }
}

/// Keep `lastTransitionTime` from `old` when a condition's status did not change; stamp `now` otherwise.
pub fn carry_transitions(old: &[Condition], new: &mut [Condition], now: &str) {
    for c in new.iter_mut() {
        c.last_transition_time = match old.iter().find(|o| o.type_ == c.type_) {
            Some(o) if o.status == c.status => o.last_transition_time.clone(),
            _ => Some(now.to_string()),
        };
    }
}

/// `n` with the singular or plural noun: `1 system`, `2 systems`.
pub fn count(n: u32, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A revision as `kubectl get` shows it: its first 12 hex digits.
pub fn short(revision: &str) -> String {
    revision.chars().take(12).collect()
}

/// A Tenant's status; `problems` are the problems that belong to it, in the order they are listed.
pub fn tenant(catalog: &Catalog, name: &str, problems: &[&Problem]) -> Option<TenantStatus> {
    let t = catalog.tenants().get(name)?;
    let systems = catalog
        .systems()
        .keys()
        .filter(|k| t.owns(&k.namespace, catalog.namespace_labels(&k.namespace)))
        .count() as u32;
    let stacks =
        catalog.stacks().keys().filter(|k| k.namespace == t.tenant.spec.admin_namespace).count() as u32;
    let generation = t.tenant.metadata.generation;
    let conditions = conditions(problems, "Valid", "", generation);
    Some(TenantStatus { observed_generation: generation, conditions, systems, stacks })
}

/// A Stack's status; `problems_of` gives the problems that belong to an object (the Stack's
/// own, and those of its Policies).
pub fn stack(
    catalog: &Catalog,
    key: &ObjectKey,
    problems_of: &dyn Fn(&ObjectRef) -> Vec<Problem>,
) -> Option<StackStatus> {
    let s = catalog.stacks().get(key)?;
    let generation = s.stack.metadata.generation;
    let bound = catalog.index().system_count_of(key) as u32;
    let attached = catalog.policies_of(TargetKind::Stack, key);
    let policies = attached.len() as u32;
    let message = format!("selects {}", count(bound, "system", "systems"));
    // A Stack is only as ready as its Policies: a broken one keeps the Stack's rules out of
    // every bundle it selects, so the Stack says so too (as a System does).
    let me = ObjectRef::namespaced("Stack", key);
    let mut problems = problems_of(&me);
    for p in &attached {
        for p in problems_of(&ObjectRef::namespaced("Policy", &key_of(&p.policy.metadata))) {
            if p.reason.is_transient() {
                continue;
            }
            let message = format!("{}: {}: {}", p.object, p.reason, p.message);
            problems.push(Problem::new(me.clone(), Reason::DependencyFailed, message));
        }
    }
    let problems: Vec<&Problem> = problems.iter().collect();
    let conditions = conditions(&problems, "Bound", &message, generation);
    Some(StackStatus { observed_generation: generation, conditions, systems: bound, policies })
}

/// A System's status from its latest build and the revision it serves.
pub fn system(
    catalog: &Catalog,
    key: &ObjectKey,
    build: Option<&SystemBuild>,
    live: Option<&String>,
    problems: &[&Problem],
) -> Option<SystemStatus> {
    let s = catalog.systems().get(key)?;
    let generation = s.system.metadata.generation;
    let revision = live.cloned();
    let short_revision = revision.as_deref().map(short);
    let message = match &short_revision {
        Some(r) => format!("serving revision {r}"),
        None => String::new(),
    };
    let reason = if revision.is_some() { "Published" } else { "Built" };
    let conditions = conditions(problems, reason, &message, generation);
    let stacks: Vec<String> =
        build.map(|b| b.stacks().iter().map(|k| k.to_string()).collect()).unwrap_or_default();
    Some(SystemStatus {
        observed_generation: generation,
        conditions,
        bundle: build.and_then(|b| b.input.as_ref()).map(|i| bundle_location(catalog, i)),
        revision,
        short_revision,
        stack_count: stacks.len() as u32,
        stacks,
        policies: catalog.policies_of(TargetKind::System, key).len() as u32,
        ..SystemStatus::default()
    })
}

/// A Policy's status, with the counts of its Rego tests where a build ran them.
pub fn policy(
    catalog: &Catalog,
    key: &ObjectKey,
    problems: &[&Problem],
    tests: Option<&crate::api::TestSummary>,
) -> Option<PolicyStatus> {
    let p = catalog.policies().get(key)?;
    let generation = p.policy.metadata.generation;
    let conditions = conditions(problems, "Compiled", "", generation);
    let package = p.module.as_ref().ok().map(|m| format!("data.{}", m.package.join(".")));
    Some(PolicyStatus { observed_generation: generation, conditions, package, tests: tests.cloned() })
}

/// Put an object's new status (`None`: it is gone) in `map`, its conditions' transition times
/// carried from the status it replaces; an equal status keeps the old allocation, and a known
/// key its allocation.
pub(crate) fn keep<T: Conditioned + PartialEq>(
    map: &mut StatusMap<T>,
    key: &str,
    now: Option<T>,
    stamp: &str,
) {
    let Some(mut now) = now else {
        if map.contains_key(key) {
            map.remove(key);
        }
        return;
    };
    // Only a status that differs is put in: the map's other parts stay shared with the last
    // round's copy.
    match map.get_key_value(key) {
        Some((known, old)) => {
            carry_transitions(old.conditions(), now.conditions_mut(), stamp);
            if **old != now {
                let known = known.clone();
                map.insert(known, Arc::new(now));
            }
        }
        None => {
            carry_transitions(&[], now.conditions_mut(), stamp);
            map.insert(Arc::from(key), Arc::new(now));
        }
    }
}

/// A status with kstatus conditions.
pub(crate) trait Conditioned {
    fn conditions(&self) -> &[crate::api::Condition];
    fn conditions_mut(&mut self) -> &mut Vec<crate::api::Condition>;
}

macro_rules! conditioned {
    ($($t:ty),*) => {$(
        impl Conditioned for $t {
            fn conditions(&self) -> &[crate::api::Condition] {
                &self.conditions
            }
            fn conditions_mut(&mut self) -> &mut Vec<crate::api::Condition> {
                &mut self.conditions
            }
        }
    )*};
}

conditioned!(TenantStatus, StackStatus, SystemStatus, PolicyStatus);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::problem::{ObjectRef, Reason};

    #[test]
    fn counts_and_revisions_read_as_people_write_them() {
        assert_eq!(count(0, "system", "systems"), "0 systems");
        assert_eq!(count(1, "system", "systems"), "1 system");
        assert_eq!(count(2, "system", "systems"), "2 systems");
        let revision = "0123456789abcdef".repeat(4);
        assert_eq!(short(&revision), "0123456789ab");
        assert_eq!(short("abc"), "abc");
    }

    #[test]
    fn changed_lists_new_and_different_statuses_only() {
        let bad = Problem::new(ObjectRef::tenant("t"), Reason::InvalidSelector, "x");
        let status = |problems: &[&Problem]| {
            Arc::new(TenantStatus {
                conditions: conditions(problems, "Valid", "", Some(1)),
                ..TenantStatus::default()
            })
        };
        let old: StatusMap<TenantStatus> =
            ["a", "t", "u"].into_iter().map(|k| (Arc::from(k), status(&[]))).collect();
        let u = old.keys().find(|k| &***k == "u").cloned().expect("u");
        let new: StatusMap<TenantStatus> = [
            (Arc::from("a"), status(&[])),     // equal, other allocations
            (Arc::from("b"), status(&[])),     // new
            (Arc::from("t"), status(&[&bad])), // changed
            (u, old["u"].clone()),             // the same key and status allocations
        ]
        .into_iter()
        .collect();
        let found: Vec<(&str, bool)> =
            changed(&old, &new).map(|(k, before, _)| (&**k, before.is_some())).collect();
        assert_eq!(found, vec![("b", false), ("t", true)]);
        assert_eq!(changed(&new, &new).count(), 0);
        assert_eq!(changed(&StatusMap::new(), &new).count(), 4);
        // A copy with one status replaced (as a round makes it): that one, among many shared.
        let many: StatusMap<TenantStatus> =
            (0..5000).map(|i| (Arc::from(format!("t{i:04}")), status(&[]))).collect();
        let mut next = many.clone();
        next.insert(Arc::from("t2500"), status(&[&bad]));
        next.insert(Arc::from("t9999"), status(&[]));
        let found: Vec<(&str, bool)> =
            changed(&many, &next).map(|(k, before, _)| (&**k, before.is_some())).collect();
        assert_eq!(found, vec![("t2500", true), ("t9999", false)]);
    }

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let bad = Problem::new(ObjectRef::tenant("t"), Reason::InvalidSelector, "x");
        let mut first = conditions(&[], "Valid", "", Some(1));
        carry_transitions(&[], &mut first, "t1");
        assert!(first.iter().all(|c| c.last_transition_time.as_deref() == Some("t1")));
        let mut same = conditions(&[], "Valid", "", Some(2));
        carry_transitions(&first, &mut same, "t2");
        assert!(same.iter().all(|c| c.last_transition_time.as_deref() == Some("t1")), "{same:?}");
        let mut broken = conditions(&[&bad], "Valid", "", Some(3));
        carry_transitions(&same, &mut broken, "t3");
        let time = |cs: &[Condition], t: &str| {
            cs.iter().find(|c| c.type_ == t).and_then(|c| c.last_transition_time.clone())
        };
        assert_eq!(time(&broken, READY).as_deref(), Some("t3"));
        assert_eq!(time(&broken, STALLED).as_deref(), Some("t3"));
        assert_eq!(time(&broken, RECONCILING).as_deref(), Some("t1"), "Reconciling stayed False");
        assert_eq!(broken[0].reason, "InvalidSelector");
        assert_eq!(broken[1].status, ConditionStatus::True);
    }
}
