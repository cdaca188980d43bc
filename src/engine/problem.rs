//! Problems found in user input, attributed to the object that must change to fix them.
//!
//! A [`Problem`] is what ends up in an object's `Stalled` condition, in the CLI's table and in
//! events: a machine-readable [`Reason`] and a message that says exactly what and where.

use std::fmt;

use serde::Serialize;

use crate::model::ObjectKey;

/// Which object a problem belongs to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ObjectRef {
    /// `Tenant`, `Stack`, `System`, `Policy` (or the kind found in a manifest).
    pub kind: String,
    /// Namespace (empty for cluster-scoped objects and unparsed documents).
    pub namespace: String,
    /// Name (for unparsed documents: `file:line`).
    pub name: String,
}

impl ObjectRef {
    /// A reference to a namespaced object.
    pub fn namespaced(kind: &str, key: &ObjectKey) -> Self {
        ObjectRef { kind: kind.to_string(), namespace: key.namespace.clone(), name: key.name.clone() }
    }

    /// A reference to a Tenant.
    pub fn tenant(name: &str) -> Self {
        ObjectRef { kind: "Tenant".to_string(), namespace: String::new(), name: name.to_string() }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// Why an object cannot be built, as a CamelCase word (the condition `reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Reason {
    /// A manifest could not be parsed.
    InvalidManifest,
    /// A YAML document is not one of the four edict kinds.
    UnknownKind,
    /// Two objects of the same kind share a name.
    DuplicateName,
    /// Rego that does not parse or compile.
    InvalidRego,
    /// A Policy's package is outside the root its target allows.
    PackageOutsideRoot,
    /// A glob pattern in a selector or tenant namespace list does not parse.
    InvalidSelector,
    /// A Policy whose Stack or System does not exist.
    MissingTarget,
    /// An object whose namespace belongs to no Tenant.
    NoTenant,
    /// A namespace claimed by more than one Tenant.
    AmbiguousTenant,
    /// A Stack outside its tenant's admin namespace.
    WrongNamespace,
    /// A mask pointer outside `/input`, `/result`, `/nd_builtin_cache`.
    InvalidMask,
    /// A Rego test failed.
    TestFailed,
    /// Something this object depends on (a Policy or Stack) is broken.
    DependencyFailed,
    /// A service edict needs (S3, DynamoDB, KMS, IAM, the API server) failed in a way that may
    /// pass: edict retries with back-off (the object is Reconciling, not Stalled).
    Unavailable,
    /// A System's `serviceAccountName` names a ServiceAccount that does not exist.
    MissingServiceAccount,
    /// The Tenant's identity settings or a System's IAM role cannot be used as they are.
    InvalidIdentity,
    /// The Tenant names an OPA release edict has no builtin declarations for.
    UnknownOpaVersion,
    /// The API server refused edict a permission it needs (403): the message names it.
    Forbidden,
    /// The API server rejected what edict wrote (400, 422): the message says what.
    Rejected,
}

impl Reason {
    /// Every reason.
    pub const ALL: [Reason; 19] = [
        Reason::InvalidManifest,
        Reason::UnknownKind,
        Reason::DuplicateName,
        Reason::InvalidRego,
        Reason::PackageOutsideRoot,
        Reason::InvalidSelector,
        Reason::MissingTarget,
        Reason::NoTenant,
        Reason::AmbiguousTenant,
        Reason::WrongNamespace,
        Reason::InvalidMask,
        Reason::TestFailed,
        Reason::DependencyFailed,
        Reason::Unavailable,
        Reason::MissingServiceAccount,
        Reason::InvalidIdentity,
        Reason::UnknownOpaVersion,
        Reason::Forbidden,
        Reason::Rejected,
    ];

    /// The CamelCase word.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidManifest => "InvalidManifest",
            Reason::UnknownKind => "UnknownKind",
            Reason::DuplicateName => "DuplicateName",
            Reason::InvalidRego => "InvalidRego",
            Reason::PackageOutsideRoot => "PackageOutsideRoot",
            Reason::InvalidSelector => "InvalidSelector",
            Reason::MissingTarget => "MissingTarget",
            Reason::NoTenant => "NoTenant",
            Reason::AmbiguousTenant => "AmbiguousTenant",
            Reason::WrongNamespace => "WrongNamespace",
            Reason::InvalidMask => "InvalidMask",
            Reason::TestFailed => "TestFailed",
            Reason::DependencyFailed => "DependencyFailed",
            Reason::Unavailable => "Unavailable",
            Reason::MissingServiceAccount => "MissingServiceAccount",
            Reason::InvalidIdentity => "InvalidIdentity",
            Reason::UnknownOpaVersion => "UnknownOpaVersion",
            Reason::Forbidden => "Forbidden",
            Reason::Rejected => "Rejected",
        }
    }

    /// Whether the problem may pass without anyone changing anything (retried with back-off).
    pub fn is_transient(self) -> bool {
        matches!(self, Reason::Unavailable)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing wrong with one object.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Problem {
    /// The object that must change.
    pub object: ObjectRef,
    /// Why, for machines.
    pub reason: Reason,
    /// What and where, for people.
    pub message: String,
}

impl Problem {
    /// A new problem.
    pub fn new(object: ObjectRef, reason: Reason, message: impl Into<String>) -> Self {
        Problem { object, reason, message: message.into() }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.object, self.reason, self.message)
    }
}
