//! `edict run --local`: bundles over HTTP as OPA fetches them, ETag/304 across a change,
//! the last good bundle kept while a Policy is broken, and the served bundle loaded into OPA.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const BUNDLE: &str = "bundles/acme/local/acme-payments/payments-cluster/bundle.tar.gz";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

struct Response {
    status: u16,
    etag: Option<String>,
    body: Vec<u8>,
}

fn get(url: &str, if_none_match: Option<&str>) -> Option<Response> {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut req = agent.get(url);
    if let Some(tag) = if_none_match {
        req = req.header("If-None-Match", tag);
    }
    let mut resp = req.call().ok()?;
    let status = resp.status().as_u16();
    let etag = resp.headers().get("etag").and_then(|v| v.to_str().ok()).map(String::from);
    let body = resp.body_mut().read_to_vec().unwrap_or_default();
    Some(Response { status, etag, body })
}

/// Poll (bounded) until `check` holds.
fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).expect("read");
    assert!(text.contains(from), "{from:?} not in {}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).expect("write");
}

fn opa_outcome(bundle: &[u8], dir: &Path, input: &Path) -> serde_json::Value {
    let archive = dir.join("downloaded.tar.gz");
    std::fs::write(&archive, bundle).expect("write bundle");
    let input: serde_json::Value =
        serde_json::from_slice(&std::fs::read(input).expect("input")).expect("json");
    let cases = dir.join("cases.json");
    std::fs::write(
        &cases,
        serde_json::json!({"queries": ["data.main.outcome"], "inputs": [input]}).to_string(),
    )
    .expect("cases");
    let out = Command::new(common::python())
        .arg(common::root().join("scripts/opa_bundle.py"))
        .args([&archive, &cases])
        .output()
        .expect("run opa_bundle.py");
    assert!(out.status.success(), "OPA rejected the served bundle: {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report");
    report["results"][0]["result"].clone()
}

/// `edict run --local` on a copy of the examples (`manifests/`, store in `store/`), serving on
/// a free loopback port.
struct Running {
    work: tempfile::TempDir,
    manifests: PathBuf,
    base: String,
    rt: tokio::runtime::Runtime,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    fn start() -> Running {
        let work = tempfile::tempdir().expect("tempdir");
        let manifests = work.path().join("manifests");
        std::fs::create_dir(&manifests).expect("mkdir");
        common::copy_examples(&manifests);
        let port = free_port();
        let opts = edict::sources::local::Options {
            dir: manifests.clone(),
            store: work.path().join("store"),
            addr: format!("127.0.0.1:{port}").parse().expect("addr"),
            cluster: "local".into(),
        };
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let server = rt.spawn(edict::sources::local::run(opts));
        Running { work, manifests, base: format!("http://127.0.0.1:{port}"), rt, server }
    }
}

