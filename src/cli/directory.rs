//! `edict systems` and `edict stacks`: the multi-cluster view of a Tenant, from its index (one
//! query each): every System any cluster published to the Tenant, with its live revision, its
//! Stacks and when it was published; every Stack with the Systems bound to it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use edict::engine::workspace::Workspace;
use edict::registry::index::{StackListing, SystemRecord};
use serde_json::json;

use crate::{Output, actor};

/// The Tenant's index: its storage's, or the embedded store's.
fn read<T>(
    files: &[PathBuf],
    tenant: &str,
    store: &Path,
    query: impl AsyncFnOnce(&edict::registry::Registry) -> Result<T>,
) -> Result<T> {
    let ws = Workspace::load(files, "local")?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let registry = edict::registry::publishing::tenant_registry(&ws, tenant, &actor(), store)
            .await
            .map_err(anyhow::Error::msg)?;
        query(&registry).await
    })
}

/// `<cluster>/<namespace>/<name>` as its three parts (the whole id as the name otherwise).
fn parts(id: &str) -> (&str, &str, &str) {
    let mut p = id.splitn(3, '/');
    match (p.next(), p.next(), p.next()) {
        (Some(c), Some(ns), Some(name)) => (c, ns, name),
        _ => ("", "", id),
    }
}

fn time(t: Option<std::time::SystemTime>) -> String {
    t.and_then(|t| edict::registry::index::format_timestamp(t).ok())
        .map(|s| format!("{}Z", &s[..19]))
        .unwrap_or_else(|| "-".into())
}

pub fn systems(files: &[PathBuf], tenant: &str, output: Output, store: &Path) -> Result<ExitCode> {
    let systems: Vec<SystemRecord> =
        read(files, tenant, store, async |r| Ok(r.index().systems(r.tenant()).await?))?;
    match output {
        Output::Json => {
            let rows: Vec<serde_json::Value> = systems
                .iter()
                .map(|s| {
                    let (cluster, namespace, name) = parts(&s.id);
                    let live = s.live.as_ref();
                    json!({
                        "cluster": cluster, "namespace": namespace, "name": name, "type": s.system_type,
                        "revision": live.map(|l| l.revision.clone()),
                        "published": live.and_then(|l| l.published).map(|t| time(Some(t))),
                        "stacks": live.map(|l| l.stacks.clone()).unwrap_or_default(),
                        "labels": s.labels,
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&rows)?);
        }
        Output::Text => {
            println!(
                "{:<12} {:<20} {:<24} {:<12} {:<20} STACKS",
                "CLUSTER", "NAMESPACE", "NAME", "REVISION", "PUBLISHED"
            );
            for s in &systems {
                let (cluster, namespace, name) = parts(&s.id);
                let live = s.live.as_ref();
                let revision = live.map_or("-".to_string(), |l| l.revision.chars().take(12).collect());
                let stacks =
                    live.map(|l| l.stacks.join(",")).filter(|s| !s.is_empty()).unwrap_or_else(|| "-".into());
                let published = time(live.and_then(|l| l.published));
                println!("{cluster:<12} {namespace:<20} {name:<24} {revision:<12} {published:<20} {stacks}");
            }
            if systems.is_empty() {
                eprintln!("no System of Tenant {tenant} has been published");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn stacks(files: &[PathBuf], tenant: &str, output: Output, store: &Path) -> Result<ExitCode> {
    let stacks: Vec<StackListing> =
        read(files, tenant, store, async |r| Ok(r.index().stacks(r.tenant()).await?))?;
    match output {
        Output::Json => {
            let rows: Vec<serde_json::Value> = stacks
                .iter()
                .map(|s| {
                    let (cluster, namespace, name) = parts(&s.id);
                    json!({
                        "cluster": cluster, "namespace": namespace, "name": name,
                        "type": s.record.as_ref().map(|r| r.stack_type.clone()),
                        "selector": s.record.as_ref().map(|r| r.selector.clone()),
                        "systems": s.systems,
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&rows)?);
        }
        Output::Text => {
            println!("{:<12} {:<20} {:<28} {:<11} {:>7}", "CLUSTER", "NAMESPACE", "NAME", "TYPE", "SYSTEMS");
            for s in &stacks {
                let (cluster, namespace, name) = parts(&s.id);
                let kind = s.record.as_ref().map_or("-", |r| r.stack_type.as_str());
                println!("{cluster:<12} {namespace:<20} {name:<28} {kind:<11} {:>7}", s.systems.len());
            }
            if stacks.is_empty() {
                eprintln!("no Stack of Tenant {tenant} is indexed");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
