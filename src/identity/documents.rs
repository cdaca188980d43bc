//! The pure part: role names, OIDC provider ARN parts, role ARNs, the trust and bundle policy
//! documents, and the [`RoleSpec`] a System's OPA should have. No AWS calls.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{AUDIENCE, INLINE_POLICY, IamError, MAX_ROLE_NAME};
use crate::api::Storage;
use crate::api::tenant::Identity;
use crate::bundle::BundleInput;

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
