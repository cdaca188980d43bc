//! Writing statuses back: server-side apply of the `status` subresource with one field
//! manager, only for objects whose status changed since the last write.

use crate::model::ObjectKey;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde::Serialize;
use serde_json::json;

use crate::api::{API_VERSION, Policy, Stack, System, Tenant};
use crate::engine::status::{Statuses, changed};

/// The field manager of everything edict writes.
pub const FIELD_MANAGER: &str = "edict";

/// Status writes in flight at once.
const WRITES_IN_FLIGHT: usize = 8;

/// Apply the statuses in `new` that differ from `old`, several at once. Returns the failures
/// (the next round retries them, since `old` is what was written).
pub async fn write(client: &Client, old: &Statuses, new: &Statuses) -> Vec<String> {
    use futures::StreamExt;
    use futures::future::BoxFuture;
    let mut writes: Vec<BoxFuture<'_, Option<String>>> = Vec::new();
    for (name, _, status) in changed(&old.tenants, &new.tenants) {
        let api: Api<Tenant> = Api::all(client.clone());
        writes.push(Box::pin(async move { patch(&api, "Tenant", name, status).await }));
    }
    for (key, _, status) in changed(&old.stacks, &new.stacks) {
        let (ns, name) = split(key);
        let api = Api::<Stack>::namespaced(client.clone(), ns);
        writes.push(Box::pin(async move { patch(&api, "Stack", name, status).await }));
    }
    for (key, _, status) in changed(&old.systems, &new.systems) {
        let (ns, name) = split(key);
        let api = Api::<System>::namespaced(client.clone(), ns);
        writes.push(Box::pin(async move { patch(&api, "System", name, status).await }));
    }
    for (key, _, status) in changed(&old.policies, &new.policies) {
        let (ns, name) = split(key);
        let api = Api::<Policy>::namespaced(client.clone(), ns);
        writes.push(Box::pin(async move { patch(&api, "Policy", name, status).await }));
    }
    futures::stream::iter(writes)
        .buffer_unordered(WRITES_IN_FLIGHT)
        .filter_map(futures::future::ready)
        .collect()
        .await
}

fn split(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

async fn patch<K, S>(api: &Api<K>, kind: &str, name: &str, status: &S) -> Option<String>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    let body = json!({"apiVersion": API_VERSION, "kind": kind, "status": status});
    let params = PatchParams::apply(FIELD_MANAGER).force();
    match api.patch_status(name, &params, &Patch::Apply(&body)).await {
        Ok(_) => None,
        // A deleted object has no status to write.
        Err(kube::Error::Api(s)) if s.code == 404 => None,
        Err(e) => Some(format!("{kind} {name}: status: {e}")),
    }
}

/// An event users should see: an object stopped being Ready (Warning, with the reason and
/// where), or became Ready again (Normal).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// `Tenant`, `Stack`, `System`, `Policy`.
    pub kind: &'static str,
    /// Namespace (empty for Tenants).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Warning or not.
    pub warning: bool,
    /// The condition's reason.
    pub reason: String,
    /// The condition's message (first 1 kB).
    pub message: String,
    /// The object's uid, which `kubectl describe` needs to list the event under the object
    /// (`None` when the object is already gone).
    pub uid: Option<String>,
}

