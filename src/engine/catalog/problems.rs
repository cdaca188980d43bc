//! The problems of objects that can be seen without building any bundle, and the problem of an
//! object whose namespace belongs to no Tenant, or to several.

use std::collections::BTreeSet;

use super::Catalog;
use crate::api::TargetKind;
use crate::engine::problem::{ObjectRef, Problem, Reason};
use crate::model::ObjectKey;
use crate::sources::manifest::Origin;

impl Catalog {
    /// Problems of objects that can be seen without building any bundle: broken Rego, packages
    /// outside their root, broken globs, missing targets, tenancy errors. Sorted.
    pub fn object_problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        for name in self.tenants.keys() {
            out.extend(self.tenant_problems(name));
        }
        for key in self.stacks.keys() {
            out.extend(self.stack_problems(key));
        }
        for key in self.systems.keys() {
            out.extend(self.system_problems(key));
        }
        for key in self.policies.keys() {
            out.extend(self.policy_problems(key));
        }
        out.sort();
        out.dedup();
        out
    }

    /// What [`Catalog::object_problems`] finds of one object (`kind` is `Tenant`, `Stack`,
    /// `System` or `Policy`).
    pub fn problems_of(&self, object: &ObjectRef) -> Vec<Problem> {
        let key = || ObjectKey::new(object.namespace.clone(), object.name.clone());
        match object.kind.as_str() {
            "Tenant" => self.tenant_problems(&object.name),
            "Stack" => self.stack_problems(&key()),
            "System" => self.system_problems(&key()),
            "Policy" => self.policy_problems(&key()),
            _ => Vec::new(),
        }
    }

    fn tenant_problems(&self, name: &str) -> Vec<Problem> {
        let mut out = Vec::new();
        let Some(t) = self.tenants.get(name) else { return out };
        if let Err(p) = &t.namespaces {
            out.push(p.clone());
        }
        if let Err(p) = &t.namespace_selector {
            out.push(p.clone());
        }
        if let Err(p) = &t.opa {
            out.push(p.clone());
        }
        // A namespace claimed by several Tenants is a problem of each of them too.
        let namespaces: BTreeSet<&str> =
            self.systems.keys().chain(self.stacks.keys()).map(|k| k.namespace.as_str()).collect();
        for ns in namespaces {
            if let Err((Reason::AmbiguousTenant, owners)) = self.tenant_of(ns)
                && owners.contains(&name)
            {
                let others: Vec<&str> = owners.iter().copied().filter(|o| *o != name).collect();
                out.push(Problem::new(
                    ObjectRef::tenant(name),
                    Reason::AmbiguousTenant,
                    format!(
                        "{}namespace {ns} is also claimed by Tenant {}",
                        t.origin.prefix(),
                        others.join(", ")
                    ),
                ));
            }
        }
        out
    }

    fn stack_problems(&self, key: &ObjectKey) -> Vec<Problem> {
        let mut out = Vec::new();
        let Some(s) = self.stacks.get(key) else { return out };
        if let Err(p) = &s.selector {
            out.push(p.clone());
        }
        let me = ObjectRef::namespaced("Stack", key);
        match self.tenant_of(&key.namespace) {
            Err((reason, owners)) => out.push(tenancy_problem(me, reason, &owners, &s.origin, &key.namespace)),
            Ok(tenant) if self.admin_tenant(&key.namespace).is_none() => out.push(Problem::new(
                me,
                Reason::WrongNamespace,
                format!(
                    "{}Stacks live in their tenant's admin namespace; {} belongs to tenant {tenant} whose admin namespace is {}",
                    s.origin.prefix(),
                    key.namespace,
                    self.tenants.get(tenant).map(|t| t.tenant.spec.admin_namespace.as_str()).unwrap_or("")
                ),
            )),
            Ok(_) => {}
        }
        out
    }

    fn system_problems(&self, key: &ObjectKey) -> Vec<Problem> {
        let Some(s) = self.systems.get(key) else { return Vec::new() };
        match self.tenant_of(&key.namespace) {
            Err((reason, owners)) => vec![tenancy_problem(
                ObjectRef::namespaced("System", key),
                reason,
                &owners,
                &s.origin,
                &key.namespace,
            )],
            Ok(_) => Vec::new(),
        }
    }

    fn policy_problems(&self, key: &ObjectKey) -> Vec<Problem> {
        let mut out = Vec::new();
        let Some(p) = self.policies.get(key) else { return out };
        if let Err(problems) = &p.module {
            out.extend(problems.iter().cloned());
        }
        let target = ObjectKey::new(key.namespace.clone(), p.policy.spec.target.name.clone());
        let exists = match p.policy.spec.target.kind {
            TargetKind::Stack => self.stacks.contains_key(&target),
            TargetKind::System => self.systems.contains_key(&target),
        };
        if !exists {
            out.push(Problem::new(
                ObjectRef::namespaced("Policy", key),
                Reason::MissingTarget,
                format!(
                    "{}spec.target: {:?} {} does not exist in namespace {}",
                    p.origin.prefix(),
                    p.policy.spec.target.kind,
                    p.policy.spec.target.name,
                    key.namespace
                ),
            ));
        }
        out
    }
}

/// The problem of an object whose namespace belongs to no Tenant, or to several.
pub fn tenancy_problem(
    me: ObjectRef,
    reason: Reason,
    owners: &[&str],
    origin: &Origin,
    namespace: &str,
) -> Problem {
    let message = if owners.is_empty() {
        format!("{}namespace {namespace} belongs to no Tenant", origin.prefix())
    } else {
        format!(
            "{}namespace {namespace} is claimed by several Tenants: {}",
            origin.prefix(),
            owners.join(", ")
        )
    };
    Problem::new(me, reason, message)
}
