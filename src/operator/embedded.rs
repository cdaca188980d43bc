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
        match self.embedded.retire_where(&self.ws.cluster, gone, std::time::SystemTime::now()).await {
            Ok(retired) => {
                for id in retired {
                    tracing::info!(system = %id, "deleted: its bundle is no longer served here");
                }
            }
            Err(e) => tracing::warn!("dropping deleted Systems' bundles from the embedded store: {e}"),
        }
    }
}