/// The notices between two rounds of statuses: only real transitions of `Ready`. Pure.
pub fn notices(old: &Statuses, new: &Statuses) -> Vec<Notice> {
    use crate::api::Condition;
    fn ready(conditions: &[Condition]) -> Option<&Condition> {
        conditions.iter().find(|c| c.type_ == crate::api::conditions::READY)
    }
    fn each<'a, S: PartialEq + 'a>(
        kind: &'static str,
        old: &'a crate::engine::status::StatusMap<S>,
        new: &'a crate::engine::status::StatusMap<S>,
        conditions: fn(&S) -> &Vec<Condition>,
        out: &mut Vec<Notice>,
    ) {
        for (key, before, status) in changed(old, new) {
            let Some(now) = ready(conditions(status)) else { continue };
            let before = before.and_then(|s| ready(conditions(s)));
            let changed = before.is_none_or(|b| b.status != now.status || b.reason != now.reason);
            let failing = now.status != crate::api::ConditionStatus::True;
            // A first sighting that is Ready is not news, except a System's first publish;
            // anything failing is. (After a restart, what the objects showed counts as seen.)
            if !changed || (before.is_none() && !failing && kind != "System") {
                continue;
            }
            let (namespace, name) =
                key.split_once('/').map(|(n, m)| (n.to_string(), m.to_string())).unwrap_or_default();
            let (namespace, name) =
                if kind == "Tenant" { (String::new(), key.to_string()) } else { (namespace, name) };
            let mut message = match (failing, before) {
                (true, _) => now.message.clone(),
                (false, None) => format!("first published: {}", now.message),
                (false, Some(_)) => format!("Ready again: {}", now.message),
            };
            message.truncate(message.char_indices().nth(1000).map(|(i, _)| i).unwrap_or(message.len()));
            out.push(Notice {
                kind,
                namespace,
                name,
                warning: failing,
                reason: now.reason.clone(),
                message,
                uid: None,
            });
        }
    }
    let mut out = Vec::new();
    each("Tenant", &old.tenants, &new.tenants, |s| &s.conditions, &mut out);
    each("Stack", &old.stacks, &new.stacks, |s| &s.conditions, &mut out);
    each("System", &old.systems, &new.systems, |s| &s.conditions, &mut out);
    each("Policy", &old.policies, &new.policies, |s| &s.conditions, &mut out);
    out.extend(activation_failures(old, new));
    out
}

/// A Warning when a System's OPAs start refusing its live revision (`Live` becomes
/// `Degraded`), with OPA's error: once per episode, not at every report.
fn activation_failures(old: &Statuses, new: &Statuses) -> Vec<Notice> {
    let live = |s: &crate::api::SystemStatus| {
        s.conditions.iter().find(|c| c.type_ == crate::api::conditions::LIVE).cloned()
    };
    let mut out = Vec::new();
    for (key, before, status) in changed(&old.systems, &new.systems) {
        let Some(now) = live(status).filter(|c| c.reason == crate::ingest::fleet::reason::DEGRADED) else {
            continue;
        };
        if before.and_then(|b| live(b)).is_some_and(|b| b.reason == now.reason) {
            continue;
        }
        let (namespace, name) = key.split_once('/').unwrap_or_default();
        out.push(Notice {
            kind: "System",
            namespace: namespace.to_string(),
            name: name.to_string(),
            warning: true,
            reason: "ActivationFailed".into(),
            message: now.message.chars().take(1000).collect(),
            uid: None,
        });
    }
    out
}

/// Publish notices as Kubernetes events (best effort: failures are logged).
pub async fn publish(recorder: &kube::runtime::events::Recorder, notices: &[Notice]) {
    use k8s_openapi::api::core::v1::ObjectReference;
    use kube::runtime::events::{Event, EventType};
    for n in notices {
        let object =
            if n.namespace.is_empty() { n.name.clone() } else { format!("{}/{}", n.namespace, n.name) };
        if n.warning {
            tracing::warn!(kind = n.kind, object = %object, reason = %n.reason, "not ready: {}", n.message);
        } else {
            tracing::info!(kind = n.kind, object = %object, reason = %n.reason, "{}", n.message);
        }
        let reference = ObjectReference {
            api_version: Some(API_VERSION.to_string()),
            kind: Some(n.kind.to_string()),
            name: Some(n.name.clone()),
            namespace: (!n.namespace.is_empty()).then(|| n.namespace.clone()),
            uid: n.uid.clone(),
            ..ObjectReference::default()
        };
        let event = Event {
            type_: if n.warning { EventType::Warning } else { EventType::Normal },
            reason: n.reason.clone(),
            note: Some(n.message.clone()),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&event, &reference).await {
            tracing::warn!("event for {} {}/{}: {e}", n.kind, n.namespace, n.name);
        }
    }
}

