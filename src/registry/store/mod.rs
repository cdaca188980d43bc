//! Where bundles go: a small object-store trait with whole-object, atomic writes.
//!
//! The pipeline never knows which store it has: the directory store here (the embedded
//! default) or S3.

pub mod changes;
pub mod dir;
#[cfg(feature = "aws")]
pub mod s3;

use async_trait::async_trait;

pub use changes::KeyChanges;
pub use dir::DirStore;
#[cfg(feature = "aws")]
pub use s3::S3Store;

/// What a store says about an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The store's tag for this version of the object (what `If-Match` and HTTP caches use).
    pub etag: String,
    /// Size in bytes.
    pub size: u64,
    /// Hex sha256 of the content, when known (edict records it on every write), so that
    /// "is this already live?" needs no download whatever tag format the store uses.
    pub sha256: Option<String>,
}

/// An object's bytes and metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredObject {
    /// The content.
    pub bytes: Vec<u8>,
    /// Its metadata.
    pub meta: ObjectMeta,
}

/// A store failure, naming the operation and the key.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached or refused the operation.
    #[error("{op} {key}: {source}")]
    Io {
        /// The operation (`put`, `get`, ...).
        op: &'static str,
        /// The object key.
        key: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A key that would escape the store (`..`, absolute).
    #[error("invalid object key {0:?}")]
    InvalidKey(String),
    /// A conditional write whose condition did not hold (the object exists, or changed).
    #[error("{op} {key}: precondition failed (the object exists or was changed by another writer)")]
    PreconditionFailed {
        /// The operation.
        op: &'static str,
        /// The object key.
        key: String,
    },
    /// The service answered with an error (wrong bucket, access denied, ...) or could not be reached.
    #[error("{op} {key}: {code}: {message}")]
    Service {
        /// The operation (`PutObject`, ...).
        op: &'static str,
        /// The object (`s3://bucket/key`).
        key: String,
        /// The service's error code (`NoSuchBucket`, `AccessDenied`, `Unreachable`, ...).
        code: String,
        /// The service's message.
        message: String,
    },
}

impl StoreError {
    /// Whether retrying later may succeed (the store was unreachable or busy), as opposed to
    /// a configuration problem that waits for a change.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Io { .. } => true,
            StoreError::Service { code, .. } => {
                matches!(
                    code.as_str(),
                    "Unreachable"
                        | "Timeout"
                        | "SlowDown"
                        | "InternalError"
                        | "ServiceUnavailable"
                        | "ThrottlingException"
                        | "RequestTimeout"
                )
            }
            StoreError::InvalidKey(_) | StoreError::PreconditionFailed { .. } => false,
        }
    }
}

/// A condition on a write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// Write whatever is there.
    None,
    /// Write only if no object has the key (`If-None-Match: *`).
    IfAbsent,
    /// Write only if the object still has this tag (`If-Match`).
    IfMatch(String),
}

/// A bucket of objects addressed by `/`-separated keys.
#[async_trait]
pub trait ObjectStore: Send + Sync + std::fmt::Debug {
    /// Write a whole object atomically: readers see the old bytes or the new, never a mix.
    /// A failed `precondition` is [`StoreError::PreconditionFailed`] and writes nothing.
    async fn put(
        &self,
        key: &str,
        bytes: &[u8],
        precondition: Precondition,
    ) -> Result<ObjectMeta, StoreError>;
    /// Read an object; `None` when absent.
    async fn get(&self, key: &str) -> Result<Option<StoredObject>, StoreError>;
    /// Metadata of an object; `None` when absent.
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError>;
    /// Remove an object (absent is fine).
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Keys under a prefix, sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
}

/// Hex sha256 of some bytes: the directory store's tag, and the digest every store records.
pub fn content_digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
