//! The role store: [`Roles`] creates, updates and deletes the IAM roles edict manages, through
//! IAM, and refuses any role it did not create.

use aws_sdk_iam::types::{Role, Tag};

use super::documents::{RoleSpec, parse_document};
use super::{IamError, MANAGED_BY, MANAGED_BY_TAG, SYSTEM_ID_TAG};

pub(super) fn iam_error<E, R>(
    op: &'static str,
    role: &str,
    err: aws_sdk_iam::error::SdkError<E, R>,
) -> IamError
where
    E: aws_sdk_iam::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let (code, message) = crate::registry::aws::describe(&err);
    IamError::Iam { op, role: role.to_string(), code, message }
}

/// What [`Roles::ensure`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoleChange {
    /// The role did not exist and was created.
    Created,
    /// The role existed; these parts were rewritten (`trust policy`, `permissions boundary`, `inline policy`).
    Updated(Vec<&'static str>),
    /// The role was already as desired.
    Unchanged,
}

/// The outcome of [`Roles::ensure`]: the role's ARN and what changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleOutcome {
    /// The role's ARN, for the ServiceAccount's `eks.amazonaws.com/role-arn`.
    pub arn: String,
    /// What changed.
    pub change: RoleChange,
}

/// The IAM roles edict manages, through IAM.
#[derive(Clone, Debug)]
pub struct Roles {
    client: aws_sdk_iam::Client,
}

impl Roles {
    /// Roles through `client` ([`crate::registry::aws::iam`]).
    pub fn new(client: aws_sdk_iam::Client) -> Self {
        Roles { client }
    }

    /// Create the role, or bring an existing one of edict's for the same System to `desired`.
    pub async fn ensure(&self, desired: &RoleSpec) -> Result<RoleOutcome, IamError> {
        let role = match self.get(&desired.name).await? {
            Some(role) => role,
            None => match self.create(desired).await? {
                Some(arn) => return Ok(RoleOutcome { arn, change: RoleChange::Created }),
                // Created by someone else at the same moment: check whose it is.
                None => self.get(&desired.name).await?.ok_or_else(|| IamError::Iam {
                    op: "GetRole",
                    role: desired.name.clone(),
                    code: "NoSuchEntity".into(),
                    message: "the role was reported as existing by CreateRole, then as missing".into(),
                })?,
            },
        };
        check_owner(&role, &desired.name, &desired.system_id)?;
        let name = desired.name.as_str();
        let mut updated = Vec::new();

        let trust = role.assume_role_policy_document().and_then(parse_document);
        if trust.as_ref() != Some(&desired.trust) {
            self.client
                .update_assume_role_policy()
                .role_name(name)
                .policy_document(desired.trust.to_string())
                .send()
                .await
                .map_err(|e| iam_error("UpdateAssumeRolePolicy", name, e))?;
            updated.push("trust policy");
        }

        let boundary = role.permissions_boundary().and_then(|b| b.permissions_boundary_arn());
        if boundary != desired.boundary.as_deref() {
            match &desired.boundary {
                Some(arn) => {
                    self.client
                        .put_role_permissions_boundary()
                        .role_name(name)
                        .permissions_boundary(arn)
                        .send()
                        .await
                        .map_err(|e| iam_error("PutRolePermissionsBoundary", name, e))?;
                }
                None => {
                    self.client
                        .delete_role_permissions_boundary()
                        .role_name(name)
                        .send()
                        .await
                        .map_err(|e| iam_error("DeleteRolePermissionsBoundary", name, e))?;
                }
            }
            updated.push("permissions boundary");
        }

        let inline = match self
            .client
            .get_role_policy()
            .role_name(name)
            .policy_name(&desired.inline_name)
            .send()
            .await
        {
            Ok(out) => parse_document(out.policy_document()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_entity_exception()) => None,
            Err(e) => return Err(iam_error("GetRolePolicy", name, e)),
        };
        if inline.as_ref() != Some(&desired.inline) {
            self.put_inline(desired).await?;
            updated.push("inline policy");
        }

        let change = if updated.is_empty() { RoleChange::Unchanged } else { RoleChange::Updated(updated) };
        Ok(RoleOutcome { arn: role.arn().to_string(), change })
    }

