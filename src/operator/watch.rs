//! Watches of the four kinds, turned into catalog changes. A re-list (after a watch expired)
//! is followed by a `Resync` that deletes what the re-list no longer holds.

use std::collections::BTreeSet;

use futures::{Stream, StreamExt};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

use crate::api::{Policy, Stack, System, Tenant};
use crate::model::{Kind, ObjectKey};
use crate::sources::manifest::{Located, Object, Origin};

/// One change for the catalog.
#[derive(Debug)]
pub enum Change {
    /// An object was added or modified.
    Apply(Box<Located>),
    /// An object is gone.
    Delete(Kind, ObjectKey),
    /// A list of `kind` started (the watch started or re-started): the catalog's view of that
    /// kind is partial until its `Resync`.
    Listing(&'static str),
    /// A re-list of `kind` finished: objects of that kind not in the set are gone.
    Resync(Kind, BTreeSet<ObjectKey>),
    /// A namespace's labels (`None`: the namespace is gone), for tenant membership.
    Namespace(String, Option<crate::select::selector::Labels>),
    /// A re-list of namespaces finished: namespaces not in the set are gone.
    NamespaceResync(BTreeSet<String>),
    /// A ConfigMap edict owns (`namespace/name`) exists (`true`) or is gone (`false`).
    OwnedConfigMap(ObjectKey, bool),
    /// A list of the ConfigMaps edict owns finished: these exist, no other.
    OwnedConfigMaps(BTreeSet<ObjectKey>),
    /// The watch failed (it retries with back-off); for logs and readiness.
    Error(String),
}

fn located(object: Object) -> Located {
    Located { object, origin: Origin::default() }
}

/// Turn one kind's watcher events into changes, buffering keys during a re-list.
pub fn changes<K, F>(
    stream: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    kind: Kind,
    wrap: F,
) -> impl Stream<Item = Change> + Send
where
    K: kube::Resource + Send + 'static,
    F: Fn(K) -> Object + Send + Sync + Copy + 'static,
{
    let key = |k: &K| crate::engine::catalog::key_of(k.meta());
    stream
        .scan(BTreeSet::new(), move |seen: &mut BTreeSet<ObjectKey>, event| {
            // edict never reads managedFields or annotations, often the largest part of an object
            // (kubectl's last-applied-configuration repeats the whole object, Rego included).
            let event = event.map(|e| {
                e.modify(|k| {
                    let meta = k.meta_mut();
                    meta.managed_fields = None;
                    meta.annotations = None;
                })
            });
            let out = match event {
                Ok(watcher::Event::Apply(k)) => vec![Change::Apply(Box::new(located(wrap(k))))],
                Ok(watcher::Event::Delete(k)) => vec![Change::Delete(kind, key(&k))],
                Ok(watcher::Event::Init) => {
                    seen.clear();
                    vec![Change::Listing(kind.as_str())]
                }
                Ok(watcher::Event::InitApply(k)) => {
                    seen.insert(key(&k));
                    vec![Change::Apply(Box::new(located(wrap(k))))]
                }
                Ok(watcher::Event::InitDone) => vec![Change::Resync(kind, std::mem::take(seen))],
                Err(e) => vec![Change::Error(format!("watching {kind}s: {e}"))],
            };
            futures::future::ready(Some(futures::stream::iter(out)))
        })
        .flatten()
}

/// Namespace label changes (metadata only: edict reads nothing else of a namespace).
pub fn namespaces(client: Client) -> impl Stream<Item = Change> + Send {
    use k8s_openapi::api::core::v1::Namespace;
    let labels = |m: &kube::core::ObjectMeta| {
        (m.name.clone().unwrap_or_default(), m.labels.clone().unwrap_or_default().into_iter().collect())
    };
    use kube::core::PartialObjectMeta;
    watcher(Api::<PartialObjectMeta<Namespace>>::all(client), watcher::Config::default())
        .default_backoff()
        .scan(BTreeSet::new(), move |seen: &mut BTreeSet<String>, event| {
            let out = match event {
                Ok(watcher::Event::Apply(m)) => {
                    let (name, l) = labels(&m.metadata);
                    vec![Change::Namespace(name, Some(l))]
                }
                Ok(watcher::Event::InitApply(m)) => {
                    let (name, l) = labels(&m.metadata);
                    seen.insert(name.clone());
                    vec![Change::Namespace(name, Some(l))]
                }
                Ok(watcher::Event::Delete(m)) => vec![Change::Namespace(labels(&m.metadata).0, None)],
                Ok(watcher::Event::Init) => {
                    seen.clear();
                    vec![Change::Listing("Namespace")]
                }
                Ok(watcher::Event::InitDone) => vec![Change::NamespaceResync(std::mem::take(seen))],
                Err(e) => vec![Change::Error(format!("watching Namespaces: {e}"))],
            };
            futures::future::ready(Some(futures::stream::iter(out)))
        })
        .flatten()
}

/// The ConfigMaps edict owns (by its managed-by label; metadata only), so that one deleted by
/// hand is written again.
pub fn owned_config_maps(client: Client) -> impl Stream<Item = Change> + Send {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::core::PartialObjectMeta;
    let (label, value) = super::wiring::MANAGED_BY;
    let config = watcher::Config::default().labels(&format!("{label}={value}"));
    let key = |m: &PartialObjectMeta<ConfigMap>| crate::engine::catalog::key_of(&m.metadata);
    watcher(Api::<PartialObjectMeta<ConfigMap>>::all(client), config)
        .default_backoff()
        .scan(BTreeSet::new(), move |seen: &mut BTreeSet<ObjectKey>, event| {
            let out = match event {
                Ok(watcher::Event::Apply(m)) => vec![Change::OwnedConfigMap(key(&m), true)],
                Ok(watcher::Event::Delete(m)) => vec![Change::OwnedConfigMap(key(&m), false)],
                Ok(watcher::Event::Init) => {
                    seen.clear();
                    vec![]
                }
                Ok(watcher::Event::InitApply(m)) => {
                    seen.insert(key(&m));
                    vec![]
                }
                Ok(watcher::Event::InitDone) => vec![Change::OwnedConfigMaps(std::mem::take(seen))],
                Err(e) => vec![Change::Error(format!("watching ConfigMaps: {e}"))],
            };
            futures::future::ready(Some(futures::stream::iter(out)))
        })
        .flatten()
}

/// Every change of every edict kind in the cluster, of namespace labels and of the ConfigMaps
/// edict owns, as one stream.
pub fn all(client: Client) -> impl Stream<Item = Change> + Send {
    let config = watcher::Config::default;
    let tenants = changes(
        watcher(Api::<Tenant>::all(client.clone()), config()).default_backoff(),
        Kind::Tenant,
        Object::Tenant,
    );
    let stacks = changes(
        watcher(Api::<Stack>::all(client.clone()), config()).default_backoff(),
        Kind::Stack,
        Object::Stack,
    );
    let systems = changes(
        watcher(Api::<System>::all(client.clone()), config()).default_backoff(),
        Kind::System,
        Object::System,
    );
    let policies = changes(
        watcher(Api::<Policy>::all(client.clone()), config()).default_backoff(),
        Kind::Policy,
        Object::Policy,
    );
    futures::stream::select_all([
        tenants.boxed(),
        stacks.boxed(),
        systems.boxed(),
        policies.boxed(),
        namespaces(client.clone()).boxed(),
        owned_config_maps(client).boxed(),
    ])
}