#[test]
fn serves_bundles_like_an_opa_bundle_service_and_follows_changes() {
    let Running { work, manifests, base, rt: _rt, server } = Running::start();

    // First download, as OPA does: 200 with an ETag; the same tag again gives 304.
    let first =
        wait_for("the first bundle", || get(&format!("{base}/{BUNDLE}"), None).filter(|r| r.status == 200));
    let tag = first.etag.clone().expect("ETag on 200");
    let again = get(&format!("{base}/{BUNDLE}"), Some(&tag)).expect("second request");
    assert_eq!(again.status, 304, "unchanged bundle must answer 304");
    assert!(
        get(&format!("{base}/bundles/acme/local/nope/bundle.tar.gz"), None).is_some_and(|r| r.status == 404)
    );

    // The served bundle decides in OPA's own engine.
    let nginx = common::root().join("examples/inputs/pod-with-nginx.json");
    let outcome = opa_outcome(&first.body, work.path(), &nginx);
    assert_eq!(outcome["allowed"], false, "{outcome}");
    assert_eq!(outcome["tier"], 3, "{outcome}");

    // A change to a stack policy produces a new bundle with a new tag.
    let stacks = manifests.join("stacks.yaml");
    edit(&stacks, "which this system's features do not allow", "not allowed by this system's features");
    let changed = wait_for("the rebuilt bundle", || {
        get(&format!("{base}/{BUNDLE}"), Some(&tag)).filter(|r| r.status == 200)
    });
    let new_tag = changed.etag.clone().expect("ETag");
    assert_ne!(new_tag, tag);
    let outcome = opa_outcome(&changed.body, work.path(), &nginx);
    assert!(
        outcome["messages"][0].as_str().is_some_and(|m| m.contains("not allowed by this system's features")),
        "{outcome}"
    );

    // Break the Rego: the last good bundle keeps being served and the status says where.
    edit(&stacks, "image in proxy_images\n", "image in proxy_images +\n");
    let status = wait_for("the InvalidRego status", || {
        let body = get(&format!("{base}/v1/status"), None)?.body;
        let s: serde_json::Value = serde_json::from_slice(&body).ok()?;
        let ready = s["systems"]["acme-payments/payments-cluster"]["conditions"][0].clone();
        (ready["status"] == "False").then_some(s)
    });
    let policy = &status["policies"]["acme-platform/restrict-proxies"]["conditions"][0];
    assert_eq!(policy["reason"], "InvalidRego", "{policy}");
    let message = policy["message"].as_str().unwrap_or_default();
    let expected = format!("{}:", stacks.display());
    assert!(message.starts_with(&expected), "message names the manifest file: {message}");
    let location: Vec<&str> = message[expected.len()..].splitn(3, ':').collect();
    assert!(
        location[0].parse::<u32>().is_ok() && location[1].parse::<u32>().is_ok(),
        "line:col in {message}"
    );
    let system = &status["systems"]["acme-payments/payments-cluster"];
    assert_eq!(system["conditions"][1]["type"], "Stalled");
    assert_eq!(system["conditions"][1]["status"], "True");
    assert_eq!(system["revision"].as_str().map(|r| r.len()), Some(64), "last good revision still reported");
    let still = get(&format!("{base}/{BUNDLE}"), Some(&new_tag)).expect("request");
    assert_eq!(still.status, 304, "the last good bundle keeps serving while the policy is broken");

    // Fix it: recovery without restart.
    edit(&stacks, "image in proxy_images +\n", "image in proxy_images\n");
    let recovered = || {
        let body = get(&format!("{base}/v1/status"), None)?.body;
        let s: serde_json::Value = serde_json::from_slice(&body).ok()?;
        (s["systems"]["acme-payments/payments-cluster"]["conditions"][0]["status"] == "True").then_some(())
    };
    wait_for("recovery", recovered);

    // Rego that parses but that OPA's compiler refuses (a builtin given a number) is refused the
    // same way, at the token OPA names (stacks.yaml line 38, column 6: `count`).
    edit(&stacks, "\timage in proxy_images\n", "\timage in proxy_images\n    \tcount(5) > 0\n");
    let status = wait_for("the type error", || {
        let body = get(&format!("{base}/v1/status"), None)?.body;
        let s: serde_json::Value = serde_json::from_slice(&body).ok()?;
        let ready = s["policies"]["acme-platform/restrict-proxies"]["conditions"][0].clone();
        (ready["status"] == "False").then_some(s)
    });
    let message = status["policies"]["acme-platform/restrict-proxies"]["conditions"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message
            .starts_with(&format!("{}:38:6: rego_type_error: count: invalid argument(s)", stacks.display())),
        "{message}"
    );
    let served = get(&format!("{base}/{BUNDLE}"), None).expect("request");
    let outcome = opa_outcome(&served.body, work.path(), &nginx);
    assert!(
        outcome["messages"][0].as_str().is_some_and(|m| m.contains("not allowed by this system's features")),
        "the last good bundle keeps serving: {outcome}"
    );
    edit(&stacks, "    \tcount(5) > 0\n", "");
    wait_for("recovery from the type error", recovered);
    server.abort();
}

/// The examples copied into a temporary directory, with the embedded store `run --local`
/// would use (`.edict/store`) and a runtime to publish through.
struct Loaded {
    work: tempfile::TempDir,
    store_dir: PathBuf,
    rt: tokio::runtime::Runtime,
}

