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
