//! `edict build --publish`, `edict history` and `edict rollback` as a user runs them, against a
//! Tenant whose storage is moto (S3, DynamoDB, KMS), credentials from the environment.
#![cfg(feature = "aws")]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::aws;

fn edict(dir: &Path, args: &[&str]) -> Output {
    // One publish at a time: moto's DynamoDB is not safe under concurrent transactions on one
    // table (real DynamoDB is); the default is 8 in flight.
    let serial: &[&str] = if args.contains(&"--publish") { &["--parallel", "1"] } else { &[] };
    Command::new(env!("CARGO_BIN_EXE_edict"))
        .args(args)
        .args(serial)
        .arg("-f")
        .arg(dir)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("USER", "ana")
        .output()
        .expect("run edict")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The example manifests, with the Tenant's storage on moto (a new table and master key).
/// Returns the table.
async fn manifests(dir: &Path, bucket: &str, create_bucket: bool) -> String {
    if create_bucket {
        aws::s3(&aws::moto(), "testing", "testing")
            .create_bucket()
            .bucket(bucket)
            .send()
            .await
            .expect("bucket");
    }
    let table = aws::unique("edict-cli");
    let master = aws::master_key().await;
    write_manifests(dir, bucket, &table, &master);
    table
}

/// The example manifests with the Tenant's storage set to this bucket, table and master key.
fn write_manifests(dir: &Path, bucket: &str, table: &str, master: &str) {
    let moto = aws::moto();
    common::copy_examples(dir);
    let tenant = std::fs::read_to_string(dir.join("tenant.yaml")).expect("tenant");
    let storage = format!(
        "  storage:\n    region: us-east-1\n    s3: {{bucket: {bucket}, prefix: acme, endpoint: \"{moto}\", forcePathStyle: true}}\n    dynamodb: {{table: {table}, endpoint: \"{moto}\", create: true}}\n    kms: {{keyId: {master}, endpoint: \"{moto}\"}}\n",
    );
    std::fs::write(dir.join("tenant.yaml"), format!("{tenant}{storage}")).expect("write");
}

#[tokio::test]
async fn publish_history_and_rollback() {
    let dir = tempfile::tempdir().expect("tempdir");
    manifests(dir.path(), &aws::unique("edict-cli"), true).await;

    let first = edict(dir.path(), &["build", "--publish"]);
    assert!(first.status.success(), "{}", text(&first));
    assert_eq!(text(&first).matches("ok, published").count(), 3, "{}", text(&first));
    let again = edict(dir.path(), &["build", "--publish"]);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(
        text(&again).matches("ok, unchanged").count(),
        3,
        "an unchanged build writes nothing: {}",
        text(&again)
    );

    let history = |dir: &Path| -> Vec<serde_json::Value> {
        let out = edict(dir, &["history", "--system", "acme-payments/payments-cluster", "-o", "json"]);
        assert!(out.status.success(), "{}", text(&out));
        serde_json::from_slice(&out.stdout).expect("json")
    };
    let one = history(dir.path());
    assert_eq!(one.len(), 1);
    assert_eq!(one[0]["live"], true);
    let original = one[0]["revision"].as_str().expect("revision").to_string();

    let systems = dir.path().join("systems.yaml");
    let changed = std::fs::read_to_string(&systems)
        .expect("read")
        .replace("must not be privileged", "may not run privileged");
    std::fs::write(&systems, changed).expect("write");
    let published = edict(dir.path(), &["build", "--publish"]);
    assert!(published.status.success(), "{}", text(&published));
    assert_eq!(
        text(&published).matches("ok, published").count(),
        1,
        "only the changed System: {}",
        text(&published)
    );
    let two = history(dir.path());
    assert_eq!(two.len(), 2);
    assert_eq!((two[0]["live"].as_bool(), two[1]["live"].as_bool()), (Some(true), Some(false)));

    let out = edict(
        dir.path(),
        &["rollback", "--system", "acme-payments/payments-cluster", "--to", &original[..12]],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&format!("revision {original} is live again")), "{}", text(&out));
    let after = history(dir.path());
    let live: Vec<&str> =
        after.iter().filter(|r| r["live"] == true).filter_map(|r| r["revision"].as_str()).collect();
    assert_eq!(live, vec![original.as_str()]);
    let table = edict(dir.path(), &["history", "--system", "acme-payments/payments-cluster"]);
    assert!(text(&table).starts_with("REVISION"), "{}", text(&table));
}

#[tokio::test]
async fn a_missing_bucket_fails_the_build_with_the_resource_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    manifests(dir.path(), "edict-cli-no-such-bucket", false).await;
    let out = edict(dir.path(), &["build", "--publish", "--retry-for", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("PUBLISH FAILED"), "{t}");
    assert!(t.contains("Tenant acme: HeadBucket s3://edict-cli-no-such-bucket: NoSuchBucket"), "{t}");
}

#[tokio::test]
async fn two_processes_publishing_the_same_systems_stay_consistent() {
    let (a, b) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let bucket = aws::unique("edict-race");
    let table = manifests(a.path(), &bucket, true).await;
    let master = std::fs::read_to_string(a.path().join("tenant.yaml"))
        .expect("tenant")
        .split("keyId: ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .expect("key id")
        .to_string();
    write_manifests(b.path(), &bucket, &table, &master);
    // The second writer builds different bundles for the same Systems.
    let systems = b.path().join("systems.yaml");
    let changed = std::fs::read_to_string(&systems)
        .expect("read")
        .replace("must not be privileged", "is privileged: no");
    std::fs::write(&systems, changed).expect("write");

    let spawn = |dir: &Path| {
        Command::new(env!("CARGO_BIN_EXE_edict"))
            // One at a time within each process: moto's DynamoDB is not safe under concurrent
            // transactions on one table; the two processes still race each other.
            .args(["build", "--publish", "--parallel", "1", "-f"])
            .arg(dir)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn edict")
    };
    let (pa, pb) = (spawn(a.path()), spawn(b.path()));
    let (oa, ob) = (pa.wait_with_output().expect("a"), pb.wait_with_output().expect("b"));
    assert!(oa.status.success(), "{}", text(&oa));
    assert!(ob.status.success(), "{}", text(&ob));

    // Whoever finished last is live; the index and the store agree on every System.
    use edict::registry::index::TenantIndex;
    let config = aws::sdk_config(&aws::moto(), "testing", "testing");
    let index =
        edict::registry::index::dynamodb::DynamoIndex::new(aws_sdk_dynamodb::Client::new(&config), &table);
    let s3 = aws::s3(&aws::moto(), "testing", "testing");
    for system in ["acme-data/batch-api", "acme-payments/payments-cluster", "acme-shop/storefront-envoy"] {
        let id = format!("local/{system}");
        let live = index.get_system("acme", &id).await.expect("index").and_then(|r| r.live).expect("live");
        let object = s3
            .get_object()
            .bucket(&bucket)
            .key(format!("acme/{}", live.key))
            .send()
            .await
            .expect("live object");
        let bytes = object.body.collect().await.expect("body").into_bytes();
        assert_eq!(
            edict::registry::store::content_digest(&bytes),
            live.sha256,
            "{system}: store and index agree"
        );
        for r in index.revisions("acme", &id, None).await.expect("revisions") {
            s3.head_object()
                .bucket(&bucket)
                .key(format!("acme/{}", r.key))
                .send()
                .await
                .expect("revision object exists");
        }
    }
}