impl Loaded {
    fn new() -> Loaded {
        let work = tempfile::tempdir().expect("tempdir");
        common::copy_examples(work.path());
        let store_dir = work.path().join(".edict/store");
        Loaded { work, store_dir, rt: tokio::runtime::Runtime::new().expect("runtime") }
    }
}

#[test]
fn unchanged_rebuild_writes_nothing() {
    let Loaded { work, store_dir, rt } = Loaded::new();
    let registry = edict::registry::Registry::embedded(&store_dir);
    let mut local = edict::sources::local::Local::load(work.path(), &store_dir, "local").expect("load");
    let all: Vec<_> = local.ws.builds.keys().cloned().collect();
    assert_eq!(rt.block_on(local.publish(&registry, &all)), (3, 0));
    // A fresh registry (a restart) must find the live bundles and write nothing.
    let registry = edict::registry::Registry::embedded(&store_dir);
    assert_eq!(rt.block_on(local.publish(&registry, &all)), (0, 3));
    let commits = rt.block_on(registry.index().commits("embedded", 100)).expect("commit log");
    assert_eq!(commits.len(), 3, "a restart appends nothing to the commit log: {commits:?}");
    // Touching a file without changing an object rebuilds nothing.
    let rebuilt = local.rescan().expect("rescan");
    assert!(rebuilt.is_empty(), "{rebuilt:?}");
}

/// A file caught mid-save (emptied, cut short, or briefly gone) does not delete its objects:
/// restored within the settle time, nothing is rebuilt or published; left so for longer, its
/// objects are deleted.
#[test]
fn a_file_caught_mid_save_deletes_nothing_until_it_settles() {
    let Loaded { work, store_dir, .. } = Loaded::new();
    let mut local = edict::sources::local::Local::load(work.path(), &store_dir, "local").expect("load");
    let stacks = work.path().join("stacks.yaml");
    let original = std::fs::read_to_string(&stacks).expect("stacks.yaml");
    let stack = edict::model::ObjectKey::new("acme-platform", "kubernetes-baseline");
    let revisions = |local: &edict::sources::local::Local| -> Vec<Option<String>> {
        local.ws.builds.values().map(|b| b.bundle.as_ref().map(|x| x.revision().to_string())).collect()
    };
    let before = revisions(&local);
    assert!(local.ws.catalog.stacks().contains_key(&stack));

    // Cut after a whole document (a cut inside one is waited out by the run loop, which reads
    // a file only once its writes have stopped).
    let cut = original[..original.len() / 2].rfind("\n---").expect("several documents");
    let half = &original[..cut + 1];
    for (what, content) in [("emptied", Some("")), ("cut short", Some(half)), ("removed", None)] {
        match content {
            Some(text) => std::fs::write(&stacks, text).expect("write"),
            None => std::fs::remove_file(&stacks).expect("remove"),
        }
        let rebuilt = local.reload(std::slice::from_ref(&stacks)).expect("reload");
        assert!(rebuilt.is_empty(), "{what}: rebuilt {rebuilt:?}");
        assert!(local.ws.catalog.stacks().contains_key(&stack), "{what}: the Stack is kept");
        assert!(local.next_settle().is_some(), "{what}: settling");
        // Saved for real 100 ms later: as if nothing happened.
        std::fs::write(&stacks, &original).expect("restore");
        let rebuilt = local.reload(std::slice::from_ref(&stacks)).expect("reload");
        assert!(rebuilt.is_empty(), "{what} and restored: rebuilt {rebuilt:?}");
        assert_eq!(local.next_settle(), None);
        assert_eq!(revisions(&local), before, "{what}: same bundles");
    }

    // Removed for good: after the settle time its objects go, and the Systems are rebuilt without them.
    std::fs::remove_file(&stacks).expect("remove");
    local.reload(std::slice::from_ref(&stacks)).expect("reload");
    let due = local.next_settle().expect("settling");
    assert!(local.settle(due - Duration::from_millis(1)).expect("settle").is_empty(), "not yet");
    let rebuilt = local.settle(due).expect("settle");
    assert!(!rebuilt.is_empty(), "the bound Systems are rebuilt");
    assert!(!local.ws.catalog.stacks().contains_key(&stack));
    assert_eq!(local.next_settle(), None);
}

