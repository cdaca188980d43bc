//! IAM roles for service accounts (IRSA): each System's OPA reads its bundle from the Tenant's
//! bucket with the credentials of a role of its own, which only that System's ServiceAccount can
//! assume (through the cluster's OIDC provider) and which may only read that System's bundles.
//!
//! The names, ARNs and policy documents are pure functions of the Tenant's `identity` and
//! `storage` and of the System; [`Roles`] creates, updates and deletes the roles edict manages,
//! and never touches a role it did not create.

mod documents;
mod roles;
#[cfg(test)]
mod tests;

pub use self::documents::{
    RoleSpec, account_of, bundle_policy, issuer_of, parse_document, partition_of, role_arn, role_name,
    role_path, trust_policy,
};
pub use self::roles::{RoleChange, RoleOutcome, Roles};

/// The tag marking a role as created by edict.
pub const MANAGED_BY_TAG: &str = "edict.dev/managed-by";
/// The value of [`MANAGED_BY_TAG`].
pub const MANAGED_BY: &str = "edict";
/// The tag naming the System (`<cluster>/<namespace>/<name>`) a role belongs to.
pub const SYSTEM_ID_TAG: &str = "edict.dev/system-id";
/// The name of the inline policy that lets the OPA read its bundles.
pub const INLINE_POLICY: &str = "edict-bundle";
/// The audience of the projected ServiceAccount token EKS gives IRSA pods.
pub const AUDIENCE: &str = "sts.amazonaws.com";
/// IAM's limit on role names.
pub const MAX_ROLE_NAME: usize = 64;

/// Why a role cannot be named, built or applied.
#[derive(Debug, thiserror::Error)]
pub enum IamError {
    /// `spec.identity.oidcProviderArn` is not the ARN of an IAM OIDC provider.
    #[error(
        "spec.identity.oidcProviderArn {value:?} is not an IAM OIDC provider ARN: {reason} (expected arn:aws:iam::<account>:oidc-provider/<issuer>)"
    )]
    InvalidProviderArn {
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// IAM refused or could not be reached.
    #[error("IAM {op} on role {role}: {code}: {message}")]
    Iam {
        /// The IAM operation.
        op: &'static str,
        /// The role.
        role: String,
        /// The service's error code (`NoSuchEntity`, `AccessDenied`, `Unreachable`, ...).
        code: String,
        /// The service's message.
        message: String,
    },
    /// A role of that name exists and edict did not create it.
    #[error(
        "IAM role {role} exists but was not created by edict (it lacks the tag {MANAGED_BY_TAG}={MANAGED_BY}): edict never takes over a role it did not create; delete or rename that role, or change spec.identity.roleNamePrefix"
    )]
    NotManaged {
        /// The role.
        role: String,
    },
    /// The role is edict's, but another System's.
    #[error("IAM role {role} belongs to System {owner}, not {system}: edict leaves it alone")]
    OtherSystem {
        /// The role.
        role: String,
        /// The System its tag names (`(untagged)` when the tag is missing).
        owner: String,
        /// The System that asked.
        system: String,
    },
}

impl IamError {
    /// Whether retrying later may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            IamError::Iam { code, .. } => {
                code == "Unreachable"
                    || code.contains("Throttl")
                    || code == "ServiceFailure"
                    || code == "ConcurrentModification"
            }
            IamError::InvalidProviderArn { .. }
            | IamError::NotManaged { .. }
            | IamError::OtherSystem { .. } => false,
        }
    }
}
