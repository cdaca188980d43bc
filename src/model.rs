//! What every layer names: objects by namespace and name.

use std::fmt;

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

/// The kinds of object edict reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A Tenant (cluster-scoped).
    Tenant,
    /// A Stack.
    Stack,
    /// A System.
    System,
    /// A Policy.
    Policy,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 4] = [Kind::Tenant, Kind::Stack, Kind::System, Kind::Policy];

    /// The kind's name (`System`), as in manifests, messages and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Tenant => "Tenant",
            Kind::Stack => "Stack",
            Kind::System => "System",
            Kind::Policy => "Policy",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