fn edict(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_edict")).args(args).output().expect("run edict")
}

/// `run --local` publishes through the same registry as the operator: a second revision is
/// kept in history, `edict history -f DIR` lists both, `edict rollback` makes the first live
/// again, and all of it survives a restart (the index is on disk beside the bundles).
#[test]
fn local_mode_has_history_and_rollback() {
    let Loaded { work, store_dir, rt } = Loaded::new();
    let dir = work.path().to_str().expect("utf-8 path");
    let registry = edict::registry::Registry::embedded(&store_dir);
    let mut local = edict::sources::local::Local::load(work.path(), &store_dir, "local").expect("load");
    let all: Vec<_> = local.ws.builds.keys().cloned().collect();
    assert_eq!(rt.block_on(local.publish(&registry, &all)), (3, 0));
    let live = || std::fs::read(store_dir.join(BUNDLE)).expect("live bundle");
    let first = live();

    let systems = work.path().join("systems.yaml");
    edit(&systems, "must not be privileged", "must never be privileged");
    let rebuilt = local.reload(std::slice::from_ref(&systems)).expect("reload");
    assert_eq!(rt.block_on(local.publish(&registry, &rebuilt)), (1, 0));
    let second = live();
    assert_ne!(first, second);

    let out = edict(&["history", "-f", dir, "--system", "acme-payments/payments-cluster", "-o", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let listed = listed.as_array().expect("a list");
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0]["live"], true, "newest first, and live");
    assert_eq!(listed[1]["live"], false);
    let older = listed[1]["revision"].as_str().expect("revision").to_string();

    let out =
        edict(&["rollback", "-f", dir, "--system", "acme-payments/payments-cluster", "--to", &older[..12]]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(live(), first, "the first revision's bytes are served again");

    // The running process's index sees the rollback (another process wrote it).
    let id = "local/acme-payments/payments-cluster";
    let now_live = rt.block_on(registry.live(id)).expect("live").expect("a live revision");
    assert_eq!(now_live.revision, older);
    let actions: Vec<String> = rt
        .block_on(registry.index().commits("embedded", 10))
        .expect("commit log")
        .into_iter()
        .map(|c| format!("{} {}", c.action, c.actor))
        .collect();
    assert!(actions[0].starts_with("rollback cli:"), "{actions:?}");
    assert_eq!(actions.iter().filter(|a| a.starts_with("publish")).count(), 4, "{actions:?}");
}

/// A System deleted from the manifests is retired from the embedded store (bundle, history and
/// index) once its file settles, and one deleted while edict was stopped is dropped at start.
#[test]
fn a_deleted_system_leaves_the_store() {
    let Loaded { work, store_dir, rt } = Loaded::new();
    let registry = edict::registry::Registry::embedded(&store_dir);
    let mut local = edict::sources::local::Local::load(work.path(), &store_dir, "local").expect("load");
    let all: Vec<_> = local.ws.builds.keys().cloned().collect();
    rt.block_on(local.publish(&registry, &all));
    let bundle = store_dir.join(BUNDLE);
    assert!(bundle.exists());

    // Cut the payments System (and its Policy) out of systems.yaml: gone after the settle time.
    let systems = work.path().join("systems.yaml");
    let text = std::fs::read_to_string(&systems).expect("systems.yaml");
    let rest = &text[text[4..].find("---").map(|i| i + 4).expect("several documents")..];
    let rest = &rest[rest[4..].find("---").map(|i| i + 4).expect("a Policy")..];
    assert!(!rest.contains("payments-cluster"), "{rest}");
    std::fs::write(&systems, rest).expect("write");
    local.reload(std::slice::from_ref(&systems)).expect("reload");
    let due = local.next_settle().expect("settling");
    let rebuilt = local.settle(due).expect("settle");
    rt.block_on(local.publish(&registry, &rebuilt));
    assert!(!bundle.exists(), "the deleted System's bundle is no longer served");
    let id = "local/acme-payments/payments-cluster";
    assert!(rt.block_on(registry.history(id)).expect("history").is_empty(), "nor its history");
    assert!(store_dir.join("bundles/acme/local/acme-shop/storefront-envoy/bundle.tar.gz").exists());

    // Deleted while stopped: the next start drops it.
    std::fs::write(&systems, &text).expect("restore");
    let mut local = edict::sources::local::Local::load(work.path(), &store_dir, "local").expect("load");
    let all: Vec<_> = local.ws.builds.keys().cloned().collect();
    rt.block_on(local.publish(&registry, &all));
    assert!(bundle.exists());
    std::fs::write(&systems, rest).expect("write");
    let mut local = edict::sources::local::Local::load(work.path(), &store_dir, "local").expect("load");
    rt.block_on(local.prune(&registry));
    assert!(!bundle.exists(), "dropped at start");
}

fn post(url: &str, body: &[u8], gzip: bool) -> u16 {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut req = agent.post(url).header("Content-Type", "application/json");
    let sent = if gzip {
        req = req.header("Content-Encoding", "gzip");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut enc, body).expect("gzip");
        enc.finish().expect("gzip")
    } else {
        body.to_vec()
    };
    req.send(&sent[..]).map(|r| r.status().as_u16()).unwrap_or(0)
}

