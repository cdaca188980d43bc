//! The CLI's side of the registry: publish every built System to its Tenant's storage, list a
//! System's history, roll it back.

#[cfg(feature = "aws")]
use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use crate::bundle::BundleInput;
use crate::engine::workspace::Workspace;
use crate::model::ObjectKey;
use crate::registry::Published;
use crate::registry::index::RevisionRecord;
use crate::registry::{PublishError, Registry};
use crate::retry::Backoff;

/// What publishing one System did.
#[derive(Debug)]
pub struct PublishReport {
    /// The System.
    pub system: ObjectKey,
    /// Written, unchanged, or why not.
    pub outcome: Result<Published, String>,
}

/// Connect to the storage of the Tenant named `tenant` as declared in the workspace.
#[cfg(feature = "aws")]
pub async fn registry(ws: &Workspace, tenant: &str, actor: &str) -> Result<Registry, String> {
    let entry =
        ws.catalog.tenants().get(tenant).ok_or_else(|| format!("no Tenant {tenant} in the manifests"))?;
    crate::registry::connect::registry(&entry.tenant, actor, SystemTime::now())
        .await
        .map_err(|e| format!("Tenant {tenant}: {e}"))
}

/// Publish every System that built, tenant by tenant, `parallel` at a time (S3 and DynamoDB
/// round trips dominate a publish), retrying transient failures with `backoff` and reporting
/// each one on stderr while it lasts.
#[cfg(feature = "aws")]
pub async fn publish_all(
    ws: &Workspace,
    actor: &str,
    backoff: Backoff,
    parallel: usize,
) -> Vec<PublishReport> {
    let mut by_tenant: BTreeMap<&str, Vec<&crate::engine::pipeline::SystemBuild>> = BTreeMap::new();
    for b in ws.builds.values().filter(|b| b.bundle.is_some()) {
        if let Some(t) = &b.tenant {
            by_tenant.entry(t.as_str()).or_default().push(b);
        }
    }
    let mut reports = Vec::new();
    for (tenant, builds) in by_tenant {
        let registry = match registry(ws, tenant, actor).await {
            Ok(r) => r,
            Err(e) => {
                reports.extend(
                    builds.iter().map(|b| PublishReport { system: b.key.clone(), outcome: Err(e.clone()) }),
                );
                continue;
            }
        };
        let outcomes = publish_many(&registry, &builds, &backoff, parallel).await;
        reports.extend(outcomes);
    }
    reports
}

/// Run `work` on each item, each on a task of its own with at most `parallel` at once; the
/// results in the order the tasks finish, so that one slow item does not hold a slot that a
/// finished one could use. Publishes run this way: a store whose calls block (the directory
/// store of the embedded registry) then keeps every worker thread of the runtime busy, not only
/// the caller's. A task that panics panics the caller; one cancelled (the runtime shutting
/// down) gives no result.
pub async fn on_tasks<I, F, Fut>(items: Vec<I>, parallel: usize, work: F) -> Vec<Fut::Output>
where
    F: Fn(I) -> Fut,
    Fut: std::future::Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    use futures::StreamExt;
    futures::stream::iter(items)
        .map(|item| tokio::spawn(work(item)))
        .buffer_unordered(parallel.max(1))
        .filter_map(|joined| async move {
            match joined {
                Ok(output) => Some(output),
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => None,
            }
        })
        .collect()
        .await
}

/// Publish these builds with at most `parallel` in flight, each retried with `backoff`.
pub async fn publish_many(
    registry: &Registry,
    builds: &[&crate::engine::pipeline::SystemBuild],
    backoff: &Backoff,
    parallel: usize,
) -> Vec<PublishReport> {
    let jobs: Vec<_> = builds
        .iter()
        .filter_map(|b| Some((b.key.clone(), b.input.clone()?, b.bundle.clone()?, b.generations.clone())))
        .collect();
    let mut reports = on_tasks(jobs, parallel, |(key, input, bundle, generations)| {
        let (registry, backoff) = (registry.clone(), *backoff);
        async move {
            let outcome = backoff
                .run(
                    || registry.publish(&input, &bundle, &generations, SystemTime::now()),
                    PublishError::is_transient,
                    |e, delay| eprintln!("publishing {key}: {e}; retrying in {delay:?}"),
                )
                .await
                .map_err(|e| e.to_string());
            PublishReport { system: key, outcome }
        }
    })
    .await;
    reports.sort_by(|a, b| a.system.cmp(&b.system));
    reports
}

/// The registry and bundle input of one System of the workspace: its Tenant's storage, or
/// for a Tenant without `spec.storage` the embedded store at `embedded` (where `run --local`
/// publishes).
pub async fn system(
    ws: &Workspace,
    key: &ObjectKey,
    actor: &str,
    embedded: &Path,
) -> Result<(Registry, BundleInput), String> {
    let build = ws.builds.get(key).ok_or_else(|| format!("no System {key} in the manifests"))?;
    let input = build.input.clone().ok_or_else(|| {
        let why: Vec<String> = build.problems.iter().map(|p| p.to_string()).collect();
        format!("System {key} cannot be resolved: {}", why.join("; "))
    })?;
    Ok((tenant_registry(ws, &input.tenant, actor, embedded).await?, input))
}

/// The registry of a Tenant of the workspace: its storage, or for a Tenant without
/// `spec.storage` the embedded store at `embedded`.
pub async fn tenant_registry(
    ws: &Workspace,
    tenant: &str,
    actor: &str,
    embedded: &Path,
) -> Result<Registry, String> {
    let entry =
        ws.catalog.tenants().get(tenant).ok_or_else(|| format!("no Tenant {tenant} in the manifests"))?;
    if entry.tenant.spec.storage.is_none() {
        return Ok(Registry::embedded(embedded).with_actor(actor));
    }
    #[cfg(feature = "aws")]
    return registry(ws, tenant, actor).await;
    #[cfg(not(feature = "aws"))]
    Err(format!(
        "Tenant {tenant} keeps its bundles in AWS (spec.storage): this edict was built without the `aws` feature"
    ))
}

/// A System's revisions, newest first, and which one is live.
pub async fn history(
    registry: &Registry,
    input: &BundleInput,
) -> Result<(Vec<RevisionRecord>, Option<String>), String> {
    let id = input.system_id();
    let revisions = registry.history(&id).await.map_err(|e| e.to_string())?;
    let live = registry.live(&id).await.map_err(|e| e.to_string())?.map(|l| l.revision);
    Ok((revisions, live))
}
