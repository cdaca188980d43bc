//! Writing statuses back: server-side apply of the `status` subresource with one field
//! manager, only for objects whose status changed since the last write.

use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde::Serialize;
use serde_json::json;

use crate::api::{API_VERSION, Policy, Stack, System, Tenant};
use crate::status::Statuses;

/// The field manager of everything edict writes.
pub const FIELD_MANAGER: &str = "edict";

/// Apply the statuses in `new` that differ from `old`. Returns the failures (the next round
/// retries them, since `old` is what was written).
pub async fn write(client: &Client, old: &Statuses, new: &Statuses) -> Vec<String> {
    let mut failures = Vec::new();
    for (name, status) in &new.tenants {
        if old.tenants.get(name) != Some(status) {
            let api: Api<Tenant> = Api::all(client.clone());
            patch(&api, "Tenant", name, status, &mut failures).await;
        }
    }
    for (key, status) in &new.stacks {
        if old.stacks.get(key) != Some(status) {
            let (ns, name) = split(key);
            patch(&Api::<Stack>::namespaced(client.clone(), ns), "Stack", name, status, &mut failures).await;
        }
    }
    for (key, status) in &new.systems {
        if old.systems.get(key) != Some(status) {
            let (ns, name) = split(key);
            patch(&Api::<System>::namespaced(client.clone(), ns), "System", name, status, &mut failures)
                .await;
        }
    }
    for (key, status) in &new.policies {
        if old.policies.get(key) != Some(status) {
            let (ns, name) = split(key);
            patch(&Api::<Policy>::namespaced(client.clone(), ns), "Policy", name, status, &mut failures)
                .await;
        }
    }
    failures
}

fn split(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

async fn patch<K, S>(api: &Api<K>, kind: &str, name: &str, status: &S, failures: &mut Vec<String>)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    let body = json!({"apiVersion": API_VERSION, "kind": kind, "status": status});
    let params = PatchParams::apply(FIELD_MANAGER).force();
    if let Err(e) = api.patch_status(name, &params, &Patch::Apply(&body)).await {
        // A deleted object has no status to write.
        if !matches!(&e, kube::Error::Api(s) if s.code == 404) {
            failures.push(format!("{kind} {name}: status: {e}"));
        }
    }
}