/// OPAs report to `run --local` as a real OPA 1.9 does (the captured payloads): the System's
/// status shows how many run the live revision (`LIVE 1/1`, then `1/2` with the newest error
/// when another OPA refuses a bundle), decision batches are stored under their Hive partition
/// in the embedded store, and a report for a System it does not serve is refused.
#[test]
fn opas_report_to_run_local_and_their_state_shows_in_status() {
    let Running { work, manifests, base, rt: _rt, server } = Running::start();
    let store = work.path().join("store");
    let status = || -> Option<serde_json::Value> {
        let r = get(&format!("{base}/v1/status"), None)?;
        let all: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
        Some(all["systems"]["acme-payments/payments-cluster"].clone())
    };
    let live_condition = |s: &serde_json::Value| -> Option<(String, String, String)> {
        let c = s["conditions"].as_array()?.iter().find(|c| c["type"] == "Live")?.clone();
        Some((c["status"].as_str()?.into(), c["reason"].as_str()?.into(), c["message"].as_str()?.into()))
    };
    let revision = wait_for("the payments System published", || {
        status().and_then(|s| s["revision"].as_str().map(String::from))
    });
    let (no_opas, reason, _) = wait_for("the Live condition", || status().as_ref().and_then(live_condition));
    assert_eq!((no_opas.as_str(), reason.as_str()), ("Unknown", "NoOpas"));

    let fixture = |name: &str| {
        std::fs::read_to_string(common::root().join("tests/fixtures/opa-wire").join(name)).expect("fixture")
    };
    const CAPTURED: &str = "ad04ca06ddc608fa1ec8768d110ccb81c8cd81c4f060aa19631a0c885aa4c8b1";
    let active = fixture("status-active.json").replace(CAPTURED, &revision);
    assert_eq!(post(&format!("{base}/status"), active.as_bytes(), false), 200);
    let s = wait_for("1/1 OPAs live", || status().filter(|s| s["opas"]["live"] == "1/1"));
    let (st, reason, message) = live_condition(&s).expect("Live");
    assert_eq!((st.as_str(), reason.as_str()), ("True", "Live"), "{message}");

    // A second OPA still on an older revision, whose activation of the live one failed.
    let failed = fixture("status-activation-failed.json")
        .replace("c522fd0f-a67f-4466-b48d-e1d27340e774", "second-opa");
    assert_eq!(post(&format!("{base}/status"), failed.as_bytes(), false), 200);
    let s = wait_for("1/2 OPAs live", || status().filter(|s| s["opas"]["live"] == "1/2"));
    let (st, reason, message) = live_condition(&s).expect("Live");
    assert_eq!((st.as_str(), reason.as_str()), ("False", "Degraded"), "{message}");
    assert!(message.contains("rego_type_error: count: invalid argument(s)"), "{message}");
    assert_eq!(s["opas"]["failed"], 1);
    assert!(s["opas"]["newestError"].as_str().is_some_and(|e| e.contains("second-opa")), "{s}");

    // A decision batch, gzip as OPA sends it: stored once durable, under its partition.
    let batch = fixture("decision-logs-batch.json");
    assert_eq!(post(&format!("{base}/logs"), batch.as_bytes(), true), 200);
    let partition = store.join("decisions/acme/local/acme-payments/payments-cluster/dt=2026-11-30/hour=17");
    let stored: Vec<_> = std::fs::read_dir(&partition).expect("the partition").flatten().collect();
    assert_eq!(stored.len(), 1, "{stored:?}");
    let events = edict::ingest::decisions::read_ndjson_gz(&std::fs::read(stored[0].path()).expect("read"))
        .expect("gzip NDJSON");
    assert_eq!(events.len(), 2);

    // Read back with the CLI, as stored (the fixture's decisions are from 2026-11-30).
    let dir = manifests.to_str().expect("utf-8");
    let store_arg = store.to_str().expect("utf-8");
    let system = "acme-payments/payments-cluster";
    let cli = |verb: &str, extra: &[&str]| -> serde_json::Value {
        let mut args =
            vec![verb, "-f", dir, "--system", system, "--since", "3650d", "--store", store_arg, "-o", "json"];
        args.extend(extra);
        let out = edict(&args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("json")
    };
    let all = cli("decisions", &[]);
    let all = all.as_array().expect("a list").clone();
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[0]["allowed"], false);
    assert!(all[0]["message"].as_str().is_some_and(|m| m.contains("nginx")), "{all:?}");
    assert_eq!(all[1]["erased"][0], "/input/request/object/data", "what OPA erased is said");
    let denied = cli("decisions", &["--denied"]);
    assert_eq!(denied.as_array().map(Vec::len), Some(1), "{denied}");
    let minutes = cli("stats", &[]);
    let minute = &minutes["2026-11-30T17:01"];
    assert_eq!(
        (minute["total"].as_u64(), minute["allowed"].as_u64(), minute["denied"].as_u64()),
        (Some(2), Some(1), Some(1))
    );

    stranger_check(&base, &active);
    server.abort();
}

