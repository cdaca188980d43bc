//! Bundles signed through KMS (ES256) are verified by OPA's own JWT verification, and rejected
//! when a file is altered, the key is another, or the scope differs.
#![cfg(feature = "aws")]

mod common;

use std::path::Path;
use std::process::Command;

use aws_sdk_kms::types::{KeySpec, KeyUsageType};
use common::aws;
use edict::registry::signing::KmsSigner;

async fn signing_key() -> String {
    aws::create_key(Some(KeySpec::EccNistP256), Some(KeyUsageType::SignVerify)).await
}

fn verify(dir: &Path, archive: &[u8], pem: &str, key_id: &str, scope: &str) -> Result<String, String> {
    let bundle = dir.join("bundle.tar.gz");
    let key = dir.join("key.pem");
    std::fs::write(&bundle, archive).expect("write bundle");
    std::fs::write(&key, pem).expect("write key");
    let out = Command::new(common::python())
        .arg(common::root().join("scripts/opa_verify.py"))
        .args([bundle.as_os_str(), key.as_os_str()])
        .args([key_id, scope])
        .output()
        .expect("run opa_verify.py");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() { Ok(stdout) } else { Err(stderr) }
}

/// Replace one file of an archive, keeping everything else (the signature included).
fn tamper(archive: &[u8], name: &str, edit: impl Fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
    let entries = edict::bundle::read_archive(archive).expect("read archive");
    let changed: Vec<(String, Vec<u8>)> =
        entries.into_iter().map(|(p, b)| if p == name { (p, edit(&b)) } else { (p, b) }).collect();
    edict::bundle::write_archive(&changed)
}

#[tokio::test]
async fn opa_accepts_signed_bundles_and_rejects_tampering() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ws = edict::engine::workspace::Workspace::load(&[common::root().join("examples/acme")], "c1")
        .expect("examples");
    let build = ws.builds.values().find(|b| b.key.name == "payments-cluster").expect("payments");
    let bundle = build.bundle.as_ref().expect("bundle");
    let key_id = signing_key().await;
    let signer = KmsSigner::new(aws::kms(), &key_id);
    let pem = signer.public_key_pem().await.expect("public key");
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");

    let signatures = signer.sign_bundle(bundle, "write").await.expect("sign");
    let signed = bundle.signed_archive(&signatures);
    let ok = verify(dir.path(), &signed, &pem, &key_id, "write").expect("OPA verifies the signed bundle");
    assert!(ok.contains("\"verified\": true"), "{ok}");

    // Every file counts: a policy, the data document and the manifest.
    let policy = "stacks/kubernetes_baseline/proxies/restrict-proxies.rego";
    for (name, edit) in [
        (policy, Box::new(|b: &[u8]| [b, b"\n# extra".as_slice()].concat()) as Box<dyn Fn(&[u8]) -> Vec<u8>>),
        (
            "data.json",
            Box::new(|b: &[u8]| String::from_utf8_lossy(b).replace("production", "dev").into_bytes()),
        ),
        (
            ".manifest",
            Box::new(|b: &[u8]| {
                String::from_utf8_lossy(b).replace("\"rego_version\":1", "\"rego_version\":0").into_bytes()
            }),
        ),
    ] {
        let altered = tamper(&signed, name, edit);
        let err = verify(dir.path(), &altered, &pem, &key_id, "write").expect_err("tampering is caught");
        assert!(err.contains(&format!("{name}: digest mismatch")), "{name}: {err}");
    }
    let extra = {
        let mut entries = edict::bundle::read_archive(&signed).expect("read");
        entries.push(("sneaky/x.rego".into(), b"package sneaky".to_vec()));
        edict::bundle::write_archive(&entries)
    };
    let err = verify(dir.path(), &extra, &pem, &key_id, "write").expect_err("an added file is caught");
    assert!(err.contains("sneaky/x.rego not included in bundle signature"), "{err}");

    // Signed by another key: the configured public key does not verify it.
    let other = KmsSigner::new(aws::kms(), &signing_key().await);
    let forged = bundle.signed_archive(&other.sign_bundle(bundle, "write").await.expect("sign"));
    let err = verify(dir.path(), &forged, &pem, other.key_id(), "write").expect_err("wrong key");
    assert!(err.contains("signature does not verify"), "{err}");
    let err = verify(dir.path(), &forged, &pem, &key_id, "write").expect_err("wrong kid");
    assert!(err.contains("is not the configured key"), "{err}");

    // A scope other than the configured one.
    let err = verify(dir.path(), &signed, &pem, &key_id, "read").expect_err("scope");
    assert!(err.contains("scope mismatch"), "{err}");
}

#[tokio::test]
async fn a_key_that_cannot_sign_is_a_clear_error() {
    let key_id = aws::master_key().await;
    let signer = KmsSigner::new(aws::kms(), &key_id);
    let err = signer.sign(b"payload").await.expect_err("a symmetric key cannot sign");
    let text = err.to_string();
    assert!(text.starts_with(&format!("KMS Sign with key {key_id}: ")), "{text}");
    let missing = KmsSigner::new(aws::kms(), "alias/does-not-exist");
    let text = missing.sign(b"payload").await.expect_err("no such key").to_string();
    assert!(text.contains("alias/does-not-exist") && text.contains("NotFound"), "{text}");
}
