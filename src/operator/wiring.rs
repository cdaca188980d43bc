//! What edict keeps beside each System's bundle: the ConfigMap with its OPA configuration, the
//! IRSA annotation on the ServiceAccount its OPA runs as, the IAM role (when the Tenant lets
//! edict manage roles), and the finalizer that removes all of it, and the published bundles,
//! when the System is deleted.
//!
//! [`desired`] is pure; [`apply`], [`retire`] and the finalizer calls are the I/O, every
//! Kubernetes write a server-side apply with edict's one field manager. A ServiceAccount is
//! read before it is applied to, so edict never creates one that the user did not.

use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;

use super::status_writer::FIELD_MANAGER;
use crate::api::{API_VERSION, System, Tenant};
use crate::bundle::BundleInput;
use crate::engine::problem::{ObjectRef, Problem, Reason};
use crate::identity::{self, RoleSpec, Roles};
use crate::model::ObjectKey;
use crate::opa_config::{self, Source, Verification};
use crate::registry::{Registry, VerificationKey};

/// The finalizer on every System edict manages.
pub const FINALIZER: &str = "edict.dev/cleanup";
/// The ServiceAccount annotation EKS reads the role from.
pub const ROLE_ANNOTATION: &str = "eks.amazonaws.com/role-arn";
/// The label on what edict creates.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "edict");
/// The key of the OPA configuration in the ConfigMap.
pub const CONFIG_KEY: &str = "config.yaml";

/// The name of a System's ConfigMap.
pub fn config_map_name(system: &str) -> String {
    format!("{system}-opa-config")
}

/// What a System should have beside its bundle.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    /// The System.
    pub key: ObjectKey,
    /// Its uid (the ConfigMap's owner).
    pub uid: String,
    /// The ConfigMap's name.
    pub config_map: String,
    /// The OPA configuration (YAML).
    pub config: String,
    /// The ServiceAccount to annotate with the role, when the Tenant has an identity.
    pub service_account: Option<String>,
    /// The role.
    pub role: Option<Role>,
}

/// A System's IAM role.
#[derive(Clone, Debug, PartialEq)]
pub struct Role {
    /// Its ARN (the annotation's value).
    pub arn: String,
    /// What edict creates and keeps, when the Tenant has `manageRoles`.
    pub managed: Option<RoleSpec>,
}

/// What was applied for a System; also shown in its status.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Applied {
    /// The ConfigMap written.
    pub config_map: Option<String>,
    /// The ServiceAccount annotated.
    pub service_account: Option<String>,
    /// The role named in the annotation.
    pub role_arn: Option<String>,
    /// The role edict manages (its name).
    pub managed_role: Option<String>,
    /// What this was applied from (nothing to do while it is the same).
    pub from: Option<Desired>,
    /// [`Desired::digest`] of what was applied: all a restarted operator knows of it (from the
    /// System's status).
    pub digest: Option<String>,
}

impl Applied {
    /// Whether this was applied from `desired` (or, after a restart, from something with its digest).
    pub fn is_from(&self, desired: &Desired) -> bool {
        match &self.from {
            Some(from) => from == desired,
            None => self.digest.as_deref() == Some(desired.digest().as_str()),
        }
    }
}

impl Desired {
    /// A digest of everything applied from this (sha256 hex).
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(format!("{self:?}").as_bytes()))
    }
}

/// Everything to remove for a deleted System.
#[derive(Clone, Debug)]
pub struct Retirement {
    /// The System.
    pub key: ObjectKey,
    /// Its id in storage (`cluster/namespace/name`).
    pub system_id: String,
    /// Its bundle prefix in storage.
    pub prefix: String,
    /// The Tenant it was published for (its storage), when known.
    pub tenant: Option<std::sync::Arc<Tenant>>,
    /// What edict applied for it.
    pub applied: Applied,
    /// Whether edict's finalizer holds the object (then it is removed last).
    pub finalizer: bool,
}

