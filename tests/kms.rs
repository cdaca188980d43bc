//! Envelope encryption against moto's KMS: data keys generated, wrapped, unwrapped with the
//! tenant bound as encryption context, rotated without losing what older keys sealed.
#![cfg(feature = "aws")]

mod common;

use common::aws;
use edict::registry::keys::{KeyError, KeyRing, MasterKey};

#[tokio::test]
async fn wrapped_data_keys_round_trip_and_rotate() {
    let master = MasterKey::new(aws::kms(), &aws::master_key().await, "acme");
    let (k1, wrapped1) = master.generate("k1").await.expect("generate");
    assert!(!wrapped1.is_empty());
    let mut ring = KeyRing::new(k1);
    let old = ring.seal(b"commit 1", b"commits/acme/1");

    // A restart: only the wrapped key survives; KMS unwraps it.
    let restored = KeyRing::new(master.unwrap("k1", &wrapped1).await.expect("unwrap"));
    assert_eq!(restored.open(&old, b"commits/acme/1").expect("opens"), b"commit 1");

    // Rotation: a new current key; the old one still opens what it sealed.
    let (k2, wrapped2) = master.generate("k2").await.expect("generate");
    ring.rotate(k2);
    let new = ring.seal(b"commit 2", b"commits/acme/2");
    let mut reloaded = KeyRing::new(master.unwrap("k2", &wrapped2).await.expect("unwrap k2"));
    reloaded.add(master.unwrap("k1", &wrapped1).await.expect("unwrap k1"));
    assert_eq!(reloaded.open(&old, b"commits/acme/1").expect("old"), b"commit 1");
    assert_eq!(reloaded.open(&new, b"commits/acme/2").expect("new"), b"commit 2");
}

#[tokio::test]
async fn a_wrapped_key_only_unwraps_for_its_tenant_and_name() {
    let key_id = aws::master_key().await;
    let acme = MasterKey::new(aws::kms(), &key_id, "acme");
    let (_, wrapped) = acme.generate("k1").await.expect("generate");
    let other = MasterKey::new(aws::kms(), &key_id, "globex");
    let err = other.unwrap("k1", &wrapped).await.expect_err("other tenant");
    assert!(
        matches!(&err, KeyError::Kms { op: "Decrypt", code, .. } if code == "InvalidCiphertextException"),
        "{err}"
    );
    let err = acme.unwrap("k2", &wrapped).await.expect_err("other key name");
    assert!(err.to_string().contains("Decrypt"), "{err}");
}

#[tokio::test]
async fn a_missing_master_key_names_itself() {
    let master = MasterKey::new(aws::kms(), "alias/edict-missing", "acme");
    let err = master.generate("k1").await.expect_err("no such key");
    let text = err.to_string();
    assert!(
        text.starts_with("KMS GenerateDataKey with key alias/edict-missing: NotFoundException"),
        "{text}"
    );
    assert!(!err.is_transient());
}
