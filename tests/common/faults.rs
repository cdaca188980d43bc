//! Stores that fail or count on purpose, to test what publishing does when storage misbehaves.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use edict::registry::store::{ObjectMeta, ObjectStore, Precondition, StoreError, StoredObject};

/// Wraps a store: counts writes, and fails every call while `down` is set (as an unreachable
/// endpoint does), or fails the `fail_put`-th put from now (a crash mid-publish).
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    /// Every call fails with a transient error while set.
    pub down: AtomicBool,
    /// Puts that reached the inner store.
    pub puts: AtomicUsize,
    /// Deletes that reached the inner store.
    pub deletes: AtomicUsize,
    /// Fail the put with this 1-based number (counting puts attempted), 0 for never.
    pub fail_put: AtomicUsize,
    /// Puts attempted so far.
    pub attempted: AtomicUsize,
}

impl FaultyStore {
    /// Wrap `inner`.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        FaultyStore {
            inner,
            down: AtomicBool::new(false),
            puts: AtomicUsize::new(0),
            deletes: AtomicUsize::new(0),
            fail_put: AtomicUsize::new(0),
            attempted: AtomicUsize::new(0),
        }
    }

    fn check(&self, op: &'static str, key: &str) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Service {
                op,
                key: key.to_string(),
                code: "Unreachable".into(),
                message: "connection refused (injected)".into(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put(
        &self,
        key: &str,
        bytes: &[u8],
        precondition: Precondition,
    ) -> Result<ObjectMeta, StoreError> {
        self.check("PutObject", key)?;
        let n = self.attempted.fetch_add(1, Ordering::SeqCst) + 1;
        if self.fail_put.load(Ordering::SeqCst) == n {
            return Err(StoreError::Service {
                op: "PutObject",
                key: key.to_string(),
                code: "Unreachable".into(),
                message: "crashed before this write (injected)".into(),
            });
        }
        let out = self.inner.put(key, bytes, precondition).await;
        if out.is_ok() {
            self.puts.fetch_add(1, Ordering::SeqCst);
        }
        out
    }

    async fn get(&self, key: &str) -> Result<Option<StoredObject>, StoreError> {
        self.check("GetObject", key)?;
        self.inner.get(key).await
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        self.check("HeadObject", key)?;
        self.inner.head(key).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.check("DeleteObject", key)?;
        self.deletes.fetch_add(1, Ordering::SeqCst);
        self.inner.delete(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.check("ListObjectsV2", prefix)?;
        self.inner.list(prefix).await
    }
}
