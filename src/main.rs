//! The `edict` binary: the operator, its embedded default, and the CLI for CI and GitOps checks.

mod cli;

use cli::decisions::{ReplayHow, decisions, minutes, parse_shard, print_replay, recorded, replay, stats};

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};

use edict::engine::workspace::Workspace;
use edict::model::ObjectKey;

#[derive(Parser)]
#[command(name = "edict", version, about = "A Kubernetes-native policy control plane for Open Policy Agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// The OPA release the OPAs run (its builtins decide what compiles): one of the releases
    /// edict knows (v1.9.0, v1.19.1); the newest by default.
    #[arg(long, global = true, env = "EDICT_OPA_VERSION", value_name = "VERSION")]
    opa_version: Option<String>,
    /// How log lines are written (stderr): `text`, coloured only on a terminal, or `json`, one
    /// object per line.
    #[arg(long, global = true, env = "EDICT_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Output {
    /// For people.
    Text,
    /// For scripts.
    Json,
}

/// How `edict replay` prints its report.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum ReplayOutput {
    /// For people.
    Text,
    /// For scripts.
    Json,
    /// For a pull-request comment.
    Markdown,
}

/// What `edict replay` compares the proposed bundle with.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Baseline {
    /// What OPA decided then.
    Recorded,
    /// What the live bundle decides for the same inputs now.
    Live,
}