impl super::Engine {
    /// The uid of an object as the watches last showed it (`name` alone for a Tenant).
    pub fn uid_of(&self, kind: &str, namespace: &str, name: &str) -> Option<String> {
        let catalog = &self.ws.catalog;
        let key = ObjectKey::new(namespace, name);
        let meta = match kind {
            "Tenant" => &catalog.tenants().get(name)?.tenant.metadata,
            "Stack" => &catalog.stacks().get(&key)?.stack.metadata,
            "System" => &catalog.systems().get(&key)?.system.metadata,
            "Policy" => &catalog.policies().get(&key)?.policy.metadata,
            _ => return None,
        };
        meta.uid.clone()
    }

    /// Give each notice the uid of its object, so that its event shows under the object.
    pub fn with_uids(&self, notices: &mut [Notice]) {
        for n in notices {
            if n.uid.is_none() {
                n.uid = self.uid_of(n.kind, &n.namespace, &n.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::api::{StackStatus, SystemStatus};
    use crate::engine::problem::{ObjectRef, Problem, Reason};
    use crate::engine::status::conditions;

    fn ready(message: &str) -> Vec<crate::api::Condition> {
        conditions(&[], "Published", message, Some(1))
    }

    fn broken() -> Vec<crate::api::Condition> {
        let p = Problem::new(ObjectRef::tenant("t"), Reason::InvalidRego, "spec.rego:3:1: bad");
        conditions(&[&p], "Published", "", Some(1))
    }

    #[test]
    fn a_systems_first_publish_is_news_and_so_is_every_transition() {
        let mut first = Statuses::default();
        first.systems.insert(
            "ns/a".into(),
            Arc::new(SystemStatus { conditions: ready("serving revision 1234"), ..Default::default() }),
        );
        first.stacks.insert(
            "p/s".into(),
            Arc::new(StackStatus { conditions: ready("selects 1 system"), ..Default::default() }),
        );
        let found = notices(&Statuses::default(), &first);
        assert_eq!(found.len(), 1, "a Stack seen Ready is not news: {found:?}");
        assert_eq!((found[0].kind, found[0].warning), ("System", false));
        assert_eq!(found[0].message, "first published: serving revision 1234");
        assert!(notices(&first, &first).is_empty(), "nothing changed");

        let mut failing = first.clone();
        Arc::make_mut(failing.systems.get_mut("ns/a").expect("a")).conditions = broken();
        let found = notices(&first, &failing);
        assert_eq!((found.len(), found[0].warning, found[0].reason.as_str()), (1, true, "InvalidRego"));
        let found = notices(&failing, &first);
        assert_eq!(found[0].message, "Ready again: serving revision 1234");
        assert!(!found[0].warning);
    }

    #[test]
    fn an_opa_refusing_the_live_revision_is_a_warning_once() {
        let live = |reason: &str, message: &str| crate::api::Condition {
            type_: crate::api::conditions::LIVE.into(),
            status: crate::api::ConditionStatus::False,
            reason: reason.into(),
            message: message.into(),
            observed_generation: None,
            last_transition_time: None,
        };
        let with = |c: crate::api::Condition| {
            let mut s = Statuses::default();
            let mut conditions = ready("serving revision 1234");
            conditions.push(c);
            s.systems.insert("ns/a".into(), Arc::new(SystemStatus { conditions, ..Default::default() }));
            s
        };
        let progressing = with(live("Progressing", "0/1 OPAs run the live revision 1234"));
        let degraded =
            with(live("Degraded", "0/1 OPAs run the live revision 1234; 1 failed: rego_type_error: x"));
        assert!(notices(&progressing, &progressing).is_empty());
        let found = notices(&progressing, &degraded);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].warning, found[0].reason.as_str()), (true, "ActivationFailed"));
        assert!(found[0].message.contains("rego_type_error"), "{}", found[0].message);
        assert!(notices(&degraded, &degraded).is_empty(), "once, not at every report");
    }
}
