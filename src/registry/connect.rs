//! From a Tenant's `spec.storage` to a working [`Registry`]: clients, checks that the bucket,
//! table and keys are there and usable (each failure naming the resource and the operation),
//! the tenant's data key (created on first use, unwrapped by KMS) and the bundle signer.

use std::sync::Arc;
use std::time::SystemTime;

use aws_sdk_kms::types::{KeySpec, KeyUsageType};

use crate::api::{Storage, Tenant};
use crate::registry::index::dynamodb::DynamoIndex;
use crate::registry::index::{IndexError, KeyState, TenantIndex, WrappedKey};
use crate::registry::keys::{KeyError, KeyRing, MasterKey, kms_error};
use crate::registry::signing::{KmsSigner, ScopedSigner};
use crate::registry::store::{S3Store, StoreError};
use crate::registry::{DEFAULT_RETENTION, Registry, VerificationKey};

/// Why a Tenant's storage cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The Tenant has no `spec.storage`.
    #[error(
        "Tenant {0} has no spec.storage: publish needs an S3 bucket and a DynamoDB table (`edict run --local` serves the embedded default)"
    )]
    NotConfigured(String),
    /// The bucket is missing or refused.
    #[error(transparent)]
    S3(#[from] StoreError),
    /// The table is missing, misshapen or refused.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// A key is missing, refused or of the wrong kind.
    #[error(transparent)]
    Kms(#[from] KeyError),
}

impl StorageError {
    /// Whether retrying later may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            StorageError::NotConfigured(_) => false,
            StorageError::S3(e) => e.is_transient(),
            StorageError::Index(e) => e.is_transient(),
            StorageError::Kms(e) => e.is_transient(),
        }
    }
}

/// Connect to a Tenant's storage and check it; `actor` is who the commit log names.
pub async fn registry(tenant: &Tenant, actor: &str, now: SystemTime) -> Result<Registry, StorageError> {
    let name = tenant.metadata.name.clone().unwrap_or_default();
    let storage = tenant.spec.storage.as_ref().ok_or_else(|| StorageError::NotConfigured(name.clone()))?;
    let clients = crate::registry::aws::clients(storage).await;
    connect(&name, storage, &clients, actor, now).await.map(|r| {
        let keep = tenant.spec.retention.as_ref().map(|r| r.revisions as usize).unwrap_or(DEFAULT_RETENTION);
        r.with_retention(keep)
    })
}

/// [`registry`] with clients already built (tests build them with static credentials).
pub async fn connect(
    tenant: &str,
    storage: &Storage,
    clients: &crate::registry::aws::Clients,
    actor: &str,
    now: SystemTime,
) -> Result<Registry, StorageError> {
    check_bucket(&clients.s3, &storage.s3.bucket).await?;
    let index = DynamoIndex::new(clients.dynamodb.clone(), storage.dynamodb.table.clone());
    index.ensure_table(storage.dynamodb.create).await?;
    let index: Arc<dyn TenantIndex> = Arc::new(index);
    let sse = storage.kms.as_ref().filter(|_| storage.s3.sse_kms).map(|k| k.key_id.clone());
    let store = Arc::new(S3Store::new(clients.s3.clone(), &storage.s3.bucket, &storage.s3.prefix, sse));
    let mut registry = Registry::new(tenant, store, index.clone()).with_actor(actor);
    if let Some(kms) = &storage.kms {
        check_key(&clients.kms, &kms.key_id, KeyUsageType::EncryptDecrypt, None).await?;
        let master = MasterKey::new(clients.kms.clone(), &kms.key_id, tenant);
        registry = registry.with_sealer(Arc::new(key_ring(&master, index.as_ref(), tenant, now).await?));
        if let Some(signing) = &kms.signing_key_id {
            check_key(&clients.kms, signing, KeyUsageType::SignVerify, Some(KeySpec::EccNistP256)).await?;
            let signer = KmsSigner::new(clients.kms.clone(), signing);
            let public_key = signer.public_key_pem().await?;
            registry = registry
                .with_verification(VerificationKey {
                    key_id: signer.key_id().to_string(),
                    public_key,
                    scope: tenant.to_string(),
                })
                .with_signer(Arc::new(ScopedSigner { signer, scope: tenant.to_string() }));
        }
    }
    Ok(registry)
}

