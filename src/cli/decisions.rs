//! The verbs on recorded decisions: `edict decisions`, `edict stats` and `edict replay`
//! (reading a System's recorded decisions from its Tenant's storage or the embedded store).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use edict::engine::workspace::Workspace;
use edict::model::ObjectKey;
use edict::registry::index::MinuteCounts;

use crate::{Baseline, FailOn, Output, ReplayOutput, actor, system_key};

/// How `edict replay` runs.
pub struct ReplayHow {
    pub since: String,
    pub limit: Option<usize>,
    pub output: ReplayOutput,
    pub fail_on: FailOn,
    pub baseline: Baseline,
    pub shard: Option<(usize, usize)>,
}

/// `i/n` with 0 ≤ i < n.
pub fn parse_shard(text: &str) -> Result<(usize, usize)> {
    let parsed =
        text.split_once('/').and_then(|(i, n)| Some((i.trim().parse().ok()?, n.trim().parse().ok()?)));
    match parsed {
        Some((i, n)) if i < n => Ok((i, n)),
        _ => bail!("--shard {text}: expected I/N with 0 <= I < N, e.g. 0/4"),
    }
}

pub fn replay(
    files: &[PathBuf],
    systems: &[String],
    how: &ReplayHow,
    cluster: &str,
    store: &Path,
) -> Result<ExitCode> {
    let ReplayHow { since, limit, baseline, shard, .. } = how;
    use edict::engine::replay;
    let ws = Workspace::load(files, cluster)?;
    let mut reports = Vec::new();
    for system in systems {
        let key = system_key(system)?;
        let build = ws.builds.get(&key).with_context(|| format!("no System {key} in the manifests"))?;
        let Some(bundle) = &build.bundle else {
            for p in &build.problems {
                eprintln!("{} [{}]: {}", p.object, p.reason, p.message);
            }
            bail!("System {key} does not build with the proposed manifests");
        };
        let proposed = edict::policy::rego::compile(
            &bundle.modules(),
            &bundle.data(),
            edict::engine::pipeline::ENTRYPOINT,
        )?
        .with_vm(replay::OUTCOME);
        let live = match baseline {
            Baseline::Recorded => None,
            Baseline::Live => Some(live_bundle(&ws, &key, store)?),
        };
        let base = live.as_ref().map(|(name, compiled)| replay::Baseline { name: name.clone(), compiled });
        let sources = replay::sources(&bundle.modules());
        let mut replaying = replay::Replay::new(&key.to_string(), &proposed, sources, base.as_ref());
        match limit {
            // The newest N: all of them read first.
            Some(n) => {
                let mut events = recorded_events(&ws, &key, since, *shard, store)?;
                events.drain(..events.len().saturating_sub(*n));
                replaying.add(&events);
            }
            // Object by object: memory holds one stored batch at a time.
            None => {
                let from = std::time::SystemTime::now().checked_sub(age(since)?);
                with_sink(&ws, &key, store, async |sink, system| {
                    use edict::ingest::query;
                    for object in query::objects_of_shard(&sink, &system, from, *shard).await? {
                        replaying.add(&query::object_events(&sink, &object, from).await?);
                    }
                    Ok(())
                })?;
            }
        }
        reports.push(replaying.finish());
    }
    print_replay(reports, how)
}

