//! IAM roles for service accounts (IRSA): each System's OPA reads its bundle from the Tenant's
//! bucket with the credentials of a role of its own, which only that System's ServiceAccount can
//! assume (through the cluster's OIDC provider) and which may only read that System's bundles.
//!
//! The names, ARNs and policy documents are pure functions of the Tenant's `identity` and
//! `storage` and of the System; [`Roles`] creates, updates and deletes the roles edict manages,
//! and never touches a role it did not create.

use aws_sdk_iam::types::{Role, Tag};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::api::Storage;
use crate::api::tenant::Identity;
use crate::bundle::BundleInput;

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

fn iam_error<E, R>(op: &'static str, role: &str, err: aws_sdk_iam::error::SdkError<E, R>) -> IamError
where
    E: aws_sdk_iam::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let (code, message) = crate::aws::describe(&err);
    IamError::Iam { op, role: role.to_string(), code, message }
}

/// The role name of a System: `<prefix><cluster>-<namespace>-<system>`, or, past 64 characters
/// (or with characters IAM refuses), its first 55 valid characters, `-` and 8 hex of a sha256.
pub fn role_name(prefix: &str, cluster: &str, namespace: &str, system: &str) -> String {
    let full = format!("{prefix}{cluster}-{namespace}-{system}");
    let allowed = |c: char| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c);
    if full.len() <= MAX_ROLE_NAME && full.chars().all(allowed) {
        return full;
    }
    // The hash covers the parts, not the joined name, so that `a-b`/`c` and `a`/`b-c` differ.
    let digest = Sha256::digest(format!("{prefix}\n{cluster}\n{namespace}\n{system}"));
    let hash = hex::encode(&digest[..4]);
    let clean: String = full.chars().map(|c| if allowed(c) { c } else { '-' }).collect();
    let keep = &clean[..clean.len().min(MAX_ROLE_NAME - 1 - hash.len())];
    format!("{}-{hash}", keep.trim_end_matches('-'))
}

/// The parts of an OIDC provider ARN.
struct ProviderArn<'a> {
    partition: &'a str,
    account: &'a str,
    issuer: &'a str,
}

fn parse_provider_arn(arn: &str) -> Result<ProviderArn<'_>, IamError> {
    let invalid =
        |reason: &str| IamError::InvalidProviderArn { value: arn.to_string(), reason: reason.into() };
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [scheme, partition, service, region, account, resource] = parts[..] else {
        return Err(invalid("it does not have the six parts of an ARN"));
    };
    if scheme != "arn" {
        return Err(invalid("it does not start with `arn:`"));
    }
    if !matches!(partition, "aws" | "aws-cn" | "aws-us-gov") {
        return Err(invalid("the partition is not aws, aws-cn or aws-us-gov"));
    }
    if service != "iam" || !region.is_empty() {
        return Err(invalid("it is not an IAM ARN (`:iam::`)"));
    }
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("the account is not 12 digits"));
    }
    let issuer = resource
        .strip_prefix("oidc-provider/")
        .filter(|i| !i.is_empty())
        .ok_or_else(|| invalid("the resource is not `oidc-provider/<issuer>`"))?;
    Ok(ProviderArn { partition, account, issuer })
}

/// The AWS account of an OIDC provider ARN (the account the roles live in).
pub fn account_of(oidc_provider_arn: &str) -> Result<&str, IamError> {
    parse_provider_arn(oidc_provider_arn).map(|p| p.account)
}

/// The issuer of an OIDC provider ARN, without scheme (`oidc.eks.<region>.amazonaws.com/id/<ID>`).
pub fn issuer_of(oidc_provider_arn: &str) -> Result<&str, IamError> {
    parse_provider_arn(oidc_provider_arn).map(|p| p.issuer)
}

/// The partition of an OIDC provider ARN (`aws`, `aws-cn` or `aws-us-gov`).
pub fn partition_of(oidc_provider_arn: &str) -> Result<&str, IamError> {
    parse_provider_arn(oidc_provider_arn).map(|p| p.partition)
}

/// The IAM path of the roles, with the leading and trailing `/` IAM requires.
pub fn role_path(identity: &Identity) -> String {
    let inner = identity.role_path.trim_matches('/');
    if inner.is_empty() { "/".to_string() } else { format!("/{inner}/") }
}

