//! Publishing built bundles to an object store.
//!
//! Order matters for crash safety: the revision object is written first, then the live
//! object is replaced in one atomic write. An unchanged bundle writes nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::bundle::{Bundle, BundleInput};
use crate::store::{ObjectStore, Precondition, StoreError, content_digest};

/// What a publish did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Published {
    /// The live bundle already had these bytes: nothing was written.
    Unchanged,
    /// A new revision was written and made live.
    Written,
}

/// Publishes bundles, remembering the live tag of each so unchanged bundles cost no I/O.
#[derive(Debug)]
pub struct Publisher {
    store: Arc<dyn ObjectStore>,
    /// Live key → sha256 of the live bytes.
    live: Mutex<HashMap<String, String>>,
}

impl Publisher {
    /// A publisher writing to `store`.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Publisher { store, live: Mutex::new(HashMap::new()) }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Make `bundle` the live bundle of the System described by `input`.
    pub async fn publish(&self, input: &BundleInput, bundle: &Bundle) -> Result<Published, StoreError> {
        let live_key = input.live_key();
        let bytes = bundle.archive();
        let digest = content_digest(&bytes);
        let known = self.live.lock().ok().and_then(|l| l.get(&live_key).cloned());
        let current = match known {
            Some(d) => Some(d),
            None => self.store.head(&live_key).await?.and_then(|m| m.sha256),
        };
        if current.as_deref() == Some(digest.as_str()) {
            self.remember(&live_key, digest);
            return Ok(Published::Unchanged);
        }
        let revision_key = format!("{}/revisions/{}.tar.gz", input.prefix(), bundle.revision());
        // Revisions are immutable: one that exists already holds these very bytes.
        match self.store.put(&revision_key, &bytes, Precondition::IfAbsent).await {
            Ok(_) | Err(StoreError::PreconditionFailed { .. }) => {}
            Err(e) => return Err(e),
        }
        self.store.put(&live_key, &bytes, Precondition::None).await?;
        self.remember(&live_key, digest);
        Ok(Published::Written)
    }

    fn remember(&self, key: &str, digest: String) {
        if let Ok(mut l) = self.live.lock() {
            l.insert(key.to_string(), digest);
        }
    }
}