/// Print replay reports as asked, and exit 1 when they fail the gate.
pub fn print_replay(reports: Vec<edict::engine::replay::Report>, how: &ReplayHow) -> Result<ExitCode> {
    use edict::engine::replay;
    match how.output {
        ReplayOutput::Json => println!("{}", serde_json::to_string_pretty(&reports)?),
        ReplayOutput::Markdown => print!("{}", replay::markdown(&reports)),
        ReplayOutput::Text => print!("{}", replay::text(&reports)),
    }
    let gate = match how.fail_on {
        FailOn::None => replay::FailOn::Nothing,
        FailOn::NewlyDenied => replay::FailOn::NewlyDenied,
        FailOn::Any => replay::FailOn::Any,
    };
    Ok(if gate.fails(&reports) { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// The live bundle of `key` (its name in reports, and compiled), from its Tenant's storage or
/// the embedded store.
pub fn live_bundle(
    ws: &Workspace,
    key: &ObjectKey,
    store: &Path,
) -> Result<(String, edict::policy::rego::Compiled)> {
    let rt = tokio::runtime::Runtime::new()?;
    let (revision, bytes) = rt.block_on(async {
        let (registry, input) = edict::registry::publishing::system(ws, key, &actor(), store)
            .await
            .map_err(anyhow::Error::msg)?;
        let live = registry
            .live(&input.system_id())
            .await?
            .with_context(|| format!("System {key} has no live bundle"))?;
        let object = registry
            .store()
            .get(&live.key)
            .await?
            .with_context(|| format!("the live bundle {} is gone", live.key))?;
        anyhow::Ok((live.revision, object.bytes))
    })?;
    let compiled = edict::engine::replay::compile_archive(&bytes).map_err(anyhow::Error::msg)?;
    Ok((format!("live {}", &revision[..12.min(revision.len())]), compiled))
}

/// The age `since` says (`30s`, `15m`, `24h`, `7d`).
fn age(since: &str) -> Result<std::time::Duration> {
    edict::ingest::query::parse_age(since)
        .with_context(|| format!("--since {since}: expected 30s, 15m, 24h or 7d"))
}

/// Run `read` on the decisions sink of `key`'s Tenant (its storage, or the embedded store).
fn with_sink<T>(
    ws: &Workspace,
    key: &ObjectKey,
    store: &Path,
    read: impl AsyncFnOnce(edict::ingest::Sink, edict::ingest::SystemKey) -> Result<T>,
) -> Result<T> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let (registry, input) = edict::registry::publishing::system(ws, key, &actor(), store)
            .await
            .map_err(anyhow::Error::msg)?;
        let system = edict::ingest::SystemKey::new(&input.tenant, &input.cluster, &key.namespace, &key.name);
        read(edict::ingest::Sink::of(&registry), system).await
    })
}

/// The decision events `key` recorded within `since`, oldest first, as stored.
pub fn recorded_events(
    ws: &Workspace,
    key: &ObjectKey,
    since: &str,
    shard: Option<(usize, usize)>,
    store: &Path,
) -> Result<Vec<serde_json::Value>> {
    let from = std::time::SystemTime::now().checked_sub(age(since)?);
    with_sink(ws, key, store, async |sink, system| {
        Ok(edict::ingest::query::events_of_shard(&sink, &system, from, shard).await?)
    })
}

/// The decisions `system` recorded within `since`, oldest first.
pub fn recorded(
    files: &[PathBuf],
    system: &str,
    since: &str,
    cluster: &str,
    store: &Path,
) -> Result<Vec<edict::ingest::query::Recorded>> {
    let key = system_key(system)?;
    let ws = Workspace::load(files, cluster)?;
    let events = recorded_events(&ws, &key, since, None, store)?;
    Ok(events.iter().map(edict::ingest::query::Recorded::of).collect())
}

/// The per-minute counts of `system`'s decisions within `since`, from the index's counters.
pub fn minutes(
    files: &[PathBuf],
    system: &str,
    since: &str,
    cluster: &str,
    store: &Path,
) -> Result<BTreeMap<String, MinuteCounts>> {
    let key = system_key(system)?;
    let ws = Workspace::load(files, cluster)?;
    let from = std::time::SystemTime::now().checked_sub(age(since)?).unwrap_or(std::time::UNIX_EPOCH);
    with_sink(&ws, &key, store, async |sink, system| {
        Ok(edict::ingest::query::minutes(&sink, &system, from).await?)
    })
}

pub fn decisions(recorded: Vec<edict::ingest::query::Recorded>, output: Output) -> Result<ExitCode> {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&recorded)?),
        Output::Text => {
            println!("{:<30} {:<7} {:<4} {:<28} MESSAGE", "TIME", "RESULT", "TIER", "DECIDED BY");
            for d in &recorded {
                let result = match d.allowed {
                    Some(true) => "allow",
                    Some(false) => "deny",
                    None => "?",
                };
                let tier = d.tier.map_or("-".to_string(), |t| t.to_string());
                let by = if d.decided_by.is_empty() { "-".to_string() } else { d.decided_by.join(",") };
                println!("{:<30} {:<7} {:<4} {:<28} {}", d.time, result, tier, by, d.message);
            }
            if recorded.is_empty() {
                eprintln!("no decisions recorded in that time");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn stats(minutes: &BTreeMap<String, MinuteCounts>, output: Output) -> Result<ExitCode> {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&minutes)?),
        Output::Text => {
            println!("{:<17} {:>6} {:>7} {:>6}  BY TIER", "MINUTE (UTC)", "TOTAL", "ALLOWED", "DENIED");
            for (minute, m) in minutes {
                let tiers: Vec<String> = m.by_tier.iter().map(|(t, n)| format!("{t}:{n}")).collect();
                println!("{minute:<17} {:>6} {:>7} {:>6}  {}", m.total, m.allowed, m.denied, tiers.join(" "));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
