//! Clients for the local AWS wire-protocol servers `scripts/servers.sh` starts (moto,
//! SeaweedFS), with static credentials.

use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::config::{Credentials, SharedCredentialsProvider};

/// An SDK configuration for `endpoint` with static credentials.
pub fn config(endpoint: &str, access: &str, secret: &str) -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            access, secret, None, None, "bench",
        )))
        .build()
}

/// An S3 client addressing buckets by path, as local servers need.
pub fn s3(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(config).force_path_style(true).build())
}

/// Counts the HTTP requests of every client it is added to (retries included).
#[derive(Clone, Debug, Default)]
pub struct Requests(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Requests {
    /// Requests sent so far.
    pub fn count(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl aws_sdk_s3::config::Intercept for Requests {
    fn name(&self) -> &'static str {
        "count requests"
    }

    fn read_before_transmit(
        &self,
        _context: &aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _components: &aws_sdk_s3::config::RuntimeComponents,
        _cfg: &mut aws_sdk_s3::config::ConfigBag,
    ) -> Result<(), aws_sdk_s3::error::BoxError> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

/// The registry of Tenant `acme` on a fresh bucket and table of moto at `endpoint`, connected
/// as the operator and the CLI connect (`registry::connect`; no KMS), and a counter of the S3
/// and DynamoDB requests its clients send.
pub async fn moto_registry(endpoint: &str) -> (edict::registry::Registry, Requests) {
    let shared = config(endpoint, "testing", "testing");
    let requests = Requests::default();
    let clients = edict::registry::aws::Clients {
        s3: aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&shared)
                .force_path_style(true)
                .interceptor(requests.clone())
                .build(),
        ),
        dynamodb: aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&shared).interceptor(requests.clone()).build(),
        ),
        kms: aws_sdk_kms::Client::new(&shared),
    };
    let bucket = format!("edict-bench-{}-{}", std::process::id(), next_bucket());
    clients.s3.create_bucket().bucket(&bucket).send().await.expect("bucket");
    let storage: edict::api::Storage = serde_json::from_value(serde_json::json!({
        "region": "us-east-1",
        "s3": {"bucket": bucket, "endpoint": endpoint, "forcePathStyle": true, "sseKms": false},
        "dynamodb": {"table": bucket, "endpoint": endpoint, "create": true},
    }))
    .expect("storage");
    let registry =
        edict::registry::connect::connect("acme", &storage, &clients, "bench", std::time::SystemTime::now())
            .await
            .expect("connects to moto");
    (registry, requests)
}

/// A number that keeps the buckets of one process apart.
fn next_bucket() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
}
