//! The S3 object store: whole-object writes with `If-None-Match` / `If-Match`, SSE-KMS with
//! the tenant's key, and a sha256 of the content recorded in the object's metadata.
//!
//! Works with AWS S3 and S3-compatible stores (moto, SeaweedFS) through an endpoint override.

use async_trait::async_trait;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;

use super::{ObjectMeta, ObjectStore, Precondition, StoreError, StoredObject, content_digest};

/// The user-metadata key holding the content's sha256.
const DIGEST_META: &str = "edict-sha256";

/// A bucket (and key prefix) in S3.
#[derive(Clone, Debug)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    sse_kms_key: Option<String>,
}

impl S3Store {
    /// A store over `bucket`, with every key under `prefix` (may be empty), encrypting objects
    /// with the KMS key `sse_kms_key` when given.
    pub fn new(client: aws_sdk_s3::Client, bucket: &str, prefix: &str, sse_kms_key: Option<String>) -> Self {
        S3Store {
            client,
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            sse_kms_key,
        }
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The S3 key of a store key.
    pub fn object_key(&self, key: &str) -> String {
        if self.prefix.is_empty() { key.to_string() } else { format!("{}/{key}", self.prefix) }
    }

    fn url(&self, key: &str) -> String {
        format!("s3://{}/{}", self.bucket, self.object_key(key))
    }

    fn error<E, R>(&self, op: &'static str, key: &str, err: SdkError<E, R>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let (code, message) = crate::registry::aws::describe(&err);
        if code == "PreconditionFailed" || code == "ConditionalRequestConflict" {
            return StoreError::PreconditionFailed { op, key: self.url(key) };
        }
        StoreError::Service { op, key: self.url(key), code, message }
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn put(
        &self,
        key: &str,
        bytes: &[u8],
        precondition: Precondition,
    ) -> Result<ObjectMeta, StoreError> {
        let digest = content_digest(bytes);
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.object_key(key))
            .body(ByteStream::from(bytes.to_vec()))
            .metadata(DIGEST_META, &digest);
        if key.ends_with(".tar.gz") {
            req = req.content_type("application/gzip");
        }
        if let Some(kms) = &self.sse_kms_key {
            req = req.server_side_encryption(ServerSideEncryption::AwsKms).ssekms_key_id(kms);
        }
        req = match precondition {
            Precondition::None => req,
            Precondition::IfAbsent => req.if_none_match("*"),
            Precondition::IfMatch(tag) => req.if_match(tag),
        };
        let out = req.send().await.map_err(|e| self.error("PutObject", key, e))?;
        Ok(ObjectMeta {
            etag: out.e_tag().unwrap_or_default().to_string(),
            size: bytes.len() as u64,
            sha256: Some(digest),
        })
    }

    async fn get(&self, key: &str) -> Result<Option<StoredObject>, StoreError> {
        let out = match self.client.get_object().bucket(&self.bucket).key(self.object_key(key)).send().await {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(self.error("GetObject", key, e)),
        };
        let etag = out.e_tag().unwrap_or_default().to_string();
        let sha256 = out.metadata().and_then(|m| m.get(DIGEST_META)).cloned();
        let body = out.body.collect().await.map_err(|e| StoreError::Service {
            op: "GetObject",
            key: self.url(key),
            code: "Unreachable".into(),
            message: e.to_string(),
        })?;
        let bytes = body.into_bytes().to_vec();
        Ok(Some(StoredObject { meta: ObjectMeta { etag, size: bytes.len() as u64, sha256 }, bytes }))
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        match self.client.head_object().bucket(&self.bucket).key(self.object_key(key)).send().await {
            Ok(out) => Ok(Some(ObjectMeta {
                etag: out.e_tag().unwrap_or_default().to_string(),
                size: out.content_length().unwrap_or_default().max(0) as u64,
                sha256: out.metadata().and_then(|m| m.get(DIGEST_META)).cloned(),
            })),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(self.error("HeadObject", key, e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.object_key(key))
            .send()
            .await
            .map_err(|e| self.error("DeleteObject", key, e))?;
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let full = self.object_key(prefix);
        let strip = if self.prefix.is_empty() { 0 } else { self.prefix.len() + 1 };
        let mut keys = Vec::new();
        let mut pages =
            self.client.list_objects_v2().bucket(&self.bucket).prefix(&full).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error("ListObjectsV2", prefix, e))?;
            for object in page.contents() {
                if let Some(k) = object.key() {
                    keys.push(k[strip.min(k.len())..].to_string());
                }
            }
        }
        keys.sort();
        Ok(keys)
    }
}
