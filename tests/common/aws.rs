//! Clients for the test servers that `scripts/servers.sh` starts (moto, SeaweedFS).

use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::config::{Credentials, retry::RetryConfig, timeout::TimeoutConfig};

/// An endpoint from the environment, or a failure that says how to get one.
pub fn endpoint(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run `scripts/test.sh`, or `eval \"$(scripts/servers.sh start)\"` before `cargo test --features aws`")
    })
}

/// moto's endpoint.
pub fn moto() -> String {
    endpoint("EDICT_MOTO_ENDPOINT")
}

/// SeaweedFS's S3 endpoint and its credentials.
pub fn seaweed() -> (String, String, String) {
    (
        endpoint("EDICT_SEAWEED_ENDPOINT"),
        endpoint("EDICT_SEAWEED_ACCESS_KEY"),
        endpoint("EDICT_SEAWEED_SECRET_KEY"),
    )
}

/// Shared SDK settings: static credentials, us-east-1, short timeouts and two attempts, so
/// that a test of an unreachable endpoint is quick.
pub fn sdk_config(endpoint: &str, access: &str, secret: &str) -> aws_config::SdkConfig {
    sdk_config_with_attempts(endpoint, access, secret, 2)
}

/// [`sdk_config`] with the SDK's own retries set: 1 lets every failure reach edict's back-off.
pub fn sdk_config_with_attempts(
    endpoint: &str,
    access: &str,
    secret: &str,
    attempts: u32,
) -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_s3::config::SharedCredentialsProvider::new(Credentials::new(
            access,
            secret,
            None,
            None,
            "edict-tests",
        )))
        .retry_config(RetryConfig::standard().with_max_attempts(attempts))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_timeout(Duration::from_secs(20))
                .build(),
        )
        .build()
}

/// An S3 client (path-style) for an endpoint.
pub fn s3(endpoint: &str, access: &str, secret: &str) -> aws_sdk_s3::Client {
    s3_from(&sdk_config(endpoint, access, secret))
}

/// An S3 client (path-style) from a config.
pub fn s3_from(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(config).force_path_style(true).build())
}

/// A KMS client for moto.
pub fn kms() -> aws_sdk_kms::Client {
    aws_sdk_kms::Client::new(&sdk_config(&moto(), "testing", "testing"))
}

/// A unique lowercase name for buckets, tables and keys, so tests can share one server.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{}-{}", std::process::id(), nanos, N.fetch_add(1, Ordering::Relaxed))
}

/// A new KMS key in moto: symmetric (the default) or of the given spec and usage. Returns its id.
pub async fn create_key(
    spec: Option<aws_sdk_kms::types::KeySpec>,
    usage: Option<aws_sdk_kms::types::KeyUsageType>,
) -> String {
    let out =
        kms().create_key().set_key_spec(spec).set_key_usage(usage).send().await.expect("create KMS key");
    out.key_metadata().map(|m| m.key_id().to_string()).expect("key id")
}

/// A new symmetric (ENCRYPT_DECRYPT) key in moto.
pub async fn master_key() -> String {
    create_key(None, None).await
}

/// A new IAM OIDC provider in moto with its own issuer (as EKS names them), so tests can share
/// one server. Returns (provider ARN, issuer host/path without `https://`).
pub async fn oidc_provider(iam: &aws_sdk_iam::Client) -> (String, String) {
    let issuer = format!("oidc.eks.us-east-1.amazonaws.com/id/{}", unique("T").to_uppercase());
    let out = iam
        .create_open_id_connect_provider()
        .url(format!("https://{issuer}"))
        .client_id_list("sts.amazonaws.com")
        .thumbprint_list("9e99a48a9960b14926bb7f3b02e22da2b0ab7280")
        .send()
        .await
        .expect("create OIDC provider");
    (out.open_id_connect_provider_arn().expect("provider ARN").to_string(), issuer)
}
