//! The set of edict objects a process knows, with what can be derived from each one alone
//! (parsed Rego, parsed selectors) and the binding index, updated one event at a time.
//!
//! Each event says which Systems' bundles it affects, so that only those are rebuilt.
//! Fed from manifests (`edict build`, `edict run --local`) or from watches (`edict run`).

mod entries;
mod policy_module;
mod problems;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

pub use self::entries::{PolicyEntry, StackEntry, SystemEntry, TenantEntry};
pub use self::policy_module::{RESERVED_ROOTS, analyse_policy, module_label};
pub use self::problems::tenancy_problem;
use crate::api::{Policy, Stack, System, TargetKind, Tenant};
use crate::engine::problem::{ObjectRef, Problem, Reason};
use crate::model::Kind;
use crate::policy::Capabilities;
use crate::select::bindings::{BindingIndex, ObjectKey};
use crate::select::glob::Glob;
use crate::select::selector::{Labels, Selector, SelectorField, StackSelector};
use crate::sources::manifest::{Located, Object, Origin};

/// Everything known, plus the binding index.
#[derive(Debug, Default)]
pub struct Catalog {
    tenants: BTreeMap<String, TenantEntry>,
    stacks: BTreeMap<ObjectKey, StackEntry>,
    systems: BTreeMap<ObjectKey, SystemEntry>,
    policies: BTreeMap<ObjectKey, PolicyEntry>,
    by_target: BTreeMap<(TargetKind, ObjectKey), BTreeSet<ObjectKey>>,
    index: BindingIndex,
    /// Labels of the cluster's namespaces (for `spec.namespaceSelector`); empty without a cluster.
    namespaces: BTreeMap<String, Labels>,
}

/// Systems whose bundles must be rebuilt after an event.
pub type Affected = BTreeSet<ObjectKey>;

/// An object's namespace and name.
pub fn key_of(meta: &kube::core::ObjectMeta) -> ObjectKey {
    ObjectKey::new(meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default())
}

