//! A replica's embedded store holds only what exists: a standby mirrors deletions, and every
//! replica drops at start the bundles of Systems deleted while it was down.

use super::Engine;
use crate::model::ObjectKey;

impl Engine {
    /// Drop from the embedded store the bundles of Systems that no longer exist: a replica's
    /// store (an emptyDir that survives container restarts) may hold Systems deleted while it
    /// was down. Call once every list is complete; the catalog is then the whole cluster.
    pub async fn prune_embedded(&self) {
        let systems = self.ws.catalog.systems();
        self.drop_from_embedded(|key| !systems.contains_key(key)).await;
    }

    /// Remove every object of the Systems `gone` names from the embedded store
    /// (`bundles/<tenant>/<cluster>/<namespace>/<name>/…`, this cluster's only).
    pub(super) async fn drop_from_embedded(&self, gone: impl Fn(&ObjectKey) -> bool) {
        let store = self.embedded.store();
        let keys = store.list("bundles/").await.unwrap_or_default();
        for k in keys {
            let parts: Vec<&str> = k.split('/').collect();
            if parts.len() >= 6 && parts[2] == self.ws.cluster && gone(&ObjectKey::new(parts[3], parts[4])) {
                if let Err(e) = store.delete(&k).await {
                    tracing::warn!(key = %k, "dropping a deleted System's bundle from the embedded store: {e}");
                } else if parts[5] == "bundle.tar.gz" {
                    tracing::info!(system = %format!("{}/{}", parts[3], parts[4]), "deleted: its bundle is no longer served here");
                }
            }
        }
    }
}