/// The ARN of a role of the tenant: `arn:<partition>:iam::<account>:role<path><name>`.
pub fn role_arn(identity: &Identity, name: &str) -> Result<String, IamError> {
    let p = parse_provider_arn(&identity.oidc_provider_arn)?;
    Ok(format!("arn:{}:iam::{}:role{}{name}", p.partition, p.account, role_path(identity)))
}

/// The trust policy: only `system:serviceaccount:<namespace>:<service_account>`, with the STS audience, through the provider.
pub fn trust_policy(identity: &Identity, namespace: &str, service_account: &str) -> Result<Value, IamError> {
    let issuer = issuer_of(&identity.oidc_provider_arn)?;
    Ok(json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": identity.oidc_provider_arn},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {
                format!("{issuer}:sub"): format!("system:serviceaccount:{namespace}:{service_account}"),
                format!("{issuer}:aud"): AUDIENCE,
            }},
        }],
    }))
}

/// The inline policy: `s3:GetObject` in the directory of `live_key` only, and `kms:Decrypt` (through S3 only) for its SSE-KMS key.
pub fn bundle_policy(storage: &Storage, identity: &Identity, live_key: &str) -> Result<Value, IamError> {
    let p = parse_provider_arn(&identity.oidc_provider_arn)?;
    let dir = match live_key.trim_start_matches('/').rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/*"),
        // A key without a directory: that object only.
        None => live_key.to_string(),
    };
    let prefix = storage.s3.prefix.trim_matches('/');
    let object = if prefix.is_empty() { dir } else { format!("{prefix}/{dir}") };
    let mut statements = vec![json!({
        "Sid": "ReadBundle",
        "Effect": "Allow",
        "Action": "s3:GetObject",
        "Resource": format!("arn:{}:s3:::{}/{object}", p.partition, storage.s3.bucket),
    })];
    if let Some(kms) = storage.kms.as_ref().filter(|_| storage.s3.sse_kms) {
        let dns = if p.partition == "aws-cn" { "amazonaws.com.cn" } else { "amazonaws.com" };
        let via = format!("s3.{}.{dns}", storage.region);
        let key = kms.key_id.as_str();
        // An alias, by name or ARN: IAM authorizes the key behind it, so match on the alias.
        let alias = if key.starts_with("alias/") {
            Some(key)
        } else if key.starts_with("arn:") {
            key.find(":alias/").map(|i| &key[i + 1..])
        } else {
            None
        };
        let statement = match alias {
            Some(alias) => json!({
                "Sid": "DecryptBundle",
                "Effect": "Allow",
                "Action": "kms:Decrypt",
                "Resource": "*",
                "Condition": {
                    "StringEquals": {"kms:ViaService": via},
                    "ForAnyValue:StringEquals": {"kms:ResourceAliases": alias},
                },
            }),
            None => {
                let resource = if key.starts_with("arn:") {
                    key.to_string()
                } else {
                    format!("arn:{}:kms:{}:{}:key/{key}", p.partition, storage.region, p.account)
                };
                json!({
                    "Sid": "DecryptBundle",
                    "Effect": "Allow",
                    "Action": "kms:Decrypt",
                    "Resource": resource,
                    "Condition": {"StringEquals": {"kms:ViaService": via}},
                })
            }
        };
        statements.push(statement);
    }
    Ok(json!({"Version": "2012-10-17", "Statement": statements}))
}

/// A policy document as IAM returns it (URL-encoded; moto and others may not encode), parsed.
pub fn parse_document(raw: &str) -> Option<Value> {
    serde_json::from_str(raw).ok().or_else(|| serde_json::from_str(&url_decoded(raw)?).ok())
}

/// `%XX` decoded (RFC 3986: `+` stays `+`); `None` for a malformed escape or non-UTF-8 result.
fn url_decoded(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The role a System's OPA should have.
#[derive(Clone, Debug, PartialEq)]
pub struct RoleSpec {
    /// The role name ([`role_name`]).
    pub name: String,
    /// The IAM path ([`role_path`]).
    pub path: String,
    /// The trust policy ([`trust_policy`]).
    pub trust: Value,
    /// The inline policy's name ([`INLINE_POLICY`]).
    pub inline_name: String,
    /// The inline policy ([`bundle_policy`]).
    pub inline: Value,
    /// The permissions boundary (a managed policy ARN).
    pub boundary: Option<String>,
    /// The System it belongs to (`<cluster>/<namespace>/<name>`), tagged on the role.
    pub system_id: String,
}

impl RoleSpec {
    /// The role of the System `input`, whose OPA runs as `service_account` in the System's namespace.
    pub fn for_system(
        identity: &Identity,
        storage: &Storage,
        input: &BundleInput,
        service_account: &str,
    ) -> Result<RoleSpec, IamError> {
        let ns = &input.system.namespace;
        Ok(RoleSpec {
            name: role_name(&identity.role_name_prefix, &input.cluster, ns, &input.system.name),
            path: role_path(identity),
            trust: trust_policy(identity, ns, service_account)?,
            inline_name: INLINE_POLICY.to_string(),
            inline: bundle_policy(storage, identity, &input.live_key())?,
            boundary: identity.permissions_boundary.clone(),
            system_id: input.system_id(),
        })
    }
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
    /// Roles through `client` ([`crate::aws::iam`]).
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{DynamoDbStorage, KmsStorage, S3Storage, SystemType};
    use crate::index::ObjectKey;

    const PROVIDER: &str =
        "arn:aws:iam::111122223333:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE";
    const ISSUER: &str = "oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE";

    fn identity(arn: &str) -> Identity {
        Identity {
            oidc_provider_arn: arn.into(),
            manage_roles: true,
            role_name_prefix: "edict-".into(),
            role_path: "/edict/".into(),
            permissions_boundary: None,
            endpoint: None,
        }
    }

    fn storage(prefix: &str, sse_kms: bool, key: Option<&str>) -> Storage {
        Storage {
            region: "eu-west-1".into(),
            s3: S3Storage {
                bucket: "acme-bundles".into(),
                prefix: prefix.into(),
                endpoint: None,
                force_path_style: false,
                sse_kms,
            },
            dynamodb: DynamoDbStorage { table: "t".into(), endpoint: None, create: false },
            kms: key.map(|k| KmsStorage { key_id: k.into(), signing_key_id: None, endpoint: None }),
        }
    }

    fn input() -> BundleInput {
        BundleInput::new("acme", "prod-eu", ObjectKey::new("team-a", "api"), SystemType::Kubernetes)
    }

    const LIVE: &str = "bundles/acme/prod-eu/team-a/api/bundle.tar.gz";

    fn valid(name: &str) -> bool {
        name.len() <= MAX_ROLE_NAME
            && name.chars().all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
    }

    #[test]
    fn short_role_names_are_the_plain_id() {
        assert_eq!(role_name("edict-", "prod-eu", "team-a", "api"), "edict-prod-eu-team-a-api");
    }

    #[test]
    fn long_role_names_are_shortened_with_a_stable_distinct_hash() {
        let ns = "a-namespace-with-a-rather-long-name";
        let a = role_name("edict-", "prod-eu-west-1", ns, "payments-gateway-opa");
        let b = role_name("edict-", "prod-eu-west-1", ns, "payments-gateway-opb");
        assert!(valid(&a) && valid(&b), "{a} {b}");
        assert_eq!(a.len(), MAX_ROLE_NAME);
        assert_ne!(a, b, "same first 55 characters, different systems");
        assert_eq!(a, role_name("edict-", "prod-eu-west-1", ns, "payments-gateway-opa"), "stable");
        assert!(a.starts_with("edict-prod-eu-west-1-a-namespace-with"), "{a}");
        let (_, hash) = a.rsplit_once('-').expect("a hash");
        assert!(hash.len() == 8 && hash.bytes().all(|b| b.is_ascii_hexdigit()), "{a}");
        // Exactly 64 characters stays as it is.
        let exact = role_name("edict-", "c", &"n".repeat(64 - 6 - 1 - 2 - 1), "s");
        assert_eq!(exact.len(), 64);
        assert!(!exact.contains("--") && exact.ends_with("-s"), "{exact}");
    }

    #[test]
    fn role_names_with_characters_iam_refuses_are_cleaned_and_hashed() {
        let name = role_name("edict/", "prod", "team-a", "api");
        assert!(valid(&name), "{name}");
        assert!(name.starts_with("edict-prod-team-a-api-"), "{name}");
        assert_ne!(name, role_name("edict-", "prod", "team-a", "api"));
    }

    #[test]
    fn provider_arn_parts() {
        assert_eq!(account_of(PROVIDER).expect("account"), "111122223333");
        assert_eq!(issuer_of(PROVIDER).expect("issuer"), ISSUER);
        assert_eq!(partition_of(PROVIDER).expect("partition"), "aws");
        let cn = "arn:aws-cn:iam::111122223333:oidc-provider/oidc.eks.cn-north-1.amazonaws.com.cn/id/X";
        assert_eq!(partition_of(cn).expect("partition"), "aws-cn");
        let gov = "arn:aws-us-gov:iam::111122223333:oidc-provider/oidc.eks.us-gov-west-1.amazonaws.com/id/X";
        assert_eq!(partition_of(gov).expect("partition"), "aws-us-gov");
    }

    #[test]
    fn malformed_provider_arns_name_the_field_and_the_value() {
        for (arn, why) in [
            ("oidc.eks.eu-west-1.amazonaws.com/id/X", "six parts"),
            ("arn:aws:iam::111122223333:role/edict/x", "oidc-provider/"),
            ("arn:aws:iam::1111:oidc-provider/x", "12 digits"),
            ("arn:aws:sts::111122223333:oidc-provider/x", "not an IAM ARN"),
            ("arn:azure:iam::111122223333:oidc-provider/x", "partition"),
            ("arn:aws:iam::111122223333:oidc-provider/", "oidc-provider/"),
        ] {
            let err = issuer_of(arn).expect_err(arn).to_string();
            assert!(err.starts_with(&format!("spec.identity.oidcProviderArn {arn:?} ")), "{err}");
            assert!(err.contains(why), "{err}");
        }
    }

    #[test]
    fn role_arns_have_the_partition_account_and_path() {
        let id = identity(PROVIDER);
        assert_eq!(role_arn(&id, "edict-x").expect("arn"), "arn:aws:iam::111122223333:role/edict/edict-x");
        let root = Identity { role_path: "/".into(), ..identity(PROVIDER) };
        assert_eq!(role_arn(&root, "edict-x").expect("arn"), "arn:aws:iam::111122223333:role/edict-x");
        let bare = Identity { role_path: "a/b".into(), ..identity(PROVIDER) };
        assert_eq!(role_path(&bare), "/a/b/");
        let cn =
            identity("arn:aws-cn:iam::111122223333:oidc-provider/oidc.eks.cn-north-1.amazonaws.com.cn/id/X");
        assert_eq!(role_arn(&cn, "r").expect("arn"), "arn:aws-cn:iam::111122223333:role/edict/r");
    }

    #[test]
    fn the_trust_policy_admits_one_service_account_with_the_sts_audience() {
        let policy = trust_policy(&identity(PROVIDER), "team-a", "opa").expect("policy");
        assert_eq!(
            policy,
            json!({
                "Version": "2012-10-17",
                "Statement": [{
                    "Effect": "Allow",
                    "Principal": {"Federated": PROVIDER},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": {"StringEquals": {
                        "oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE:sub": "system:serviceaccount:team-a:opa",
                        "oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE:aud": "sts.amazonaws.com",
                    }},
                }],
            })
        );
    }

    #[test]
    fn the_bundle_policy_reads_the_systems_directory_only() {
        let policy =
            bundle_policy(&storage("prod/", false, Some("k")), &identity(PROVIDER), LIVE).expect("policy");
        assert_eq!(
            policy,
            json!({"Version": "2012-10-17", "Statement": [{
                "Sid": "ReadBundle",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": "arn:aws:s3:::acme-bundles/prod/bundles/acme/prod-eu/team-a/api/*",
            }]}),
            "sse_kms off: no kms statement"
        );
        for prefix in ["", "/"] {
            let policy =
                bundle_policy(&storage(prefix, true, None), &identity(PROVIDER), LIVE).expect("policy");
            assert_eq!(
                policy["Statement"],
                json!([{
                    "Sid": "ReadBundle",
                    "Effect": "Allow",
                    "Action": "s3:GetObject",
                    "Resource": "arn:aws:s3:::acme-bundles/bundles/acme/prod-eu/team-a/api/*",
                }]),
                "prefix {prefix:?}, no kms key"
            );
        }
        let gov = identity("arn:aws-us-gov:iam::111122223333:oidc-provider/o/id/X");
        let policy = bundle_policy(&storage("/a/b/", false, None), &gov, LIVE).expect("policy");
        assert_eq!(
            policy["Statement"][0]["Resource"],
            "arn:aws-us-gov:s3:::acme-bundles/a/b/bundles/acme/prod-eu/team-a/api/*"
        );
    }

    #[test]
    fn the_bundle_policy_decrypts_with_the_sse_key_through_s3_only() {
        let decrypt = |key: &str| {
            let policy =
                bundle_policy(&storage("", true, Some(key)), &identity(PROVIDER), LIVE).expect("policy");
            assert_eq!(policy["Statement"].as_array().map(Vec::len), Some(2), "{policy}");
            policy["Statement"][1].clone()
        };
        let via = json!({"kms:ViaService": "s3.eu-west-1.amazonaws.com"});
        let arn = "arn:aws:kms:eu-west-1:444455556666:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        assert_eq!(
            decrypt(arn),
            json!({
                "Sid": "DecryptBundle",
                "Effect": "Allow",
                "Action": "kms:Decrypt",
                "Resource": arn,
                "Condition": {"StringEquals": via},
            })
        );
        let bare = decrypt("1234abcd-12ab-34cd-56ef-1234567890ab");
        assert_eq!(
            bare["Resource"],
            "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
        );
        assert_eq!(bare["Condition"], json!({"StringEquals": via}));
        let alias = json!({
            "Sid": "DecryptBundle",
            "Effect": "Allow",
            "Action": "kms:Decrypt",
            "Resource": "*",
            "Condition": {
                "StringEquals": via,
                "ForAnyValue:StringEquals": {"kms:ResourceAliases": "alias/acme-bundles"},
            },
        });
        assert_eq!(decrypt("alias/acme-bundles"), alias);
        assert_eq!(decrypt("arn:aws:kms:eu-west-1:111122223333:alias/acme-bundles"), alias, "an alias ARN");
        let cn = identity("arn:aws-cn:iam::111122223333:oidc-provider/o/id/X");
        let policy = bundle_policy(&storage("", true, Some("k")), &cn, LIVE).expect("policy");
        assert_eq!(policy["Statement"][1]["Resource"], "arn:aws-cn:kms:eu-west-1:111122223333:key/k");
        assert_eq!(
            policy["Statement"][1]["Condition"]["StringEquals"]["kms:ViaService"],
            "s3.eu-west-1.amazonaws.com.cn"
        );
    }

    #[test]
    fn a_role_spec_for_a_system() {
        let id = Identity {
            permissions_boundary: Some("arn:aws:iam::111122223333:policy/b".into()),
            ..identity(PROVIDER)
        };
        let spec = RoleSpec::for_system(&id, &storage("p", true, None), &input(), "opa").expect("spec");
        assert_eq!(spec.name, "edict-prod-eu-team-a-api");
        assert_eq!(spec.path, "/edict/");
        assert_eq!(spec.inline_name, "edict-bundle");
        assert_eq!(spec.system_id, "prod-eu/team-a/api");
        assert_eq!(spec.boundary.as_deref(), Some("arn:aws:iam::111122223333:policy/b"));
        assert_eq!(spec.trust, trust_policy(&id, "team-a", "opa").expect("trust"));
        assert_eq!(
            spec.inline["Statement"][0]["Resource"],
            "arn:aws:s3:::acme-bundles/p/bundles/acme/prod-eu/team-a/api/*"
        );
        let bad = identity("not-an-arn");
        assert!(matches!(
            RoleSpec::for_system(&bad, &storage("", true, None), &input(), "opa"),
            Err(IamError::InvalidProviderArn { .. })
        ));
    }

    #[test]
    fn documents_parse_encoded_or_not() {
        let doc = json!({"Statement": [{"Condition": {"StringEquals": {"a:sub": "system:serviceaccount:n:s+x y"}}}]});
        assert_eq!(parse_document(&doc.to_string()), Some(doc.clone()));
        let encoded = "%7B%22Statement%22%3A%5B%7B%22Condition%22%3A%7B%22StringEquals%22%3A%7B%22a%3Asub%22%3A%22system%3Aserviceaccount%3An%3As%2Bx%20y%22%7D%7D%7D%5D%7D";
        assert_eq!(parse_document(encoded), Some(doc));
        assert_eq!(parse_document("%7B%2"), None);
        assert_eq!(parse_document("not json"), None);
    }

    #[test]
    fn only_outages_are_transient() {
        let iam = |code: &str| IamError::Iam {
            op: "GetRole",
            role: "r".into(),
            code: code.into(),
            message: String::new(),
        };
        assert!(iam("Unreachable").is_transient());
        assert!(iam("Throttling").is_transient());
        assert!(!iam("AccessDenied").is_transient());
        assert!(!IamError::NotManaged { role: "r".into() }.is_transient());
    }
}
