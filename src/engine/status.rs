//! Status of every object, computed from what the catalog and the builds found.
//!
//! Pure: the same problems give the same conditions. `lastTransitionTime` is filled in by
//! [`carry_transitions`] from the previous status, so it only moves on a real transition.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::api::conditions::{READY, RECONCILING, STALLED};
use crate::api::{
    Condition, ConditionStatus, PolicyStatus, StackStatus, SystemStatus, TargetKind, TenantStatus,
};
use crate::engine::catalog::{Catalog, key_of};
use crate::engine::pipeline::SystemBuild;
use crate::engine::problem::{ObjectRef, Problem, Reason};
use crate::model::ObjectKey;

/// The status of every object, keyed like the catalog.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Statuses {
    /// Tenants by name.
    pub tenants: BTreeMap<String, TenantStatus>,
    /// Stacks by `namespace/name`.
    pub stacks: BTreeMap<String, StackStatus>,
    /// Systems by `namespace/name`.
    pub systems: BTreeMap<String, SystemStatus>,
    /// Policies by `namespace/name`.
    pub policies: BTreeMap<String, PolicyStatus>,
}

/// The statuses the objects carry as the catalog last saw them (what the API server holds):
/// what an operator that just started has written, as far as it can know.
pub fn observed(catalog: &Catalog) -> Statuses {
    Statuses {
        tenants: catalog
            .tenants()
            .iter()
            .filter_map(|(k, e)| e.tenant.status.clone().map(|s| (k.clone(), s)))
            .collect(),
        stacks: catalog
            .stacks()
            .iter()
            .filter_map(|(k, e)| e.stack.status.clone().map(|s| (k.to_string(), s)))
            .collect(),
        systems: catalog
            .systems()
            .iter()
            .filter_map(|(k, e)| e.system.status.clone().map(|s| (k.to_string(), s)))
            .collect(),
        policies: catalog
            .policies()
            .iter()
            .filter_map(|(k, e)| e.policy.status.clone().map(|s| (k.to_string(), s)))
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
    carry(&slim(old, &mut BTreeMap::new()), new, now);
}

/// [`carry_transitions`] from what [`Transitions`] kept of an object's conditions.
fn carry(before: &[Transition], new: &mut [Condition], now: &str) {
    for c in new.iter_mut() {
        c.last_transition_time = match before.iter().find(|(t, _, _)| *t == c.type_) {
            Some((_, status, time)) if *status == c.status => time.as_deref().map(str::to_string),
            _ => Some(now.to_string()),
        };
    }
}

/// A condition's type, status and transition time.
type Transition = (String, ConditionStatus, Option<Arc<str>>);

/// The [`Transition`]s of some conditions; `times` shares equal timestamps.
fn slim(conditions: &[Condition], times: &mut BTreeMap<String, Arc<str>>) -> Vec<Transition> {
    conditions
        .iter()
        .map(|c| {
            let time = c.last_transition_time.as_deref().map(|t| match times.get(t) {
                Some(shared) => shared.clone(),
                None => times.entry(t.to_string()).or_insert_with(|| Arc::from(t)).clone(),
            });
            (c.type_.clone(), c.status, time)
        })
        .collect()
}

/// What [`carry_all`] needs of earlier statuses: each condition's type, status and transition
/// time, nothing else (a fraction of a status's size, kept between rounds; the times of one
/// round are one shared string). Keyed like [`Statuses`].
#[derive(Clone, Debug, Default)]
pub struct Transitions {
    tenants: BTreeMap<String, Vec<Transition>>,
    stacks: BTreeMap<String, Vec<Transition>>,
    systems: BTreeMap<String, Vec<Transition>>,
    policies: BTreeMap<String, Vec<Transition>>,
}

impl Transitions {
    /// The transitions of `statuses`.
    pub fn of(statuses: &Statuses) -> Self {
        fn each<T>(
            from: &BTreeMap<String, T>,
            conditions: fn(&T) -> &[Condition],
            times: &mut BTreeMap<String, Arc<str>>,
        ) -> BTreeMap<String, Vec<Transition>> {
            from.iter().map(|(k, s)| (k.clone(), slim(conditions(s), times))).collect()
        }
        let mut times = BTreeMap::new();
        Transitions {
            tenants: each(&statuses.tenants, |s| &s.conditions, &mut times),
            stacks: each(&statuses.stacks, |s| &s.conditions, &mut times),
            systems: each(&statuses.systems, |s| &s.conditions, &mut times),
            policies: each(&statuses.policies, |s| &s.conditions, &mut times),
        }
    }
}

/// [`carry_transitions`] for every object present in both `old` and `new` (new objects get `now`).
pub fn carry_all(old: &Transitions, new: &mut Statuses, now: &str) {
    fn each<T>(
        old: &BTreeMap<String, Vec<Transition>>,
        new: &mut BTreeMap<String, T>,
        now: &str,
        conditions_mut: fn(&mut T) -> &mut Vec<Condition>,
    ) {
        for (key, status) in new.iter_mut() {
            carry(old.get(key).map(Vec::as_slice).unwrap_or_default(), conditions_mut(status), now);
        }
    }
    each(&old.tenants, &mut new.tenants, now, |s| &mut s.conditions);
    each(&old.stacks, &mut new.stacks, now, |s| &mut s.conditions);
    each(&old.systems, &mut new.systems, now, |s| &mut s.conditions);
    each(&old.policies, &mut new.policies, now, |s| &mut s.conditions);
}

/// `n` with the singular or plural noun: `1 system`, `2 systems`.
pub fn count(n: u32, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A revision as `kubectl get` shows it: its first 12 hex digits.
pub fn short(revision: &str) -> String {
    revision.chars().take(12).collect()
}

/// Compute every object's status. `problems` holds every problem found (object checks and builds);
/// `live` the revision each System is serving (which may be older than a failed build's).
pub fn compute(
    catalog: &Catalog,
    builds: &BTreeMap<ObjectKey, SystemBuild>,
    problems: &[Problem],
    live: &BTreeMap<ObjectKey, String>,
) -> Statuses {
    let mut by_object: BTreeMap<&ObjectRef, Vec<&Problem>> = BTreeMap::new();
    for p in problems {
        let list = by_object.entry(&p.object).or_default();
        if !list.contains(&p) {
            list.push(p);
        }
    }
    let of = |r: &ObjectRef| by_object.get(r).cloned().unwrap_or_default();
    let mut out = Statuses::default();
    for (name, t) in catalog.tenants() {
        let systems = catalog
            .systems()
            .keys()
            .filter(|k| t.owns(&k.namespace, catalog.namespace_labels(&k.namespace)))
            .count() as u32;
        let stacks =
            catalog.stacks().keys().filter(|k| k.namespace == t.tenant.spec.admin_namespace).count() as u32;
        let generation = t.tenant.metadata.generation;
        let conditions = conditions(&of(&ObjectRef::tenant(name)), "Valid", "", generation);
        out.tenants.insert(
            name.clone(),
            TenantStatus { observed_generation: generation, conditions, systems, stacks },
        );
    }
    for (key, s) in catalog.stacks() {
        let generation = s.stack.metadata.generation;
        let bound = catalog.index().systems_of(key).len() as u32;
        let attached = catalog.policies_of(TargetKind::Stack, key);
        let policies = attached.len() as u32;
        let message = format!("selects {}", count(bound, "system", "systems"));
        // A Stack is only as ready as its Policies: a broken one keeps the Stack's rules out of
        // every bundle it selects, so the Stack says so too (as a System does).
        let me = ObjectRef::namespaced("Stack", key);
        let mut problems = of(&me);
        let broken: Vec<Problem> = attached
            .iter()
            .flat_map(|p| of(&ObjectRef::namespaced("Policy", &key_of(&p.policy.metadata))))
            .filter(|p| !p.reason.is_transient())
            .map(|p| {
                let message = format!("{}: {}: {}", p.object, p.reason, p.message);
                Problem::new(me.clone(), Reason::DependencyFailed, message)
            })
            .collect();
        problems.extend(broken.iter());
        let conditions = conditions(&problems, "Bound", &message, generation);
        out.stacks.insert(
            key.to_string(),
            StackStatus { observed_generation: generation, conditions, systems: bound, policies },
        );
    }
    for (key, s) in catalog.systems() {
        let generation = s.system.metadata.generation;
        let build = builds.get(key);
        let revision = live.get(key).cloned();
        let short_revision = revision.as_deref().map(short);
        let message = match &short_revision {
            Some(r) => format!("serving revision {r}"),
            None => String::new(),
        };
        let reason = if revision.is_some() { "Published" } else { "Built" };
        let conditions = conditions(&of(&ObjectRef::namespaced("System", key)), reason, &message, generation);
        let stacks: Vec<String> =
            build.map(|b| b.stacks().iter().map(|k| k.to_string()).collect()).unwrap_or_default();
        out.systems.insert(
            key.to_string(),
            SystemStatus {
                observed_generation: generation,
                conditions,
                bundle: build.and_then(|b| b.input.as_ref()).map(|i| bundle_location(catalog, i)),
                revision,
                short_revision,
                stack_count: stacks.len() as u32,
                stacks,
                policies: catalog.policies_of(TargetKind::System, key).len() as u32,
                ..SystemStatus::default()
            },
        );
    }
    let mut tests: BTreeMap<&ObjectKey, &crate::api::TestSummary> = BTreeMap::new();
    for b in builds.values() {
        tests.extend(b.tests.iter());
    }
    for (key, p) in catalog.policies() {
        let generation = p.policy.metadata.generation;
        let mine = of(&ObjectRef::namespaced("Policy", key));
        let tests = tests.get(key).map(|t| (*t).clone());
        let conditions = conditions(&mine, "Compiled", "", generation);
        let package = p.module.as_ref().ok().map(|m| format!("data.{}", m.package.join(".")));
        out.policies.insert(
            key.to_string(),
            PolicyStatus { observed_generation: generation, conditions, package, tests },
        );
    }
    out
}

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
    fn transitions_kept_between_rounds_carry_only_unchanged_conditions() {
        let bad = Problem::new(ObjectRef::tenant("t"), Reason::InvalidSelector, "x");
        let status = |problems: &[&Problem]| TenantStatus {
            conditions: conditions(problems, "Valid", "", Some(1)),
            ..TenantStatus::default()
        };
        let mut first = Statuses::default();
        first.tenants.insert("t".into(), status(&[]));
        first.tenants.insert("u".into(), status(&[]));
        carry_all(&Transitions::default(), &mut first, "t1");
        let kept = Transitions::of(&first);
        let mut second = Statuses::default();
        second.tenants.insert("t".into(), status(&[&bad]));
        second.tenants.insert("u".into(), status(&[]));
        carry_all(&kept, &mut second, "t2");
        let time = |s: &Statuses, k: &str, ty: &str| {
            s.tenants[k]
                .conditions
                .iter()
                .find(|c| c.type_ == ty)
                .and_then(|c| c.last_transition_time.clone())
        };
        assert_eq!(time(&second, "t", READY).as_deref(), Some("t2"), "Ready went False");
        assert_eq!(time(&second, "t", RECONCILING).as_deref(), Some("t1"), "Reconciling stayed False");
        assert_eq!(time(&second, "u", READY).as_deref(), Some("t1"), "unchanged object");
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
