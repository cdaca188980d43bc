//! The multi-cluster view (DESIGN §3): what every cluster publishing to a Tenant has, read from
//! the Tenant's index by `edict systems` and `edict stacks`. Publishes write each System's item
//! and its bindings (see [`crate::registry::Registry::publish`]); this writes each Stack's item
//! when the Stack changes: its type and selector, under `<cluster>/<namespace>/<name>` (each
//! cluster's copy of a Stack is its own). Only what differs from the index is written, so a
//! restart with nothing changed reads each Stack's item once and writes nothing.

use crate::model::ObjectKey;

use super::Engine;

impl Engine {
    /// Note that a Stack changed or went: its item is brought up to date at the next round.
    pub(super) fn stack_changed(&mut self, key: &ObjectKey) {
        if !self.follower {
            self.stacks_to_index.insert(key.clone());
        }
    }

    /// Write the items of the Stacks that changed since the last round (the leader's work;
    /// a Stack whose Tenant's index cannot be reached is tried again at the next round).
    pub(super) async fn index_stacks(&mut self) {
        for key in std::mem::take(&mut self.stacks_to_index) {
            let Some(tenant) = self.ws.catalog.admin_tenant(&key.namespace).map(str::to_string) else {
                continue;
            };
            let Ok(registry) = self.registry(&tenant).await else {
                self.stacks_to_index.insert(key);
                continue;
            };
            let id = format!("{}/{}/{}", self.ws.cluster, key.namespace, key.name);
            let stack = self.ws.catalog.stacks().get(&key).map(|e| e.stack.clone());
            let result = registry.index_stack(&id, stack.as_deref()).await;
            if let Err(e) = result {
                tracing::warn!(stack = %key, transient = e.is_transient(), "indexing the Stack failed: {e}");
                if e.is_transient() || e.is_conflict() {
                    self.stacks_to_index.insert(key);
                }
            }
        }
    }
}