impl Catalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Self::default()
    }

    /// A catalog of everything `loaded` holds. A second object with the kind, namespace and
    /// name of an earlier one is not applied: it gets a `DuplicateName` problem naming both places.
    pub fn from_loaded(loaded: crate::sources::manifest::Loaded) -> (Catalog, Vec<Problem>) {
        let mut catalog = Catalog::new();
        let mut problems = loaded.problems;
        let mut seen: BTreeMap<(Kind, ObjectKey), String> = BTreeMap::new();
        for located in loaded.objects {
            let kind = located.object.kind();
            let key = located.object.key();
            if let Some(first) = seen.get(&(kind, key.clone())) {
                let me = if kind == Kind::Tenant {
                    ObjectRef::tenant(&key.name)
                } else {
                    ObjectRef::namespaced(kind.as_str(), &key)
                };
                problems.push(Problem::new(
                    me,
                    Reason::DuplicateName,
                    format!("{}{kind} {key} is already defined at {first}", located.origin.prefix()),
                ));
                continue;
            }
            seen.insert((kind, key), located.origin.at());
            catalog.apply(located);
        }
        (catalog, problems)
    }

    /// Add or replace an object. Returns the Systems whose bundles may have changed.
    /// An object whose spec, labels and origin are what the catalog holds (a status or metadata
    /// update, often edict's own) only replaces the stored copy and affects nothing.
    pub fn apply(&mut self, located: Located) -> Affected {
        if self.refresh(&located) {
            return Affected::new();
        }
        let Located { object, origin } = located;
        match object {
            Object::Tenant(t) => self.apply_tenant(t, origin),
            Object::Stack(s) => self.apply_stack(s, origin),
            Object::System(s) => self.apply_system(s, origin),
            Object::Policy(p) => self.apply_policy(p, origin),
        }
    }

    /// Replace the stored copy of an object whose spec, labels and origin did not change.
    fn refresh(&mut self, located: &Located) -> bool {
        fn same<S: PartialEq>(
            a: (&S, &kube::core::ObjectMeta, &Origin),
            b: (&S, &kube::core::ObjectMeta, &Origin),
        ) -> bool {
            a.0 == b.0 && a.1.labels == b.1.labels && a.2 == b.2
        }
        let origin = &located.origin;
        match &located.object {
            Object::Tenant(t) => {
                let name = t.metadata.name.clone().unwrap_or_default();
                match self.tenants.get_mut(&name) {
                    Some(e)
                        if same(
                            (&e.tenant.spec, &e.tenant.metadata, &e.origin),
                            (&t.spec, &t.metadata, origin),
                        ) =>
                    {
                        e.tenant = Arc::new(t.clone());
                        true
                    }
                    _ => false,
                }
            }
            Object::Stack(t) => match self.stacks.get_mut(&key_of(&t.metadata)) {
                Some(e)
                    if same(
                        (&e.stack.spec, &e.stack.metadata, &e.origin),
                        (&t.spec, &t.metadata, origin),
                    ) =>
                {
                    e.stack = Arc::new(t.clone());
                    true
                }
                _ => false,
            },
            Object::System(t) => match self.systems.get_mut(&key_of(&t.metadata)) {
                Some(e)
                    if same(
                        (&e.system.spec, &e.system.metadata, &e.origin),
                        (&t.spec, &t.metadata, origin),
                    ) =>
                {
                    e.system = Arc::new(t.clone());
                    true
                }
                _ => false,
            },
            Object::Policy(t) => match self.policies.get_mut(&key_of(&t.metadata)) {
                Some(e)
                    if same(
                        (&e.policy.spec, &e.policy.metadata, &e.origin),
                        (&t.spec, &t.metadata, origin),
                    ) =>
                {
                    e.policy = Arc::new(t.clone());
                    true
                }
                _ => false,
            },
        }
    }

    /// Remove an object by kind and key (Tenants: empty namespace). Returns the affected Systems.
    pub fn delete(&mut self, kind: Kind, key: &ObjectKey) -> Affected {
        match kind {
            Kind::Tenant => {
                let Some(old) = self.tenants.remove(&key.name) else { return Affected::new() };
                self.rebind_tenant(Some(&old))
            }
            Kind::Stack => {
                self.stacks.remove(key);
                self.index.remove_stack(key).systems
            }
            Kind::System => {
                self.systems.remove(key);
                self.index.remove_system(key).systems
            }
            Kind::Policy => match self.policies.remove(key) {
                Some(old) => {
                    self.unlink_policy(key, &old.policy);
                    self.target_systems(&old.policy)
                }
                None => Affected::new(),
            },
        }
    }

    /// A namespace appeared or its labels changed (`None`: it is gone). Returns the Systems in
    /// it (and those bound to its Stacks) when that changes which Tenant owns it.
    pub fn apply_namespace(&mut self, name: &str, labels: Option<Labels>) -> Affected {
        let before = self.tenant_of(name).map(str::to_string).map_err(|(r, o)| (r, o.len()));
        match labels {
            Some(labels) => {
                if self.namespaces.get(name) == Some(&labels) {
                    return Affected::new();
                }
                self.namespaces.insert(name.to_string(), labels);
            }
            None => {
                if self.namespaces.remove(name).is_none() {
                    return Affected::new();
                }
            }
        }
        let after = self.tenant_of(name).map(str::to_string).map_err(|(r, o)| (r, o.len()));
        if before == after {
            return Affected::new();
        }
        let mut affected = Affected::new();
        for key in keys_in(&self.stacks, name) {
            affected.extend(self.index_stack(&key));
        }
        for key in keys_in(&self.systems, name) {
            affected.extend(self.index_system(&key));
            affected.insert(key);
        }
        affected
    }

    /// The namespaces whose labels are known.
    pub fn namespace_names(&self) -> Vec<String> {
        self.namespaces.keys().cloned().collect()
    }

    /// The labels of a namespace, when known.
    pub fn namespace_labels(&self, name: &str) -> Option<&Labels> {
        self.namespaces.get(name)
    }

    fn apply_tenant(&mut self, tenant: Tenant, origin: Origin) -> Affected {
        let name = tenant.metadata.name.clone().unwrap_or_default();
        let namespaces = parse_namespaces(&tenant, &origin);
        let namespace_selector = if tenant.spec.namespace_selector.is_empty() {
            Ok(None)
        } else {
            Selector::parse_field(&tenant.spec.namespace_selector, SelectorField::Namespace)
                .map(Some)
                .map_err(|e| {
                    Problem::new(
                        ObjectRef::tenant(&name),
                        Reason::InvalidSelector,
                        format!("{}{e}", origin.prefix()),
                    )
                })
        };
        let opa = match tenant.spec.opa_version.as_deref() {
            None => Ok(None),
            Some(v) => Capabilities::named(v).map(Some).ok_or_else(|| {
                Problem::new(
                    ObjectRef::tenant(&name),
                    Reason::UnknownOpaVersion,
                    format!(
                        "{}spec.opaVersion: edict knows the builtins of OPA {}, not {v}",
                        origin.prefix(),
                        Capabilities::known().join(", ")
                    ),
                )
            }),
        };
        let entry = TenantEntry { tenant: Arc::new(tenant), origin, namespaces, namespace_selector, opa };
        let old = self.tenants.insert(name, entry);
        self.rebind_tenant(old.as_ref())
    }

    /// Re-index every Stack and System after a tenant change; affected = systems of the old and new tenant.
    fn rebind_tenant(&mut self, old: Option<&TenantEntry>) -> Affected {
        let mut affected = Affected::new();
        let stacks: Vec<ObjectKey> = self.stacks.keys().cloned().collect();
        for key in stacks {
            affected.extend(self.index_stack(&key));
        }
        let systems: Vec<ObjectKey> = self.systems.keys().cloned().collect();
        for key in systems {
            let owned_before =
                old.is_some_and(|t| t.owns(&key.namespace, self.namespaces.get(&key.namespace)));
            let bound = self.index_system(&key);
            if owned_before || self.tenant_of(&key.namespace).is_ok() {
                affected.extend(bound);
                affected.insert(key);
            }
        }
        affected
    }

    fn apply_stack(&mut self, stack: Stack, origin: Origin) -> Affected {
        let key = key_of(&stack.metadata);
        let selector = StackSelector::parse(&stack.spec.selector, &stack.spec.exclude).map_err(|e| {
            Problem::new(
                ObjectRef::namespaced("Stack", &key),
                Reason::InvalidSelector,
                format!("{}{e}", origin.prefix()),
            )
        });
        self.stacks.insert(key.clone(), StackEntry { stack: Arc::new(stack), origin, selector });
        self.index_stack(&key)
    }

    /// Put a Stack in the index when it is valid and in its tenant's admin namespace, else take it out.
    fn index_stack(&mut self, key: &ObjectKey) -> Affected {
        let Some(entry) = self.stacks.get(key) else { return Affected::new() };
        let tenant = self.admin_tenant(&key.namespace).map(|t| t.to_string());
        match (tenant, &entry.selector) {
            (Some(tenant), Ok(selector)) => {
                let selector = selector.clone();
                let ty = entry.stack.spec.type_.as_str();
                self.index.upsert_stack(key.clone(), &tenant, ty, selector).systems
            }
            _ => self.index.remove_stack(key).systems,
        }
    }

    fn apply_system(&mut self, system: System, origin: Origin) -> Affected {
        let key = key_of(&system.metadata);
        self.systems.insert(key.clone(), SystemEntry { system: Arc::new(system), origin });
        let mut affected = self.index_system(&key);
        affected.insert(key);
        affected
    }

    fn index_system(&mut self, key: &ObjectKey) -> Affected {
        let Some(entry) = self.systems.get(key) else { return Affected::new() };
        match self.tenant_of(&key.namespace) {
            Ok(tenant) => {
                let tenant = tenant.to_string();
                let labels = entry.system.metadata.labels.clone().unwrap_or_default();
                let ty = entry.system.spec.type_.as_str();
                self.index.upsert_system(key.clone(), &tenant, ty, labels).systems
            }
            Err(_) => self.index.remove_system(key).systems,
        }
    }

    fn apply_policy(&mut self, policy: Policy, origin: Origin) -> Affected {
        let key = key_of(&policy.metadata);
        let mut affected = Affected::new();
        if let Some(old) = self.policies.remove(&key) {
            self.unlink_policy(&key, &old.policy);
            affected.extend(self.target_systems(&old.policy));
        }
        let module = analyse_policy(&key, &policy, &origin);
        let target =
            (policy.spec.target.kind, ObjectKey::new(key.namespace.clone(), policy.spec.target.name.clone()));
        self.by_target.entry(target).or_default().insert(key.clone());
        let policy = Arc::new(policy);
        affected.extend(self.target_systems(&policy));
        self.policies.insert(key, PolicyEntry { policy, origin, module });
        affected
    }

    fn unlink_policy(&mut self, key: &ObjectKey, policy: &Policy) {
        let target =
            (policy.spec.target.kind, ObjectKey::new(key.namespace.clone(), policy.spec.target.name.clone()));
        if let Some(set) = self.by_target.get_mut(&target) {
            set.remove(key);
            if set.is_empty() {
                self.by_target.remove(&target);
            }
        }
    }

    /// The Systems whose bundles contain a Policy's target.
    fn target_systems(&self, policy: &Policy) -> Affected {
        let ns = policy.metadata.namespace.clone().unwrap_or_default();
        let target = ObjectKey::new(ns, policy.spec.target.name.clone());
        match policy.spec.target.kind {
            TargetKind::System => [target].into_iter().filter(|k| self.systems.contains_key(k)).collect(),
            TargetKind::Stack => self.index.systems_of(&target).into_iter().collect(),
        }
    }

    /// The one Tenant owning `namespace`, or the problem (none, or several).
    pub fn tenant_of(&self, namespace: &str) -> Result<&str, (Reason, Vec<&str>)> {
        let labels = self.namespaces.get(namespace);
        let owners: Vec<&str> =
            self.tenants.iter().filter(|(_, t)| t.owns(namespace, labels)).map(|(n, _)| n.as_str()).collect();
        match owners.as_slice() {
            [one] => Ok(one),
            [] => Err((Reason::NoTenant, owners)),
            _ => Err((Reason::AmbiguousTenant, owners)),
        }
    }

    /// The Tenant whose admin namespace is `namespace`, when exactly one claims it.
    pub fn admin_tenant(&self, namespace: &str) -> Option<&str> {
        let tenant = self.tenant_of(namespace).ok()?;
        (self.tenants.get(tenant)?.tenant.spec.admin_namespace == namespace).then_some(tenant)
    }

    /// All Tenants.
    pub fn tenants(&self) -> &BTreeMap<String, TenantEntry> {
        &self.tenants
    }

    /// All Stacks.
    pub fn stacks(&self) -> &BTreeMap<ObjectKey, StackEntry> {
        &self.stacks
    }

    /// All Systems.
    pub fn systems(&self) -> &BTreeMap<ObjectKey, SystemEntry> {
        &self.systems
    }

    /// All Policies.
    pub fn policies(&self) -> &BTreeMap<ObjectKey, PolicyEntry> {
        &self.policies
    }

    /// The Stack or System a known Policy is attached to (whether or not that exists).
    pub fn target_of(&self, policy: &ObjectKey) -> Option<ObjectRef> {
        let target = &self.policies.get(policy)?.policy.spec.target;
        let kind = match target.kind {
            TargetKind::Stack => "Stack",
            TargetKind::System => "System",
        };
        Some(ObjectRef::namespaced(kind, &ObjectKey::new(policy.namespace.clone(), target.name.clone())))
    }

    /// The Policies attached to a Stack or System, sorted by name.
    pub fn policies_of(&self, kind: TargetKind, target: &ObjectKey) -> Vec<&PolicyEntry> {
        self.by_target
            .get(&(kind, target.clone()))
            .into_iter()
            .flatten()
            .filter_map(|k| self.policies.get(k))
            .collect()
    }

    /// The binding index.
    pub fn index(&self) -> &BindingIndex {
        &self.index
    }
}

/// The keys of `map` in `namespace`.
fn keys_in<V>(map: &BTreeMap<ObjectKey, V>, namespace: &str) -> Vec<ObjectKey> {
    map.range(ObjectKey::new(namespace, "")..)
        .take_while(|(k, _)| k.namespace == namespace)
        .map(|(k, _)| k.clone())
        .collect()
}

fn parse_namespaces(tenant: &Tenant, origin: &Origin) -> Result<Vec<Glob>, Problem> {
    let name = tenant.metadata.name.clone().unwrap_or_default();
    tenant
        .spec
        .namespaces
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Glob::parse(p).map_err(|e| {
                Problem::new(
                    ObjectRef::tenant(&name),
                    Reason::InvalidSelector,
                    format!("{}spec.namespaces[{i}]: {e}", origin.prefix()),
                )
            })
        })
        .collect()
}