/// What `input`'s System should have: pure.
pub fn desired(
    system: &System,
    input: &BundleInput,
    tenant: &Tenant,
    bundle_url: &str,
    verification: Option<&VerificationKey>,
) -> Result<Desired, Problem> {
    let key = input.system.clone();
    let me = ObjectRef::namespaced("System", &key);
    let source = match &tenant.spec.storage {
        Some(storage) => Source::S3(storage),
        None => Source::Http(bundle_url),
    };
    let verification =
        verification.map(|v| Verification { key_id: &v.key_id, public_key: &v.public_key, scope: &v.scope });
    let mut rendered = opa_config::render(input, &source, verification.as_ref());
    opa_config::report_to_operator(&mut rendered, bundle_url);
    let config = serde_norway::to_string(&rendered).unwrap_or_else(|_| rendered.to_string());
    let tenant_name = tenant.metadata.name.clone().unwrap_or_default();
    let sa = system.spec.service_account_name.clone();
    let role = match (&tenant.spec.identity, &sa) {
        (Some(identity), Some(sa)) => {
            let Some(storage) = &tenant.spec.storage else {
                return Err(Problem::new(
                    me,
                    Reason::InvalidIdentity,
                    format!(
                        "Tenant {tenant_name}: spec.identity needs spec.storage (IRSA gives OPA access to bundles in S3)"
                    ),
                ));
            };
            let invalid = |e: identity::IamError| {
                Problem::new(me.clone(), Reason::InvalidIdentity, format!("Tenant {tenant_name}: {e}"))
            };
            let name =
                identity::role_name(&identity.role_name_prefix, &input.cluster, &key.namespace, &key.name);
            let arn = identity::role_arn(identity, &name).map_err(invalid)?;
            let managed = if identity.manage_roles {
                Some(RoleSpec::for_system(identity, storage, input, sa).map_err(invalid)?)
            } else {
                None
            };
            Some(Role { arn, managed })
        }
        _ => None,
    };
    Ok(Desired {
        uid: system.metadata.uid.clone().unwrap_or_default(),
        config_map: config_map_name(&key.name),
        config,
        service_account: role.as_ref().and(sa),
        role,
        key,
    })
}

/// An IAM failure: passing (retried) or one that waits for a person (a role that is not edict's, ...).
fn iam_problem(me: &ObjectRef, e: &identity::IamError) -> Problem {
    let reason = if e.is_transient() { Reason::Unavailable } else { Reason::InvalidIdentity };
    Problem::new(me.clone(), reason, e.to_string())
}

/// An API-server failure: a refused permission (403) or a rejected object (400, 422) waits for
/// a person and says what; anything else may pass and is retried.
fn kube_problem(me: &ObjectRef, what: &str, e: &kube::Error) -> Problem {
    match e {
        kube::Error::Api(s) if s.code == 403 => Problem::new(
            me.clone(),
            Reason::Forbidden,
            format!(
                "{what}: {}; grant it to edict's ServiceAccount (the chart's ClusterRole does)",
                s.message
            ),
        ),
        kube::Error::Api(s) if s.code == 400 || s.code == 422 => Problem::new(
            me.clone(),
            Reason::Rejected,
            format!("{what}: the API server rejected it: {}", s.message),
        ),
        _ => Problem::new(me.clone(), Reason::Unavailable, format!("{what}: {e}")),
    }
}

/// Apply `desired`, releasing what `before` holds that it no longer wants. On failure the
/// returned problem says what and where; what succeeded stays applied and is applied again.
pub async fn apply(
    client: &Client,
    roles: Option<&Roles>,
    desired: &Desired,
    before: &Applied,
) -> Result<Applied, Problem> {
    let ns = desired.key.namespace.as_str();
    let me = ObjectRef::namespaced("System", &desired.key);
    let mut applied =
        Applied { from: Some(desired.clone()), digest: Some(desired.digest()), ..Applied::default() };

    // The ARN to annotate with: the role's own when edict manages it (an existing role keeps its path).
    let mut role_arn = desired.role.as_ref().map(|r| r.arn.clone());
    if let Some(spec) = desired.role.as_ref().and_then(|r| r.managed.as_ref()) {
        let Some(roles) = roles else {
            return Err(Problem::new(me, Reason::Unavailable, "IAM: no client for the tenant's identity"));
        };
        let outcome = roles.ensure(spec).await.map_err(|e| iam_problem(&me, &e))?;
        role_arn = Some(outcome.arn);
        applied.managed_role = Some(spec.name.clone());
    }

    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let body = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": desired.config_map,
            "namespace": ns,
            "labels": {MANAGED_BY.0: MANAGED_BY.1, "edict.dev/system": desired.key.name},
            "ownerReferences": [{
                "apiVersion": API_VERSION, "kind": "System", "name": desired.key.name,
                "uid": desired.uid, "controller": true, "blockOwnerDeletion": false,
            }],
        },
        "data": {CONFIG_KEY: desired.config},
    });
    config_maps
        .patch(&desired.config_map, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body))
        .await
        .map_err(|e| kube_problem(&me, &format!("ConfigMap {ns}/{}", desired.config_map), &e))?;
    applied.config_map = Some(desired.config_map.clone());

    if let (Some(sa), Some(role_arn)) = (&desired.service_account, &role_arn) {
        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
        let found = accounts
            .get_opt(sa)
            .await
            .map_err(|e| kube_problem(&me, &format!("ServiceAccount {ns}/{sa}"), &e))?;
        if found.is_none() {
            return Err(Problem::new(
                me,
                Reason::MissingServiceAccount,
                format!(
                    "spec.serviceAccountName: ServiceAccount {ns}/{sa} does not exist; create it (its OPA runs as it) or fix the name"
                ),
            ));
        }
        let body = json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": sa, "namespace": ns, "annotations": {ROLE_ANNOTATION: role_arn}},
        });
        accounts
            .patch(sa, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body))
            .await
            .map_err(|e| kube_problem(&me, &format!("ServiceAccount {ns}/{sa}"), &e))?;
        applied.service_account = Some(sa.clone());
        applied.role_arn = Some(role_arn.clone());
    }
    if let Some(old) = &before.service_account
        && applied.service_account.as_ref() != Some(old)
    {
        release_service_account(client, ns, old)
            .await
            .map_err(|e| kube_problem(&me, "ServiceAccount", &e))?;
    }
    Ok(applied)
}

