//! A Tenant's whole storage on moto (S3, DynamoDB, KMS): connecting checks every resource and
//! names what is wrong; publishing signs bundles, seals the commit log, survives a reconnect and
//! a data-key rotation.
#![cfg(feature = "aws")]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use aws_sdk_kms::types::{KeySpec, KeyUsageType};
use common::aws;
use edict::api::{DynamoDbStorage, KmsStorage, S3Storage, Storage};
use edict::registry::Published;
use edict::registry::connect::{StorageError, connect, rotate_data_key};
use edict::registry::keys::{KeyRing, MasterKey};

fn clients() -> edict::registry::aws::Clients {
    let config = aws::sdk_config(&aws::moto(), "testing", "testing");
    edict::registry::aws::Clients {
        s3: aws::s3(&aws::moto(), "testing", "testing"),
        dynamodb: aws_sdk_dynamodb::Client::new(&config),
        kms: aws_sdk_kms::Client::new(&config),
    }
}

async fn storage() -> Storage {
    let bucket = aws::unique("edict");
    aws::s3(&aws::moto(), "testing", "testing").create_bucket().bucket(&bucket).send().await.expect("bucket");
    Storage {
        region: "us-east-1".into(),
        s3: S3Storage {
            bucket,
            prefix: "tenants/acme".into(),
            endpoint: None,
            force_path_style: true,
            sse_kms: true,
        },
        dynamodb: DynamoDbStorage { table: aws::unique("edict-index"), endpoint: None, create: true },
        kms: Some(KmsStorage {
            key_id: aws::create_key(None, Some(KeyUsageType::EncryptDecrypt)).await,
            signing_key_id: Some(
                aws::create_key(Some(KeySpec::EccNistP256), Some(KeyUsageType::SignVerify)).await,
            ),
            endpoint: None,
        }),
    }
}

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000)
}

#[tokio::test]
async fn publish_signs_seals_and_survives_reconnect_and_rotation() {
    let storage = storage().await;
    let clients = clients();
    let registry = connect("acme", &storage, &clients, "ci@acme", now()).await.expect("connect");
    let ws = edict::engine::workspace::Workspace::load(&[common::root().join("examples/acme")], "c1")
        .expect("examples");
    let build = ws.builds.values().find(|b| b.key.name == "payments-cluster").expect("payments");
    let (input, bundle) = (build.input.as_ref().expect("input"), build.bundle.as_ref().expect("bundle"));
    let gens = BTreeMap::new();
    assert_eq!(registry.publish(input, bundle, &gens, now()).await.expect("publish"), Published::Written);

    // The live object is signed: OPA's verification accepts it with the tenant as scope.
    let live = registry.store().get(&input.live_key()).await.expect("get").expect("live");
    let kms = storage.kms.as_ref().expect("kms");
    let signer = edict::registry::signing::KmsSigner::new(
        clients.kms.clone(),
        kms.signing_key_id.as_deref().expect("signing"),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("b.tar.gz"), &live.bytes).expect("write");
    std::fs::write(dir.path().join("k.pem"), signer.public_key_pem().await.expect("pem")).expect("write");
    let out = std::process::Command::new(common::python())
        .arg(common::root().join("scripts/opa_verify.py"))
        .args([dir.path().join("b.tar.gz"), dir.path().join("k.pem")])
        .args([signer.key_id(), "acme"])
        .output()
        .expect("verify");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // The commit log object is sealed, not plain JSON, and opens with the tenant's data key.
    let keys = registry.store().list("commits/acme/").await.expect("list");
    assert_eq!(keys.len(), 1);
    let sealed = registry.store().get(&keys[0]).await.expect("get").expect("commit").bytes;
    assert!(sealed.starts_with(b"EDK1") && serde_json::from_slice::<serde_json::Value>(&sealed).is_err());
    let index = registry.index().clone();
    let master = MasterKey::new(clients.kms.clone(), &kms.key_id, "acme");
    let wrapped = index.data_keys("acme").await.expect("keys");
    assert_eq!(wrapped.len(), 1, "one data key, created on first connect");
    let ring = KeyRing::new(master.unwrap(&wrapped[0].key_id, &wrapped[0].ciphertext).await.expect("unwrap"));
    let entry: serde_json::Value =
        serde_json::from_slice(&ring.open(&sealed, keys[0].as_bytes()).expect("opens")).expect("json");
    assert_eq!((entry["action"].as_str(), entry["actor"].as_str()), (Some("publish"), Some("ci@acme")));

    // Rotation, then a new connection: new entries use the new key, old ones still open.
    let new_id = rotate_data_key(&master, index.as_ref(), "acme", now()).await.expect("rotate");
    let again = connect("acme", &storage, &clients, "ci@acme", now()).await.expect("reconnect");
    let mut changed = input.clone();
    changed.policies[0].rego = format!("{}\n# changed\n", changed.policies[0].rego).into();
    let b2 = edict::bundle::build(&changed);
    assert_eq!(
        again.publish(&changed, &b2, &gens, now() + Duration::from_secs(5)).await.expect("publish"),
        Published::Written
    );
    let keys = again.store().list("commits/acme/").await.expect("list");
    let newest = again.store().get(&keys[1]).await.expect("get").expect("commit").bytes;
    assert!(
        newest.starts_with(format!("EDK1{}{new_id}", new_id.len() as u8 as char).as_bytes()),
        "sealed with the new key"
    );
    assert_eq!(index.data_keys("acme").await.expect("keys").len(), 2);
}

#[tokio::test]
async fn misconfigured_storage_names_the_resource_and_operation() {
    let clients = clients();
    let good = storage().await;

    let mut s = good.clone();
    s.s3.bucket = "edict-no-such-bucket".into();
    let err = connect("acme", &s, &clients, "t", now()).await.expect_err("no bucket").to_string();
    assert!(err.starts_with("HeadBucket s3://edict-no-such-bucket: NoSuchBucket"), "{err}");

    let mut s = good.clone();
    s.dynamodb.create = false;
    s.dynamodb.table = "edict-missing-table".into();
    let err = connect("acme", &s, &clients, "t", now()).await.expect_err("no table");
    assert!(matches!(err, StorageError::Index(_)) && !err.is_transient(), "{err}");
    assert!(err.to_string().contains("edict-missing-table"), "{err}");

    let mut s = good.clone();
    if let Some(k) = s.kms.as_mut() {
        k.signing_key_id = Some(aws::create_key(None, Some(KeyUsageType::EncryptDecrypt)).await);
    }
    let err = connect("acme", &s, &clients, "t", now()).await.expect_err("symmetric signing key").to_string();
    assert!(
        err.starts_with("KMS DescribeKey with key ")
            && err.contains("WrongKey")
            && err.contains("edict needs SIGN_VERIFY"),
        "{err}"
    );

    let mut s = good.clone();
    if let Some(k) = s.kms.as_mut() {
        k.key_id = "alias/edict-nope".into();
    }
    let err = connect("acme", &s, &clients, "t", now()).await.expect_err("missing master key").to_string();
    assert!(err.contains("alias/edict-nope") && err.contains("NotFound"), "{err}");
}