fn stranger_check(base: &str, active: &str) {
    let stranger = active.replace("local/acme-payments/payments-cluster", "local/acme-payments/nope");
    assert_eq!(post(&format!("{base}/status"), stranger.as_bytes(), false), 403);
}

/// OPA's long polling, as OPA 1.9 sends it (`Prefer: modes=snapshot,delta;wait=N`): the answer
/// says the server long-polls, a request whose tag is current waits and gets the new bundle as
/// soon as an edit is published (not a 304), and without a change it gets a 304 before its wait
/// ends. Without `Prefer`, a current tag gets a 304 at once, as before.
#[test]
fn a_waiting_opa_gets_the_new_bundle_as_soon_as_it_is_published() {
    let Running { work: _work, manifests, base, rt: _rt, server } = Running::start();
    let url = format!("{base}/{BUNDLE}");
    wait_for("the first bundle", || get(&url, None).filter(|r| r.status == 200));

    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let long_poll = move |url: &str, tag: Option<&str>, wait: u64| {
        let mut req = agent.get(url).header("Prefer", format!("modes=snapshot,delta;wait={wait}"));
        if let Some(tag) = tag {
            req = req.header("If-None-Match", tag);
        }
        let resp = req.call().expect("request");
        let header = |h: &str| resp.headers().get(h).and_then(|v| v.to_str().ok()).map(String::from);
        (resp.status().as_u16(), header("etag"), header("content-type"))
    };
    let (status, tag, kind) = long_poll(&url, None, 10);
    assert_eq!(status, 200);
    assert_eq!(kind.as_deref(), Some("application/vnd.openpolicyagent.bundles"), "says it long-polls");
    let tag = tag.expect("ETag");

    // Nothing changes: a 304 once the wait (1 s) is nearly over, not at once and not after it.
    let t = Instant::now();
    let (status, _, _) = long_poll(&url, Some(&tag), 1);
    assert_eq!(status, 304);
    assert!(t.elapsed() >= Duration::from_millis(400), "it waited: {:?}", t.elapsed());

    // A request waiting up to 20 s gets the edit's bundle: a 200 with a new tag, not a 304.
    let waiting = {
        let (url, tag) = (url.clone(), tag.clone());
        std::thread::spawn(move || long_poll(&url, Some(&tag), 20))
    };
    std::thread::sleep(Duration::from_millis(300));
    edit(&manifests.join("systems.yaml"), "must not be privileged", "must never be privileged");
    let (status, new_tag, _) = waiting.join().expect("waiting client");
    assert_eq!(status, 200, "woken by the publish");
    assert_ne!(new_tag.as_deref(), Some(tag.as_str()));

    let plain = get(&url, new_tag.as_deref()).expect("plain poll");
    assert_eq!(plain.status, 304, "no Prefer: no wait");
    server.abort();
}