    /// Delete the role `name` (its inline policies first) if it is edict's role for `system_id`.
    /// `Ok(false)` when there is no such role; someone else's role is an error and stays as it is.
    pub async fn delete(&self, name: &str, system_id: &str) -> Result<bool, IamError> {
        let Some(role) = self.get(name).await? else {
            return Ok(false);
        };
        check_owner(&role, name, system_id)?;
        for policy in self.inline_names(name).await? {
            match self.client.delete_role_policy().role_name(name).policy_name(&policy).send().await {
                Ok(_) => {}
                Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_entity_exception()) => {}
                Err(e) => return Err(iam_error("DeleteRolePolicy", name, e)),
            }
        }
        match self.client.delete_role().role_name(name).send().await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_entity_exception()) => Ok(true),
            Err(e) => Err(iam_error("DeleteRole", name, e)),
        }
    }

    async fn get(&self, name: &str) -> Result<Option<Role>, IamError> {
        match self.client.get_role().role_name(name).send().await {
            Ok(out) => Ok(out.role),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_entity_exception()) => Ok(None),
            Err(e) => Err(iam_error("GetRole", name, e)),
        }
    }

    /// Create the role and its inline policy; `None` when a role of that name already exists.
    async fn create(&self, desired: &RoleSpec) -> Result<Option<String>, IamError> {
        let name = desired.name.as_str();
        let created = self
            .client
            .create_role()
            .role_name(name)
            .path(&desired.path)
            .assume_role_policy_document(desired.trust.to_string())
            .set_permissions_boundary(desired.boundary.clone())
            .description(format!("edict: the OPA of System {}", desired.system_id))
            .tags(tag(MANAGED_BY_TAG, MANAGED_BY))
            .tags(tag(SYSTEM_ID_TAG, &desired.system_id))
            .send()
            .await;
        let arn = match created {
            Ok(out) => out.role.map(|r| r.arn).unwrap_or_default(),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_entity_already_exists_exception()) => {
                return Ok(None);
            }
            Err(e) => return Err(iam_error("CreateRole", name, e)),
        };
        // Should this fail, the next ensure finds the role (tagged as edict's) and puts it.
        self.put_inline(desired).await?;
        Ok(Some(arn))
    }

    async fn put_inline(&self, desired: &RoleSpec) -> Result<(), IamError> {
        self.client
            .put_role_policy()
            .role_name(&desired.name)
            .policy_name(&desired.inline_name)
            .policy_document(desired.inline.to_string())
            .send()
            .await
            .map_err(|e| iam_error("PutRolePolicy", &desired.name, e))?;
        Ok(())
    }

    async fn inline_names(&self, name: &str) -> Result<Vec<String>, IamError> {
        let mut names = Vec::new();
        let mut marker = None;
        loop {
            let out = self
                .client
                .list_role_policies()
                .role_name(name)
                .set_marker(marker)
                .send()
                .await
                .map_err(|e| iam_error("ListRolePolicies", name, e))?;
            names.extend(out.policy_names().iter().cloned());
            marker = out.marker().map(String::from);
            if !out.is_truncated() || marker.is_none() {
                return Ok(names);
            }
        }
    }
}

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build().expect("a tag with key and value")
}

/// Refuse a role edict did not create, or created for another System.
fn check_owner(role: &Role, name: &str, system_id: &str) -> Result<(), IamError> {
    let tag = |key: &str| role.tags().iter().find(|t| t.key() == key).map(|t| t.value());
    if tag(MANAGED_BY_TAG) != Some(MANAGED_BY) {
        return Err(IamError::NotManaged { role: name.to_string() });
    }
    match tag(SYSTEM_ID_TAG) {
        Some(owner) if owner == system_id => Ok(()),
        owner => Err(IamError::OtherSystem {
            role: name.to_string(),
            owner: owner.unwrap_or("(untagged)").to_string(),
            system: system_id.to_string(),
        }),
    }
}
