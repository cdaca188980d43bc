//! Where bundles go: a small object-store trait with whole-object, atomic writes.
//!
//! The pipeline never knows which store it has: the directory store here (the embedded
//! default) or S3.

pub mod dir;

use async_trait::async_trait;

pub use dir::DirStore;

/// What a store says about an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    /// An opaque content tag; equal tags mean equal bytes.
    pub etag: String,
    /// Size in bytes.
    pub size: u64,
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
}

/// A bucket of objects addressed by `/`-separated keys.
#[async_trait]
pub trait ObjectStore: Send + Sync + std::fmt::Debug {
    /// Write a whole object atomically: readers see the old bytes or the new, never a mix.
    async fn put(&self, key: &str, bytes: &[u8]) -> Result<ObjectMeta, StoreError>;
    /// Read an object; `None` when absent.
    async fn get(&self, key: &str) -> Result<Option<StoredObject>, StoreError>;
    /// Metadata of an object; `None` when absent.
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError>;
    /// Remove an object (absent is fine).
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Keys under a prefix, sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
}

/// The tag a store gives these bytes when it computes tags from content (hex sha256).
pub fn content_etag(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