/// When `edict replay` exits 1.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum FailOn {
    /// Never (report only).
    None,
    /// When any recorded request would now be denied.
    NewlyDenied,
    /// When any decision would change or cannot be replayed.
    Any,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator, or with --local the embedded default fed from a directory of manifests.
    Run {
        /// Watch this directory of manifests, publish to a directory store and serve OPA's bundle API.
        #[arg(long, value_name = "DIR")]
        local: Option<PathBuf>,
        /// Where the embedded directory store keeps bundles: with --local, DIR/.edict/store by
        /// default; for the operator, /tmp/edict/store (the chart's writable emptyDir), serving
        /// the Tenants without `spec.storage`.
        #[arg(long, value_name = "DIR")]
        store: Option<PathBuf>,
        /// Address of the bundle server (the embedded store's OPA bundle API). The chart sets
        /// 0.0.0.0:8181.
        #[arg(long, default_value = "127.0.0.1:8181")]
        addr: String,
        /// Cluster name used in system ids.
        #[arg(long, env = "EDICT_CLUSTER", default_value = "local")]
        cluster: String,
        /// Operator: where `/metrics`, `/healthz` and `/readyz` listen.
        #[arg(long, default_value = "0.0.0.0:8080")]
        metrics_addr: String,
        /// Operator: its own namespace, which holds the leader Lease.
        #[arg(long, env = "EDICT_NAMESPACE", default_value = "edict-system")]
        namespace: String,
        /// Operator: this replica's identity in the leader Lease.
        #[arg(long, env = "EDICT_POD_NAME", default_value = "edict")]
        identity: String,
        /// Operator: the URL OPAs reach the bundle API at, written into their configuration for
        /// Tenants without storage (default: the `edict` Service in the operator's namespace).
        #[arg(long, env = "EDICT_BUNDLE_URL")]
        bundle_url: Option<String>,
    },
    /// Build every System's bundle from manifests; exit non-zero on any problem.
    Build {
        /// Manifest files or directories.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        /// Write each bundle to DIR/<tenant>/<cluster>/<namespace>/<system>/bundle.tar.gz.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Output format.
        #[arg(short, long, value_enum, default_value = "text")]
        output: Output,
        /// Cluster name used in system ids.
        #[arg(long, env = "EDICT_CLUSTER", default_value = "local")]
        cluster: String,
        /// Publish every bundle that built to its Tenant's storage (S3, DynamoDB, KMS).
        #[arg(long)]
        publish: bool,
        /// Give up publishing after this many seconds of transient failures.
        #[arg(long, default_value = "300", value_name = "SECONDS")]
        retry_for: u64,
        /// Publishes in flight at once.
        #[arg(long, default_value_t = 8)]
        parallel: usize,
    },
    /// List a System's published revisions (newest first) from its Tenant's index.
    History {
        /// Manifest files or directories (they name the Tenant's storage).
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        /// The System, as NAMESPACE/NAME.
        #[arg(long)]
        system: String,
        /// Output format.
        #[arg(short, long, value_enum, default_value = "text")]
        output: Output,
        /// The embedded store, for a Tenant without `spec.storage`: where `run --local` publishes
        /// (by default DIR/.edict/store for the first manifest directory given, as `run --local DIR`).
        #[arg(long)]
        store: Option<PathBuf>,
        /// Cluster name used in system ids.
        #[arg(long, env = "EDICT_CLUSTER", default_value = "local")]
        cluster: String,
    },
    /// Make an earlier revision of a System live again (recorded in the commit log).
    Rollback {
        /// Manifest files or directories (they name the Tenant's storage).
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        /// The System, as NAMESPACE/NAME.
        #[arg(long)]
        system: String,
        /// The revision (or a unique prefix of it), as `edict history` lists them.
        #[arg(long)]
        to: String,
        /// The embedded store, for a Tenant without `spec.storage`: where `run --local` publishes
        /// (by default DIR/.edict/store for the first manifest directory given, as `run --local DIR`).
        #[arg(long)]
        store: Option<PathBuf>,
        /// Cluster name used in system ids.
        #[arg(long, env = "EDICT_CLUSTER", default_value = "local")]
        cluster: String,
    },
    /// List the decisions a System's OPAs recorded (newest last), from its Tenant's storage or
    /// the embedded store `run --local` records into.
    Decisions {
        /// Manifest files or directories (they name the Tenant's storage).
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        /// The System, as NAMESPACE/NAME.
        #[arg(long)]
        system: String,
        /// Only decisions this recent (`30m`, `24h`, `7d`).
        #[arg(long, default_value = "1h")]
        since: String,
        /// Only denied requests.
        #[arg(long)]
        denied: bool,
        /// Output format.
        #[arg(short, long, value_enum, default_value = "text")]
        output: Output,
        /// The embedded store (as for `history`).
        #[arg(long)]
        store: Option<PathBuf>,
        /// Cluster name used in system ids.
        #[arg(long, env = "EDICT_CLUSTER", default_value = "local")]
        cluster: String,
    },
    /// Every System published to a Tenant, across the clusters that publish to it: its live
    /// revision, when it was published, and its Stacks (one query of the Tenant's index).
    Systems {
        /// Manifest files or directories (they name the Tenant's storage).
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        /// The Tenant.
        #[arg(long)]
        tenant: String,
        /// Output format.
        #[arg(short, long, value_enum, default_value = "text")]
        output: Output,
        /// The embedded store, for a Tenant without `spec.storage` (by default DIR/.edict/store
        /// for the first manifest directory given, as `run --local DIR`).
        #[arg(long)]
        store: Option<PathBuf>,
    },
    /// Every Stack of a Tenant, per cluster, with the Systems bound to it (one query of the
    /// Tenant's index).
    Stacks {
        /// Manifest files or directories (they name the Tenant's storage).
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        /// The Tenant.
        #[arg(long)]
        tenant: String,
        /// Output format.
        #[arg(short, long, value_enum, default_value = "text")]
        output: Output,
        /// The embedded store, for a Tenant without `spec.storage` (by default DIR/.edict/store
        /// for the first manifest directory given, as `run --local DIR`).
        #[arg(long)]
        store: Option<PathBuf>,
    },
    /// Per-minute counts of a System's recorded decisions: total, allowed, denied, by tier and
    /// by deciding source.
    Stats {
        /// Manifest files or directories (they name the Tenant's storage).
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        /// The System, as NAMESPACE/NAME.
        #[arg(long)]
        system: String,
        /// Only decisions this recent (`30m`, `24h`, `7d`).
        #[arg(long, default_value = "1h")]
        since: String,
        /// Output format.
        #[arg(short, long, value_enum, default_value = "text")]
        output: Output,
        /// The embedded store (as for `history`).
        #[arg(long)]
        store: Option<PathBuf>,
        /// Cluster name used in system ids.
        #[arg(long, env = "EDICT_CLUSTER", default_value = "local")]
        cluster: String,
    },
    /// Replay the decisions a System's OPAs recorded against the bundle the manifests in PATH
    /// build now: which real requests would be decided differently, and what decides them.
    Replay {
        /// The proposed manifests (files or directories).
        #[arg(short = 'f', long = "filename", required_unless_present = "merge")]
        files: Vec<PathBuf>,
        /// The Systems to replay, as NAMESPACE/NAME (repeat the flag for several).
        #[arg(long, required_unless_present = "merge")]
        system: Vec<String>,
        /// Replay one slice of the stored decisions, `i/n` (0 ≤ i < n): n processes together
        /// replay each stored object once; combine their `-o json` reports with `--merge`.
        #[arg(long, value_name = "I/N")]
        shard: Option<String>,
        /// Combine the JSON reports of shards (files) instead of replaying.
        #[arg(long, value_name = "REPORT.json", num_args = 1..)]
        merge: Vec<PathBuf>,
        /// Decisions this recent (`30m`, `24h`, `7d`).
        #[arg(long, default_value = "24h")]
        since: String,
        /// Replay at most this many of the newest decisions per System.
        #[arg(long)]
        limit: Option<usize>,
        /// Output format.
        #[arg(short, long, value_enum, default_value = "text")]
        output: ReplayOutput,
        /// Exit 1 when the replay finds this.
        #[arg(long, value_enum, default_value = "none")]
        fail_on: FailOn,
        /// Compare with what was recorded, or with what the live bundle decides for the same
        /// inputs now (flips caused by data or time are then counted apart as drift).
        #[arg(long, value_enum, default_value = "recorded")]
        baseline: Baseline,
        /// The embedded store (as for `history`).
        #[arg(long)]
        store: Option<PathBuf>,
        /// Cluster name used in system ids.
        #[arg(long, env = "EDICT_CLUSTER", default_value = "local")]
        cluster: String,
    },
    /// Run the Rego tests (test_ rules) of every Policy, like `opa test`.
    Test {
        /// Manifest files or directories.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
    },
    /// Evaluate one decision for a System and explain which tier and source decided.
    Eval {
        /// Manifest files or directories.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        /// The System, as NAMESPACE/NAME.
        #[arg(long)]
        system: String,
        /// JSON (or YAML) file holding the input document.
        #[arg(long)]
        input: PathBuf,
        /// Output format.
        #[arg(short, long, value_enum, default_value = "text")]
        output: Output,
        /// Cluster name used in system ids.
        #[arg(long, env = "EDICT_CLUSTER", default_value = "local")]
        cluster: String,
    },
    /// Print the CustomResourceDefinitions (or write one file per CRD into a directory).
    Crds {
        /// Write `<name>.yaml` files into this directory instead of printing.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

/// How log lines are written.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum LogFormat {
    /// One line of text per event; coloured only on a terminal.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// mimalloc instead of the system allocator: the compile gate and the build pipeline allocate
/// many small syntax nodes and strings, and glibc's allocator took a quarter of the gate's time
/// (cold gate on the reference System 5.8 → 5.0 ms). The benches declare the same allocator, so
/// that they measure what this binary runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // regorus's parser backtracks through `anyhow` errors, and anyhow captures a stack trace for
    // each one when RUST_BACKTRACE is set: with RUST_BACKTRACE=1, the compile gate took 2.2× as
    // long (20.9 ms against 9.4 ms on the reference System). edict never shows those traces, so
    // it turns off library backtraces unless they were asked for by name; panics keep theirs.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // SAFETY: nothing else runs yet; no thread has started.
        unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    }
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => {
            use std::io::IsTerminal;
            logs.with_ansi(std::io::stderr().is_terminal()).init()
        }
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    if let Some(version) = &cli.opa_version {
        let Some(caps) = edict::policy::Capabilities::named(version) else {
            anyhow::bail!(
                "--opa-version {version}: edict knows the builtins of OPA {}",
                edict::policy::Capabilities::known().join(", ")
            );
        };
        edict::policy::Capabilities::set_default(caps);
    }
    match cli.command {
        Command::Crds { out: None } => {
            print!("{}", edict::crds::yaml()?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Crds { out: Some(dir) } => {
            std::fs::create_dir_all(&dir)?;
            for (name, yaml) in edict::crds::files()? {
                std::fs::write(dir.join(&name), yaml).with_context(|| format!("writing {name}"))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Build { files, out, output, cluster, publish, retry_for, parallel } => {
            build(&files, out, output, &cluster, publish.then_some((retry_for, parallel)))
        }
        Command::History { files, system, output, cluster, store } => {
            history(&files, &system, output, &cluster, &embedded_store(&files, store))
        }
        Command::Rollback { files, system, to, cluster, store } => {
            rollback(&files, &system, &to, &cluster, &embedded_store(&files, store))
        }
        Command::Decisions { files, system, since, denied, output, store, cluster } => {
            let store = embedded_store(&files, store);
            let recorded = recorded(&files, &system, &since, &cluster, &store)?;
            decisions(recorded.into_iter().filter(|d| !denied || d.allowed == Some(false)).collect(), output)
        }
        Command::Systems { files, tenant, output, store } => {
            cli::directory::systems(&files, &tenant, output, &embedded_store(&files, store))
        }
        Command::Stacks { files, tenant, output, store } => {
            cli::directory::stacks(&files, &tenant, output, &embedded_store(&files, store))
        }
        Command::Stats { files, system, since, output, store, cluster } => {
            let store = embedded_store(&files, store);
            stats(&minutes(&files, &system, &since, &cluster, &store)?, output)
        }
        Command::Replay {
            files,
            system,
            shard,
            merge,
            since,
            limit,
            output,
            fail_on,
            baseline,
            store,
            cluster,
        } => {
            let shard = shard.as_deref().map(parse_shard).transpose()?;
            let how = ReplayHow { since, limit, output, fail_on, baseline, shard };
            if !merge.is_empty() {
                let mut all = Vec::new();
                for path in &merge {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    let reports: Vec<edict::engine::replay::Report> = serde_json::from_str(&text)
                        .with_context(|| format!("{}: not a replay report", path.display()))?;
                    all.extend(reports);
                }
                return print_replay(edict::engine::replay::merge(all), &how);
            }
            let store = embedded_store(&files, store);
            replay(&files, &system, &how, &cluster, &store)
        }
        Command::Test { files } => test(&files),
        Command::Eval { files, system, input, output, cluster } => {
            eval(&files, &system, &input, output, &cluster)
        }
        Command::Run { local: Some(dir), store, addr, cluster, .. } => {
            let store = store.unwrap_or_else(|| dir.join(".edict/store"));
            let addr = addr.parse().with_context(|| format!("--addr {addr}"))?;
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(edict::sources::local::run(edict::sources::local::Options {
                dir,
                store,
                addr,
                cluster,
            }))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { local: None, store, addr, cluster, metrics_addr, namespace, identity, bundle_url } => {
            let port = addr.rsplit(':').next().unwrap_or("8181").to_string();
            let bundle_url = bundle_url.unwrap_or_else(|| format!("http://edict.{namespace}.svc:{port}"));
            operator(
                // The container's root file system is read-only; /tmp is its writable volume.
                store.unwrap_or_else(|| PathBuf::from("/tmp/edict/store")),
                cluster,
                &addr,
                &metrics_addr,
                namespace,
                identity,
                bundle_url,
            )
        }
    }
}

fn build(
    files: &[PathBuf],
    out: Option<PathBuf>,
    output: Output,
    cluster: &str,
    publish: Option<(u64, usize)>,
) -> Result<ExitCode> {
    let ws = Workspace::load(files, cluster)?;
    let problems = ws.problems();
    let published = match publish {
        Some((seconds, parallel)) => Some(publish_all(&ws, seconds, parallel)?),
        None => None,
    };
    let publish_failed = published.as_ref().is_some_and(|p| p.values().any(|r| r.is_err()));
    if let Some(dir) = &out {
        for b in ws.builds.values() {
            if let (Some(input), Some(bundle)) = (&b.input, &b.bundle) {
                let path = dir.join(input.live_key().trim_start_matches("bundles/"));
                std::fs::create_dir_all(path.parent().unwrap_or(dir))?;
                std::fs::write(&path, bundle.archive())
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
    }
    match output {
        Output::Json => {
            let systems: Vec<_> = ws
                .builds
                .values()
                .map(|b| {
                    serde_json::json!({
                        "system": b.key.to_string(),
                        "tenant": b.tenant,
                        "type": b.input.as_ref().map(|i| i.system_type.as_str()),
                        "stacks": b.stacks().iter().map(|k| k.to_string()).collect::<Vec<_>>(),
                        "policies": b.policy_count(),
                        "revision": b.bundle.as_ref().map(|x| x.revision().to_string()),
                        "bundle": b.input.as_ref().map(|i| i.live_key()),
                        "ok": b.bundle.is_some(),
                        "published": published.as_ref().and_then(|p| p.get(&b.key)).map(|r| match r {
                            Ok(state) => serde_json::json!(state),
                            Err(e) => serde_json::json!({ "error": e }),
                        }),
                    })
                })
                .collect();
            let report = serde_json::json!({ "systems": systems, "problems": problems });
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Output::Text => {
            println!(
                "{:<32} {:<12} {:<10} {:>6} {:>8}  {:<14} STATUS",
                "SYSTEM", "TENANT", "TYPE", "STACKS", "POLICIES", "REVISION"
            );
            for b in ws.builds.values() {
                let ty = b.input.as_ref().map(|i| i.system_type.as_str()).unwrap_or("-");
                let revision =
                    b.bundle.as_ref().map(|x| x.revision()[..12].to_string()).unwrap_or_else(|| "-".into());
                let status = match (b.bundle.is_some(), published.as_ref().and_then(|p| p.get(&b.key))) {
                    (false, _) => "FAILED".to_string(),
                    (true, None) => "ok".to_string(),
                    (true, Some(Ok(state))) => format!("ok, {state}"),
                    (true, Some(Err(_))) => "PUBLISH FAILED".to_string(),
                };
                println!(
                    "{:<32} {:<12} {:<10} {:>6} {:>8}  {:<14} {status}",
                    b.key.to_string(),
                    b.tenant.as_deref().unwrap_or("-"),
                    ty,
                    b.stacks().len(),
                    b.policy_count(),
                    revision
                );
            }
            for (key, err) in published.iter().flatten().filter_map(|(k, r)| r.as_ref().err().map(|e| (k, e)))
            {
                println!("\npublishing {key} failed: {err}");
            }
            if !problems.is_empty() {
                println!("\n{} problem(s):", problems.len());
                for p in &problems {
                    println!("  {} [{}]\n    {}", p.object, p.reason, p.message.replace('\n', "\n    "));
                }
            }
        }
    }
    Ok(if problems.is_empty() && !publish_failed { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

#[cfg(feature = "aws")]
fn operator(
    store: PathBuf,
    cluster: String,
    addr: &str,
    metrics_addr: &str,
    namespace: String,
    identity: String,
    bundle_url: String,
) -> Result<ExitCode> {
    let metrics_addr = metrics_addr.parse().with_context(|| format!("--metrics-addr {metrics_addr}"))?;
    let bundle_addr = addr.parse().with_context(|| format!("--addr {addr}"))?;
    let rt = tokio::runtime::Runtime::new()?;
    let opts = edict::operator::Options {
        cluster,
        metrics_addr,
        bundle_addr,
        bundle_url,
        namespace,
        identity,
        store,
    };
    rt.block_on(edict::operator::run(opts))?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(feature = "aws"))]
fn operator(_: PathBuf, _: String, _: &str, _: &str, _: String, _: String, _: String) -> Result<ExitCode> {
    bail!("this edict was built without the `aws` feature, which the operator needs")
}

/// Who the commit log names for CLI changes.
fn actor() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}

#[cfg(feature = "aws")]
fn publish_all(
    ws: &Workspace,
    seconds: u64,
    parallel: usize,
) -> Result<std::collections::BTreeMap<ObjectKey, Result<String, String>>> {
    let backoff =
        edict::retry::Backoff { deadline: std::time::Duration::from_secs(seconds), ..Default::default() };
    let rt = tokio::runtime::Runtime::new()?;
    let reports = rt.block_on(edict::registry::publishing::publish_all(ws, &actor(), backoff, parallel));
    Ok(reports
        .into_iter()
        .map(|r| {
            let state = r.outcome.map(|p| match p {
                edict::registry::Published::Written => "published".to_string(),
                edict::registry::Published::Unchanged => "unchanged".to_string(),
            });
            (r.system, state)
        })
        .collect())
}

#[cfg(not(feature = "aws"))]
fn publish_all(
    _: &Workspace,
    _: u64,
    _: usize,
) -> Result<std::collections::BTreeMap<ObjectKey, Result<String, String>>> {
    bail!("this edict was built without the `aws` feature: --publish, history and rollback need it")
}

fn system_key(system: &str) -> Result<ObjectKey> {
    let (ns, name) = system.split_once('/').context("--system must be NAMESPACE/NAME")?;
    Ok(ObjectKey::new(ns, name))
}

/// The embedded store `run --local DIR` publishes to, for the manifests `files`.
fn embedded_store(files: &[PathBuf], store: Option<PathBuf>) -> PathBuf {
    store.unwrap_or_else(|| {
        let first = files.first().cloned().unwrap_or_default();
        let dir =
            if first.is_dir() { first } else { first.parent().map(Path::to_path_buf).unwrap_or_default() };
        dir.join(".edict/store")
    })
}

fn history(files: &[PathBuf], system: &str, output: Output, cluster: &str, store: &Path) -> Result<ExitCode> {
    let key = system_key(system)?;
    let ws = Workspace::load(files, cluster)?;
    let rt = tokio::runtime::Runtime::new()?;
    let (revisions, live) = rt.block_on(async {
        let (registry, input) = edict::registry::publishing::system(&ws, &key, &actor(), store)
            .await
            .map_err(anyhow::Error::msg)?;
        edict::registry::publishing::history(&registry, &input).await.map_err(anyhow::Error::msg)
    })?;
    match output {
        Output::Json => {
            let list: Vec<_> = revisions
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "revision": r.revision,
                        "live": live.as_deref() == Some(r.revision.as_str()),
                        "created": k8s_openapi::jiff::Timestamp::try_from(r.created).map(|t| t.to_string()).unwrap_or_default(),
                        "size": r.size,
                        "key": r.key,
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&list)?);
        }
        Output::Text => {
            println!("{:<66} {:<5} {:<21} {:>8}", "REVISION", "LIVE", "CREATED", "SIZE");
            for r in &revisions {
                let created = k8s_openapi::jiff::Timestamp::try_from(r.created)
                    .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
                    .unwrap_or_default();
                let mark = if live.as_deref() == Some(r.revision.as_str()) { "*" } else { "" };
                println!("{:<66} {:<5} {:<21} {:>8}", r.revision, mark, created, r.size);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn rollback(files: &[PathBuf], system: &str, to: &str, cluster: &str, store: &Path) -> Result<ExitCode> {
    let key = system_key(system)?;
    let ws = Workspace::load(files, cluster)?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let (registry, input) = edict::registry::publishing::system(&ws, &key, &actor(), store)
            .await
            .map_err(anyhow::Error::msg)?;
        registry.rollback(&input, to, std::time::SystemTime::now()).await.map_err(anyhow::Error::from)?;
        let live = registry.live(&input.system_id()).await?.map(|l| l.revision).unwrap_or_default();
        println!("{key}: revision {live} is live again");
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn test(files: &[PathBuf]) -> Result<ExitCode> {
    let ws = Workspace::load(files, "local")?;
    let (mut passed, mut failed) = (0, 0);
    for (policy, result) in ws.run_tests() {
        match result {
            Ok(results) => {
                for r in results {
                    match r.failure {
                        None => {
                            passed += 1;
                            println!("PASS {policy}: {}", r.name);
                        }
                        Some(why) => {
                            failed += 1;
                            println!("FAIL {policy}: {} ({why})", r.name);
                        }
                    }
                }
            }
            Err(p) => {
                failed += 1;
                println!("ERROR {policy}: {}", p.message);
            }
        }
    }
    let broken: Vec<_> = ws.problems().into_iter().filter(|p| p.object.kind == "Policy").collect();
    for p in &broken {
        if p.reason != edict::engine::problem::Reason::TestFailed {
            println!("ERROR {}: {}", p.object, p.message);
        }
    }
    println!("{passed} passed, {failed} failed");
    let errors = broken.iter().any(|p| p.reason != edict::engine::problem::Reason::TestFailed);
    Ok(if failed == 0 && !errors { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn eval(files: &[PathBuf], system: &str, input: &PathBuf, output: Output, cluster: &str) -> Result<ExitCode> {
    let key = system_key(system)?;
    let ws = Workspace::load(files, cluster)?;
    let build = ws.builds.get(&key).with_context(|| format!("no System {key} in the manifests"))?;
    let Some(bundle) = &build.bundle else {
        for p in &build.problems {
            eprintln!("{} [{}]: {}", p.object, p.reason, p.message);
        }
        bail!("System {key} does not build");
    };
    let text = std::fs::read_to_string(input).with_context(|| format!("reading {}", input.display()))?;
    let input: serde_json::Value =
        serde_norway::from_str(&text).with_context(|| format!("parsing {}", input.display()))?;
    let compiled =
        edict::policy::rego::compile(&bundle.modules(), &bundle.data(), edict::engine::pipeline::ENTRYPOINT)?;
    let outcome = compiled.eval("data.main.outcome", &input)?.unwrap_or_default();
    let result = compiled.eval("data.main.main", &input)?.unwrap_or_default();
    match output {
        Output::Json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({"outcome": outcome, "result": result}))?
            )
        }
        Output::Text => print!("{}", edict::policy::explain::explain(&key, &outcome)),
    }
    Ok(ExitCode::SUCCESS)
}
