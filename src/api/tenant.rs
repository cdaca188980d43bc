//! `Tenant`: the isolation unit.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Condition;

/// A Tenant owns a set of namespaces, an admin namespace for its Stacks, its storage (S3, DynamoDB,
/// KMS) and the identity (IRSA) of its OPAs.
#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "edict.dev",
    version = "v1alpha1",
    kind = "Tenant",
    shortname = "tnt",
    category = "edict",
    status = "TenantStatus",
    doc = "A Tenant: the isolation unit of edict. It names the namespaces whose Systems it governs, the admin namespace that holds its Stacks, where its bundles, index and keys live (S3, DynamoDB, KMS), and how its OPAs get AWS credentials (IRSA). Edited by platform admins.",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Admin","type":"string","jsonPath":".spec.adminNamespace"}"#,
    printcolumn = r#"{"name":"Systems","type":"integer","jsonPath":".status.systems"}"#,
    printcolumn = r#"{"name":"Stacks","type":"integer","jsonPath":".status.stacks"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason","priority":1}"#,
    printcolumn = r#"{"name":"Message","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message","priority":1}"#
)]
#[serde(rename_all = "camelCase")]
pub struct TenantSpec {
    /// Namespaces whose Systems belong to this tenant, as glob patterns (`team-a-*`; `**` crosses `-`).
    /// A namespace must belong to exactly one Tenant.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Namespaces whose labels match this selector belong to the tenant too: label key to glob
    /// patterns, as in a Stack's selector (every key must match; an empty list only needs the
    /// label). Empty or absent selects no namespace. Labeling a namespace moves its Systems.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub namespace_selector: std::collections::BTreeMap<String, Vec<String>>,
    /// The namespace holding the tenant's Stacks. It belongs to the tenant too.
    #[schemars(length(min = 1, max = 63))]
    pub admin_namespace: String,
    /// How much bundle history to keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    /// Where the tenant's bundles, index and keys live. Absent: the operator's embedded
    /// directory store (`edict run --store`), whose bundles OPAs fetch from the operator's bundle
    /// API (`--addr`, the chart's Service on port 8181), as with `edict run --local`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<Storage>,
    /// How the OPAs of the tenant's Systems get AWS credentials (IRSA): the cluster's OIDC
    /// provider, and whether edict manages each System's IAM role. Needs `storage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
    /// The OPA release the tenant's OPAs run (`1.9.0`, `v1.19.1`): its Systems' bundles are
    /// checked against the builtins of that release, as its compiler would check them. Absent:
    /// the operator's `--opa-version` (the newest release edict knows, unless set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opa_version: Option<String>,
}

/// IAM roles for service accounts (IRSA). Each System naming a `serviceAccountName` gets the
/// `eks.amazonaws.com/role-arn` annotation on that ServiceAccount; with `manageRoles`, edict
/// also creates the role: trusted only by that ServiceAccount through the OIDC provider, and
/// allowed only to read that System's bundles.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    /// The ARN of the cluster's IAM OIDC provider
    /// (`arn:aws:iam::111122223333:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE`).
    #[schemars(length(min = 20))]
    pub oidc_provider_arn: String,
    /// Create, update and delete each System's role. Off: only annotate, with the role name
    /// edict would use (the roles are managed elsewhere, e.g. by Terraform).
    #[serde(default)]
    pub manage_roles: bool,
    /// Prefix of role names (`<prefix><cluster>-<namespace>-<system>`, shortened with a hash
    /// past 64 characters).
    #[serde(default = "default_role_prefix")]
    #[schemars(length(max = 32))]
    pub role_name_prefix: String,
    /// IAM path of the roles.
    #[serde(default = "default_role_path")]
    pub role_path: String,
    /// A permissions boundary every created role gets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions_boundary: Option<String>,
    /// An endpoint override for IAM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

fn default_role_prefix() -> String {
    "edict-".to_string()
}

fn default_role_path() -> String {
    "/edict/".to_string()
}

/// The tenant's AWS storage. Credentials come from the standard AWS provider chain
/// (environment, profile, web identity / IRSA); edict stores no AWS secrets.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Storage {
    /// The AWS region of the bucket, table and keys (e.g. `eu-west-1`).
    #[schemars(length(min = 1))]
    pub region: String,
    /// The S3 bundle registry.
    pub s3: S3Storage,
    /// The DynamoDB index.
    pub dynamodb: DynamoDbStorage,
    /// The KMS keys: the master key wrapping the tenant's data key (and used for SSE-KMS),
    /// and the optional signing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms: Option<KmsStorage>,
}

/// Where bundles are published.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct S3Storage {
    /// The bucket.
    #[schemars(length(min = 3, max = 63))]
    pub bucket: String,
    /// A key prefix under which everything of the tenant lives (may be empty).
    #[serde(default)]
    pub prefix: String,
    /// An endpoint override for S3-compatible stores (`http://127.0.0.1:9000`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Address buckets by path (`endpoint/bucket/key`) instead of virtual host; most S3-compatible stores need it.
    #[serde(default)]
    pub force_path_style: bool,
    /// Encrypt objects with SSE-KMS under `kms.keyId` (default true; turn off for stores without KMS).
    #[serde(default = "default_true")]
    pub sse_kms: bool,
}

fn default_true() -> bool {
    true
}

/// The tenant's index table.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DynamoDbStorage {
    /// The table (single-table design: PK, SK, GSI1PK/GSI1SK, TTL).
    #[schemars(length(min = 3, max = 255))]
    pub table: String,
    /// An endpoint override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Create the table (with its GSI and TTL) when it does not exist.
    #[serde(default)]
    pub create: bool,
}

/// The tenant's keys in KMS.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct KmsStorage {
    /// The symmetric master key (id, ARN or alias) that wraps the tenant's data key and encrypts objects (SSE-KMS).
    #[schemars(length(min = 1))]
    pub key_id: String,
    /// An asymmetric ECC_NIST_P256 key that signs bundles (ES256). Absent: bundles are not signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key_id: Option<String>,
    /// An endpoint override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// History kept per System.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Retention {
    /// Number of bundle revisions kept per System for rollback (the live one included).
    #[schemars(range(min = 1, max = 1000))]
    pub revisions: u32,
    /// Days the index keeps each batch of recorded decisions and the per-minute counts of the
    /// tenant's Systems (DynamoDB's TTL), after the batch's last decision (or after it arrived,
    /// when an OPA sends it late). Absent: 90. The decision objects themselves stay in the
    /// bucket until its lifecycle rules remove them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3650))]
    pub decision_days: Option<u32>,
}

/// What edict observed about a Tenant.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TenantStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling`, `Stalled`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Number of Systems in the tenant's namespaces.
    #[serde(default)]
    pub systems: u32,
    /// Number of Stacks in the tenant's admin namespace.
    #[serde(default)]
    pub stacks: u32,
}
