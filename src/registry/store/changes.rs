//! Which objects changed, for requests that wait on one (OPA's long polling of a bundle): the
//! publisher says which key it replaced, a waiting request wakes for its key only.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

/// One channel per key that someone waits on; a change of another key wakes nobody.
#[derive(Debug, Default)]
pub struct KeyChanges {
    keys: Mutex<HashMap<String, watch::Sender<u64>>>,
}

impl KeyChanges {
    /// `key` was written or deleted: wake every request waiting on it.
    pub fn changed(&self, key: &str) {
        let keys = self.keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(tx) = keys.get(key) {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Wait on `key`: the receiver's `changed()` resolves at its next change. Subscribe before
    /// reading the object, so that a change between the read and the wait is not missed.
    pub fn watch(&self, key: &str) -> watch::Receiver<u64> {
        let mut keys = self.keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Keys nobody waits on any more are dropped as others come (bounded by the waiters).
        if keys.len() > 1024 && keys.len().is_power_of_two() {
            keys.retain(|_, tx| tx.receiver_count() > 0);
        }
        keys.entry(key.to_string()).or_insert_with(|| watch::channel(0).0).subscribe()
    }

    /// How many keys have waiters (or had them recently).
    pub fn len(&self) -> usize {
        self.keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    /// Whether nobody waits on anything.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_change_wakes_the_waiters_of_its_key_only() {
        let changes = KeyChanges::default();
        let mut a = changes.watch("bundles/a");
        let b = changes.watch("bundles/b");
        changes.changed("bundles/a");
        changes.changed("bundles/nobody-waits");
        assert!(a.has_changed().unwrap());
        assert!(!b.has_changed().unwrap());
        a.changed().await.unwrap();
        assert!(!a.has_changed().unwrap(), "seen");
    }
}
