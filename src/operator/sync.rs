//! The API-server side of a round: finalizers on new Systems, each System's ConfigMap,
//! ServiceAccount annotation and IAM role, and the cleanup of deleted Systems.

use std::time::{Instant, SystemTime};

use futures::StreamExt;
use kube::Client;

use super::lifecycle::{Cause, Lifecycle};
use super::status_writer::Notice;
use super::wiring;
use super::{Engine, RETRY, Retry};
use crate::engine::problem::{Problem, Reason};
use crate::model::ObjectKey;

impl Engine {
    /// The API-server side of the last changes: finalizers on new Systems, each System's
    /// ConfigMap, ServiceAccount annotation and IAM role, and the cleanup of deleted Systems.
    /// Returns notices for what users must see (a cleanup that keeps failing).
    pub async fn sync(&mut self, client: &Client) -> Vec<Notice> {
        let mut notices = Vec::new();
        if self.finalizer_retry.is_none_or(|r| r.at <= Instant::now()) && !self.unfinalized.is_empty() {
            // One first: when the API server refuses (RBAC, a webhook), it refuses them all, so
            // a refusal stops here. Then the rest, several at once (a first start at 1,000
            // Systems adds 1,000 finalizers).
            let mut keys: Vec<ObjectKey> = std::mem::take(&mut self.unfinalized).into_iter().collect();
            let rest = keys.split_off(1);
            let mut failed: Vec<ObjectKey> = Vec::new();
            let add = |key: ObjectKey| async move {
                let result = wiring::add_finalizer(client, &key).await;
                (key, result)
            };
            let first = add(keys.remove(0)).await;
            let outcomes = if first.1.is_ok() {
                let mut all = vec![first];
                all.extend(
                    futures::stream::iter(rest)
                        .map(add)
                        .buffer_unordered(self.parallelism)
                        .collect::<Vec<_>>()
                        .await,
                );
                all
            } else {
                failed.extend(rest);
                vec![first]
            };
            for (key, result) in outcomes {
                if let Err(e) = result {
                    tracing::warn!(system = %key, "adding the finalizer: {e}");
                    failed.push(key);
                }
            }
            self.finalizer_retry = if failed.is_empty() {
                None
            } else {
                let attempt = self.finalizer_retry.map_or(0, |r| r.attempt + 1);
                Some(Retry { at: Instant::now() + RETRY.delay(attempt), attempt })
            };
            self.unfinalized.extend(failed);
        }
        let mut work = Vec::new();
        for (key, (desired, tenant)) in std::mem::take(&mut self.wiring_due) {
            let before = self.wired.get(&key).cloned().unwrap_or_default();
            let roles = self.roles_of(&tenant).await;
            work.push((key, desired, before, roles));
        }
        // Systems are independent: several at once (a first start wires every System).
        let applied = futures::stream::iter(work)
            .map(|(key, desired, before, roles)| async move {
                let result = wiring::apply(client, roles.as_ref(), &desired, &before).await;
                (key, result)
            })
            .buffer_unordered(self.parallelism)
            .collect::<Vec<_>>()
            .await;
        for (key, result) in applied {
            match result {
                Ok(applied) => {
                    self.metrics.reconciled("Wiring", "applied");
                    if let (Some(owned), Some(name)) = (&mut self.owned_config_maps, &applied.config_map) {
                        owned.insert(ObjectKey::new(&key.namespace, name));
                    }
                    self.wired.insert(key.clone(), applied);
                    self.ws.wiring_applied(&key);
                    self.lifecycles.update(&key, Lifecycle::succeeded);
                }
                Err(p) => {
                    self.metrics.reconciled("Wiring", "failed");
                    // A missing ServiceAccount or permission is looked for again too (with back-off):
                    // nothing tells edict it was created or granted.
                    if p.reason.is_transient()
                        || matches!(p.reason, Reason::MissingServiceAccount | Reason::Forbidden)
                    {
                        self.again(&key, Cause::Wiring);
                    }
                    self.ws.wiring_failed(&key, p);
                }
            }
        }
        for key in self.lifecycles.cleanups_due(Instant::now()) {
            let Some((retirement, _)) = self.lifecycles.get(&key).and_then(|l| l.retiring.clone()) else {
                continue;
            };
            let registry = match &retirement.tenant {
                Some(t) => match self.registry_of(t).await {
                    Ok(r) => Some(r),
                    Err(p) => {
                        self.cleanup_failed(&key, p, &mut notices);
                        continue;
                    }
                },
                None => None,
            };
            let roles = match &retirement.tenant {
                Some(t) => self.roles_of(t).await,
                None => None,
            };
            match wiring::retire(client, registry.as_ref(), roles.as_ref(), &retirement, SystemTime::now())
                .await
            {
                Ok(()) => {
                    self.metrics.reconciled("Cleanup", "retired");
                    tracing::info!(system = %key, "deleted: its bundle, configuration and finalizer are gone");
                    self.lifecycles.update(&key, Lifecycle::retired);
                    if retirement.tenant.is_none() {
                        tracing::warn!(system = %key, "its Tenant is unknown: published bundles, if any, were left in place");
                    }
                }
                Err(p) => self.cleanup_failed(&key, p, &mut notices),
            }
        }
        notices
    }

    fn cleanup_failed(&mut self, key: &ObjectKey, p: Problem, notices: &mut Vec<Notice>) {
        self.metrics.reconciled("Cleanup", "failed");
        let now = Instant::now();
        let first = self.lifecycles.update(key, |l| l.cleanup_failed(now, &RETRY));
        // Say so once, not at every retry.
        if first {
            notices.push(Notice {
                kind: "System",
                namespace: key.namespace.clone(),
                name: key.name.clone(),
                warning: true,
                reason: "CleanupFailed".into(),
                message: format!("{} (retrying)", p.message),
                uid: None,
            });
        }
    }
}