/// The embedded store's commit log stays bounded: its objects, like its index entries, keep
/// only the newest (here 3, for the test), so a long-running `run --local` does not grow forever.
#[test]
fn the_embedded_commit_log_keeps_only_the_newest_objects() {
    let Loaded { work, store_dir, rt } = Loaded::new();
    let registry = edict::registry::Registry::embedded(&store_dir).keeping_commit_objects(3);
    let mut local = edict::sources::local::Local::load(work.path(), &store_dir, "local").expect("load");
    let all: Vec<_> = local.ws.builds.keys().cloned().collect();
    assert_eq!(rt.block_on(local.publish(&registry, &all)), (3, 0));
    let systems = work.path().join("systems.yaml");
    for (from, to) in [
        ("must not be privileged", "must never be privileged"),
        ("must never be privileged", "may not be privileged"),
    ] {
        edit(&systems, from, to);
        let rebuilt = local.reload(std::slice::from_ref(&systems)).expect("reload");
        assert_eq!(rt.block_on(local.publish(&registry, &rebuilt)), (1, 0));
    }
    let objects = std::fs::read_dir(store_dir.join("commits/embedded")).expect("commit objects").count();
    assert_eq!(objects, 3, "5 commits, the newest 3 kept");
}

/// `edict systems` and `edict stacks`: the multi-cluster view of a Tenant, here of what
/// `run --local` published to the embedded store (one query of its index each).
#[tokio::test]
async fn systems_and_stacks_list_what_run_local_published() {
    let work = tempfile::tempdir().expect("tempdir");
    common::copy_examples(work.path());
    let store = work.path().join(".edict/store");
    let registry = edict::registry::Registry::embedded(&store);
    let mut local = edict::sources::local::Local::load(work.path(), &store, "local").expect("load");
    let all: Vec<_> = local.ws.builds.keys().cloned().collect();
    local.publish(&registry, &all).await;
    local.index_stacks(&registry).await;
    let edict = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_edict"))
            .args(args)
            .arg("-f")
            .arg(work.path())
            .output()
            .expect("run edict");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, text, err) = edict(&["systems", "--tenant", "acme", "-o", "json"]);
    assert_eq!(code, Some(0), "{err}");
    let systems: serde_json::Value = serde_json::from_str(&text).expect("json");
    let rows: Vec<(&str, &str, bool, bool, Vec<&str>)> = systems
        .as_array()
        .expect("array")
        .iter()
        .map(|s| {
            let stacks = s["stacks"].as_array().expect("stacks").iter().filter_map(|v| v.as_str()).collect();
            let name = s["name"].as_str().unwrap_or_default();
            (
                s["cluster"].as_str().unwrap_or_default(),
                name,
                s["revision"].is_string(),
                s["published"].is_string(),
                stacks,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("local", "batch-api", true, true, vec![]),
            ("local", "payments-cluster", true, true, vec!["acme-platform/kubernetes-baseline"]),
            ("local", "storefront-envoy", true, true, vec!["acme-platform/edge-network-guard"]),
        ]
    );
    let (code, text, err) = edict(&["stacks", "--tenant", "acme"]);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<Vec<&str>> = text.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        lines,
        [
            ["local", "acme-platform", "edge-network-guard", "envoy", "1"],
            ["local", "acme-platform", "kubernetes-baseline", "kubernetes", "1"],
        ]
    );
    let (code, _, err) = edict(&["systems", "--tenant", "globex"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("no Tenant globex in the manifests"), "{err}");
}
