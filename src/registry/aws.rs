//! AWS clients for a Tenant's storage and identity, from the standard credential chain.

use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::api::Storage;
use crate::api::tenant::Identity;

/// The clients a Tenant's storage needs.
#[derive(Clone, Debug)]
pub struct Clients {
    /// S3, for the bundle registry.
    pub s3: aws_sdk_s3::Client,
    /// DynamoDB, for the index.
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// KMS, for data keys and signing.
    pub kms: aws_sdk_kms::Client,
}

/// Build clients for `storage`: region and endpoints from the Tenant, credentials from the
/// environment, profile or web identity (IRSA).
pub async fn clients(storage: &Storage) -> Clients {
    let shared = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(storage.region.clone()))
        .load()
        .await;
    let mut s3 = aws_sdk_s3::config::Builder::from(&shared).force_path_style(storage.s3.force_path_style);
    if let Some(url) = &storage.s3.endpoint {
        s3 = s3.endpoint_url(url);
    }
    let mut dynamodb = aws_sdk_dynamodb::config::Builder::from(&shared);
    if let Some(url) = &storage.dynamodb.endpoint {
        dynamodb = dynamodb.endpoint_url(url);
    }
    let mut kms = aws_sdk_kms::config::Builder::from(&shared);
    if let Some(url) = storage.kms.as_ref().and_then(|k| k.endpoint.as_ref()) {
        kms = kms.endpoint_url(url);
    }
    Clients {
        s3: aws_sdk_s3::Client::from_conf(s3.build()),
        dynamodb: aws_sdk_dynamodb::Client::from_conf(dynamodb.build()),
        kms: aws_sdk_kms::Client::from_conf(kms.build()),
    }
}

/// An IAM client for a Tenant's identity: region and credentials as for [`clients`], the
/// endpoint from `identity.endpoint`. IAM is global; the SDK signs for the region's partition.
pub async fn iam(storage: &Storage, identity: &Identity) -> aws_sdk_iam::Client {
    let shared = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(storage.region.clone()))
        .load()
        .await;
    iam_from(&shared, identity)
}

/// [`iam`] from an SDK configuration already loaded (tests build one with static credentials).
pub fn iam_from(shared: &aws_config::SdkConfig, identity: &Identity) -> aws_sdk_iam::Client {
    let mut iam = aws_sdk_iam::config::Builder::from(shared);
    if let Some(url) = &identity.endpoint {
        iam = iam.endpoint_url(url);
    }
    aws_sdk_iam::Client::from_conf(iam.build())
}

/// The service's error code and message for an SDK error. A request that never got an answer
/// (connection refused, timeout) has the code `Unreachable`.
pub fn describe<E, R>(err: &SdkError<E, R>) -> (String, String)
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let code = match err {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => "Unreachable".to_string(),
        _ => err.code().unwrap_or("Unknown").to_string(),
    };
    let message = match err.message() {
        Some(m) => m.to_string(),
        None => aws_smithy_types::error::display::DisplayErrorContext(err).to_string(),
    };
    (code, message)
}