/// Take edict's annotation off a ServiceAccount (its other fields and annotations stay). A
/// ServiceAccount that is gone is left gone.
pub async fn release_service_account(client: &Client, ns: &str, name: &str) -> Result<(), kube::Error> {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    if accounts.get_opt(name).await?.is_none() {
        return Ok(());
    }
    // Applying without the annotation drops the one field edict owns.
    let body =
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns}});
    accounts.patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body)).await?;
    Ok(())
}

/// Hold a System with edict's finalizer.
pub async fn add_finalizer(client: &Client, key: &ObjectKey) -> Result<(), kube::Error> {
    let body = json!({
        "apiVersion": API_VERSION, "kind": "System",
        "metadata": {"name": key.name, "namespace": key.namespace, "finalizers": [FINALIZER]},
    });
    let systems: Api<System> = Api::namespaced(client.clone(), &key.namespace);
    match systems.patch(&key.name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Let a System go: apply without the finalizer, which drops the one edict owns.
pub async fn remove_finalizer(client: &Client, key: &ObjectKey) -> Result<(), kube::Error> {
    let body = json!({
        "apiVersion": API_VERSION, "kind": "System",
        "metadata": {"name": key.name, "namespace": key.namespace},
    });
    let systems: Api<System> = Api::namespaced(client.clone(), &key.namespace);
    match systems.patch(&key.name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Remove what edict wrote for a deleted System, and nothing else: its bundles and index items
/// (through `registry`), its ConfigMap (only if edict's), its annotation, its role (only if
/// edict's, for this System); then its finalizer. Idempotent; on failure, what is left is
/// removed by the next attempt.
pub async fn retire(
    client: &Client,
    registry: Option<&Registry>,
    roles: Option<&Roles>,
    r: &Retirement,
    now: std::time::SystemTime,
) -> Result<(), Problem> {
    let ns = r.key.namespace.as_str();
    let me = ObjectRef::namespaced("System", &r.key);
    if let Some(registry) = registry {
        registry.retire(&r.system_id, &r.prefix, now).await.map_err(|e| {
            Problem::new(me.clone(), Reason::Unavailable, format!("removing published bundles: {e}"))
        })?;
    }
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let name = r.applied.config_map.clone().unwrap_or_else(|| config_map_name(&r.key.name));
    let found = config_maps.get_opt(&name).await.map_err(|e| kube_problem(&me, "ConfigMap", &e))?;
    let ours = found.is_some_and(|cm| {
        cm.metadata.labels.as_ref().and_then(|l| l.get(MANAGED_BY.0)).map(String::as_str)
            == Some(MANAGED_BY.1)
    });
    if ours {
        match config_maps.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(kube_problem(&me, &format!("ConfigMap {ns}/{name}"), &e)),
        }
    }
    if let Some(sa) = &r.applied.service_account {
        release_service_account(client, ns, sa).await.map_err(|e| kube_problem(&me, "ServiceAccount", &e))?;
    }
    if let (Some(role), Some(roles)) = (&r.applied.managed_role, roles) {
        roles.delete(role, &r.system_id).await.map_err(|e| iam_problem(&me, &e))?;
    }
    if r.finalizer {
        remove_finalizer(client, &r.key).await.map_err(|e| kube_problem(&me, "finalizer", &e))?;
    }
    Ok(())
}