async fn check_bucket(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<(), StoreError> {
    match s3.head_bucket().bucket(bucket).send().await {
        Ok(_) => Ok(()),
        Err(e) => {
            let (code, message) = crate::registry::aws::describe(&e);
            let (code, message) = if e.as_service_error().is_some_and(|s| s.is_not_found()) {
                (
                    "NoSuchBucket".to_string(),
                    "the bucket does not exist (or is in another region)".to_string(),
                )
            } else if code == "Unknown" {
                ("AccessDenied".to_string(), format!("the bucket refused HeadBucket ({message})"))
            } else {
                (code, message)
            };
            Err(StoreError::Service { op: "HeadBucket", key: format!("s3://{bucket}"), code, message })
        }
    }
}

/// Check that a KMS key exists, is enabled, and has the usage (and spec) edict needs.
async fn check_key(
    kms: &aws_sdk_kms::Client,
    key_id: &str,
    usage: KeyUsageType,
    spec: Option<KeySpec>,
) -> Result<(), KeyError> {
    let out =
        kms.describe_key().key_id(key_id).send().await.map_err(|e| kms_error("DescribeKey", key_id, e))?;
    let meta = out.key_metadata();
    let wrong = |what: String| KeyError::Kms {
        op: "DescribeKey",
        key: key_id.to_string(),
        code: "WrongKey".into(),
        message: what,
    };
    // A key whose description omits its usage (moto does for keys created without one) is
    // taken at its word; the first real use reports what KMS thinks.
    if let Some(actual) = meta.and_then(|m| m.key_usage())
        && *actual != usage
    {
        return Err(wrong(format!("key usage is {}; edict needs {}", actual.as_str(), usage.as_str())));
    }
    if let Some(spec) = spec {
        // moto reports only the deprecated CustomerMasterKeySpec; read it when KeySpec is absent.
        #[allow(deprecated)]
        let actual = meta.and_then(|m| {
            m.key_spec()
                .map(|s| s.as_str().to_string())
                .or_else(|| m.customer_master_key_spec().map(|s| s.as_str().to_string()))
        });
        if actual.as_deref() != Some(spec.as_str()) {
            return Err(wrong(format!(
                "key spec is {}; bundle signing needs {} (ES256)",
                actual.unwrap_or_default(),
                spec.as_str()
            )));
        }
    }
    if meta.is_some_and(|m| !m.enabled()) {
        return Err(wrong("the key is disabled".into()));
    }
    Ok(())
}

/// The tenant's data keys: the current one created on first use, all of them unwrapped.
async fn key_ring(
    master: &MasterKey,
    index: &dyn TenantIndex,
    tenant: &str,
    now: SystemTime,
) -> Result<KeyRing, StorageError> {
    let mut wrapped = index.data_keys(tenant).await?;
    if !wrapped.iter().any(|k| k.state == KeyState::Current) {
        let id =
            format!("dk-{}", now.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0));
        let (_, ciphertext) = master.generate(&id).await?;
        let key = WrappedKey { key_id: id, ciphertext, created: now, state: KeyState::Current };
        match index.put_data_key(tenant, &key).await {
            Ok(()) => {}
            // Another writer created the key at the same moment: use what is stored.
            Err(e) if e.is_conflict() => {}
            Err(e) => return Err(e.into()),
        }
        wrapped = index.data_keys(tenant).await?;
    }
    let mut current = None;
    let mut others = Vec::new();
    for key in &wrapped {
        let plain = master.unwrap(&key.key_id, &key.ciphertext).await?;
        if key.state == KeyState::Current && current.is_none() {
            current = Some(plain);
        } else {
            others.push(plain);
        }
    }
    let current = current
        .ok_or_else(|| IndexError::NotFound { what: format!("current data key of tenant {tenant}") })?;
    let mut ring = KeyRing::new(current);
    for key in others {
        ring.add(key);
    }
    Ok(ring)
}

/// Introduce a new current data key; older keys stay to read what they sealed.
pub async fn rotate_data_key(
    master: &MasterKey,
    index: &dyn TenantIndex,
    tenant: &str,
    now: SystemTime,
) -> Result<String, StorageError> {
    let id = format!("dk-{}", now.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    let (_, ciphertext) = master.generate(&id).await?;
    index
        .put_data_key(
            tenant,
            &WrappedKey { key_id: id.clone(), ciphertext, created: now, state: KeyState::Current },
        )
        .await?;
    Ok(id)
}
