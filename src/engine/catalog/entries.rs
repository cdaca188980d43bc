//! The objects the catalog holds, each with what can be derived from it alone: a Tenant with
//! its parsed namespace patterns, a Stack with its parsed selector, a System, a Policy with its
//! checked module.

use std::sync::Arc;

use crate::api::{Policy, Stack, System, Tenant};
use crate::bundle::PolicyModule;
use crate::engine::problem::Problem;
use crate::policy::Capabilities;
use crate::select::glob::Glob;
use crate::select::selector::{Labels, Selector, StackSelector};
use crate::sources::manifest::Origin;

/// A Tenant and its parsed namespace patterns.
#[derive(Clone, Debug)]
pub struct TenantEntry {
    /// The object.
    pub tenant: Arc<Tenant>,
    /// Where it came from.
    pub origin: Origin,
    /// Parsed `spec.namespaces`, or the problem with them.
    pub namespaces: Result<Vec<Glob>, Problem>,
    /// Parsed `spec.namespaceSelector` (`None` when empty: it selects nothing), or its problem.
    pub namespace_selector: Result<Option<Selector>, Problem>,
    /// The OPA release named by `spec.opaVersion` (`None`: the process's default), or why edict
    /// cannot check bundles for it.
    pub opa: Result<Option<&'static Capabilities>, Problem>,
}

impl TenantEntry {
    /// Whether `namespace` (with `labels`, when the namespace is known) belongs to the tenant:
    /// its admin namespace, one of its patterns, or labels its selector matches.
    pub fn owns(&self, namespace: &str, labels: Option<&Labels>) -> bool {
        self.tenant.spec.admin_namespace == namespace
            || self.namespaces.as_ref().is_ok_and(|globs| globs.iter().any(|g| g.matches(namespace)))
            || matches!((&self.namespace_selector, labels), (Ok(Some(s)), Some(l)) if s.matches(l))
    }
}

/// A Stack and its parsed selector.
#[derive(Clone, Debug)]
pub struct StackEntry {
    /// The object.
    pub stack: Arc<Stack>,
    /// Where it came from.
    pub origin: Origin,
    /// The parsed selector, or the problem with it.
    pub selector: Result<StackSelector, Problem>,
}

/// A System.
#[derive(Clone, Debug)]
pub struct SystemEntry {
    /// The object.
    pub system: Arc<System>,
    /// Where it came from.
    pub origin: Origin,
}

/// A Policy and what can be checked of it alone.
#[derive(Clone, Debug)]
pub struct PolicyEntry {
    /// The object.
    pub policy: Arc<Policy>,
    /// Where it came from.
    pub origin: Origin,
    /// The module ready for a bundle, or why it is not.
    pub module: Result<PolicyModule, Vec<Problem>>,
}
