//! `edict replay`: the decisions a System's OPAs recorded (here as `run --local` stores them,
//! from OPA 1.9's captured batch plus a few more), replayed against proposed manifests: what
//! would be decided differently, grouped by what decides, with a gate for pipelines.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use edict::engine::replay::OUTCOME;
use edict::ingest::{Ingest, Limits, ServedSystems, SystemKey};
use serde_json::{Value, json};

const SYSTEM: &str = "acme-payments/payments-cluster";

fn fixture(name: &str) -> Value {
    let text =
        std::fs::read_to_string(common::root().join("tests/fixtures/opa-wire").join(name)).expect("fixture");
    serde_json::from_str(&text).expect("json")
}

fn input(name: &str) -> Value {
    let text = std::fs::read_to_string(common::root().join("examples/inputs").join(name)).expect("input");
    serde_json::from_str(&text).expect("json")
}

/// Record, as OPA would have sent them: the captured batch (a denied nginx Pod; an allowed
/// Secret whose data OPA erased), the same superuser Pod twice (allowed), and a Pod running the
/// allowed Envoy proxy (allowed).
async fn record(store: &Path) {
    let mut events = fixture("decision-logs-batch.json").as_array().expect("batch").clone();
    let labels = events[0]["labels"].clone();
    let allowed = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {"allowed": true}});
    let envoy_pod = serde_json::to_string(&input("pod-with-nginx.json"))
        .expect("json")
        .replace("nginx:1.27", "envoyproxy/envoy");
    for (id, input) in [
        ("superuser-1", input("pod-by-superuser.json")),
        ("superuser-2", input("pod-by-superuser.json")),
        ("envoy-pod", serde_json::from_str(&envoy_pod).expect("json")),
    ] {
        events.push(json!({"labels": labels, "decision_id": id, "path": "main/main", "input": input,
            "result": allowed, "timestamp": "2026-11-30T17:05:00Z"}));
    }
    let ingest = Ingest::new(
        edict::ingest::Sink::of(&edict::registry::Registry::embedded(store)),
        ServedSystems::new([SystemKey::new("acme", "local", "acme-payments", "payments-cluster")]),
        Limits::default(),
        Duration::from_secs(600),
    );
    let body = serde_json::to_vec(&events).expect("json");
    let stored = ingest.store_decisions(&body, None, None).await.expect("stored");
    assert_eq!(stored.events, 5);
}

fn replay(dir: &Path, extra: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_edict"))
        .args(["replay", "-f"])
        .arg(dir)
        .args(["--system", SYSTEM, "--since", "3650d"])
        .args(extra)
        .output()
        .expect("run edict replay");
    assert!(out.status.code().is_some_and(|c| c <= 1), "{}", String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

fn json_report(dir: &Path) -> Value {
    let (_, text) = replay(dir, &["-o", "json"]);
    serde_json::from_str::<Value>(&text).expect("json")[0].clone()
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).expect("read");
    assert!(text.contains(from), "{from:?} not in {}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).expect("write");
}

#[tokio::test]
async fn a_proposed_change_is_replayed_against_what_the_opas_decided() {
    let work = tempfile::tempdir().expect("tempdir");
    common::copy_examples(work.path());
    record(&work.path().join(".edict/store")).await;
    let systems = work.path().join("systems.yaml");

    // Unchanged manifests: every decision is decided again as it was; identical inputs once.
    let same = json_report(work.path());
    assert_eq!(same["replayed"], 5, "{same}");
    assert_eq!(same["distinct_inputs"], 4, "the superuser Pod twice is evaluated once: {same}");
    assert_eq!((same["unchanged"].as_u64(), same["errors"].as_u64()), (Some(5), Some(0)), "{same}");
    assert_eq!(replay(work.path(), &["--fail-on", "any"]).0, 0);

    // The System now allows the nginx proxy: the denied Pod would be allowed.
    edit(&systems, r#"allowed: ["envoyproxy/envoy"]"#, r#"allowed: ["envoyproxy/envoy", "nginx"]"#);
    let allowing = json_report(work.path());
    assert_eq!(
        (allowing["newly_allowed"].as_u64(), allowing["newly_denied"].as_u64()),
        (Some(1), Some(0)),
        "{allowing}"
    );
    assert_eq!(allowing["groups"][0]["change"], "newly allowed");
    assert!(
        allowing["groups"][0]["examples"][0].as_str().is_some_and(|e| e.contains("a906e53c")),
        "{allowing}"
    );
    assert_eq!(replay(work.path(), &["--fail-on", "newly-denied"]).0, 0, "nothing newly denied");
    assert_eq!(replay(work.path(), &["--fail-on", "any"]).0, 1, "but something changed");

    // No proxy allowed at all: the Envoy Pod would be denied, and the Stack says why.
    edit(&systems, r#"allowed: ["envoyproxy/envoy", "nginx"]"#, "allowed: []");
    let denying = json_report(work.path());
    assert_eq!(denying["newly_denied"], 1, "{denying}");
    let group = denying["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g["change"] == "newly denied")
        .expect("group")
        .clone();
    assert_eq!(group["decided_by"], json!(["stack/acme-platform/kubernetes-baseline"]), "{group}");
    assert!(group["messages"][0].as_str().is_some_and(|m| m.contains("envoyproxy/envoy")), "{group}");
    // The rule that says so: the Stack's restrict-proxies Policy, its `deny` on line 10.
    assert_eq!(
        group["rules"],
        json!(["deny at stacks/kubernetes_baseline/proxies/restrict-proxies.rego:10"]),
        "{group}"
    );
    let (code, markdown) = replay(work.path(), &["--fail-on", "newly-denied", "-o", "markdown"]);
    assert_eq!(code, 1, "the gate fails the pipeline");
    assert!(markdown.contains(&format!("| `{SYSTEM}` | 5 |")), "{markdown}");

    // A rule that reads what the masks erased: the Secret decision is not replayable, not guessed.
    edit(&systems, "allowed: []", r#"allowed: ["envoyproxy/envoy"]"#);
    let privileged = "    deny contains sprintf(\"container %q must not be privileged\", [c.name]) if {";
    edit(
        &systems,
        privileged,
        &format!(
            "    deny contains \"no Secrets with data\" if {{\n    \tcount(input.request.object.data) > 0\n    }}\n\n{privileged}"
        ),
    );
    let masked = json_report(work.path());
    assert_eq!((masked["masked"].as_u64(), masked["newly_denied"].as_u64()), (Some(1), Some(0)), "{masked}");
    let group = &masked["groups"][0];
    assert!(
        group["change"]
            .as_str()
            .is_some_and(|c| c.starts_with("cannot replay: input masked at /input/request/object/data")),
        "{group}"
    );

    // A rule that reads only what the masks kept replays the masked decision as usual: the
    // erased data cannot change what it decides, so the Secret is newly denied, not unknown.
    edit(&systems, "count(input.request.object.data) > 0", "input.request.kind.kind == \"Secret\"");
    let kept = json_report(work.path());
    assert_eq!((kept["masked"].as_u64(), kept["newly_denied"].as_u64()), (Some(0), Some(1)), "{kept}");
    assert_eq!(kept["groups"][0]["messages"][0], "no Secrets with data", "{kept}");
    // The System's no-privileged Policy decides; its `deny` is defined on lines 3 and 7 now.
    assert_eq!(
        kept["groups"][0]["rules"],
        json!(["deny at admission_control/pods/no-privileged.rego:3,7"]),
        "{kept}"
    );
    assert!(
        masked["groups"][0]["rules"].as_array().is_some_and(Vec::is_empty),
        "not replayed, not attributed"
    );
}

/// `--baseline live`: the proposed bundle is compared with what the live bundle decides for the
/// same inputs, so a decision recorded before data or time changed (here an Envoy Pod recorded
/// as denied, which the live bundle allows) counts as drift, not as a flip of the change.
#[tokio::test]
async fn the_live_baseline_tells_drift_from_the_change() {
    let work = tempfile::tempdir().expect("tempdir");
    common::copy_examples(work.path());
    let store = work.path().join(".edict/store");
    record(&store).await;
    // What the OPAs of an older revision decided: the Envoy Pod denied.
    let denied = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {"allowed": false}});
    let envoy_pod = serde_json::to_string(&input("pod-with-nginx.json"))
        .expect("json")
        .replace("nginx:1.27", "envoyproxy/envoy");
    let labels = fixture("decision-logs-batch.json")[0]["labels"].clone();
    let older = json!([{"labels": labels, "decision_id": "envoy-pod-then", "path": "main/main",
        "input": serde_json::from_str::<Value>(&envoy_pod).expect("json"), "result": denied, "timestamp": "2026-11-30T16:00:00Z"}]);
    let ingest = Ingest::new(
        edict::ingest::Sink::of(&edict::registry::Registry::embedded(&store)),
        ServedSystems::new([SystemKey::new("acme", "local", "acme-payments", "payments-cluster")]),
        Limits::default(),
        Duration::from_secs(600),
    );
    ingest.store_decisions(&serde_json::to_vec(&older).expect("json"), None, None).await.expect("stored");
    // The examples are live, as `run --local` publishes them.
    let registry = edict::registry::Registry::embedded(&store);
    let mut local = edict::sources::local::Local::load(work.path(), &store, "local").expect("load");
    let all: Vec<_> = local.ws.builds.keys().cloned().collect();
    local.publish(&registry, &all).await;

    let (_, text) = replay(work.path(), &["-o", "json"]);
    let recorded: Value = serde_json::from_str::<Value>(&text).expect("json")[0].clone();
    assert_eq!(recorded["baseline"], "recorded");
    assert_eq!(
        recorded["newly_allowed"], 1,
        "against the record, the old denial looks like a flip: {recorded}"
    );

    let (_, text) = replay(work.path(), &["-o", "json", "--baseline", "live"]);
    let live: Value = serde_json::from_str::<Value>(&text).expect("json")[0].clone();
    assert!(live["baseline"].as_str().is_some_and(|b| b.starts_with("live ")), "{live}");
    assert_eq!((live["drift"].as_u64(), live["newly_allowed"].as_u64()), (Some(1), Some(0)), "{live}");
    assert_eq!(live["unchanged"], 6, "{live}");
}

/// A replay split over machines: `--shard i/n` replays every n-th stored object, each once, and
/// `--merge` adds the shards' JSON reports up to what one replay says.
#[tokio::test]
async fn shards_replay_each_stored_object_once_and_merge_to_the_whole() {
    let work = tempfile::tempdir().expect("tempdir");
    common::copy_examples(work.path());
    let store = work.path().join(".edict/store");
    record(&store).await;
    // An hour earlier: a second stored object.
    let labels = fixture("decision-logs-batch.json")[0]["labels"].clone();
    let earlier = json!([{"labels": labels, "decision_id": "earlier", "path": "main/main",
        "input": input("pod-by-superuser.json"), "timestamp": "2026-11-30T16:00:00Z",
        "result": {"response": {"allowed": true}}}]);
    let ingest = Ingest::new(
        edict::ingest::Sink::of(&edict::registry::Registry::embedded(&store)),
        ServedSystems::new([SystemKey::new("acme", "local", "acme-payments", "payments-cluster")]),
        Limits::default(),
        Duration::from_secs(600),
    );
    ingest.store_decisions(&serde_json::to_vec(&earlier).expect("json"), None, None).await.expect("stored");

    let whole = json_report(work.path());
    assert_eq!(whole["replayed"], 6, "{whole}");
    let mut files = Vec::new();
    for i in 0..2 {
        let (_, text) = replay(work.path(), &["-o", "json", "--shard", &format!("{i}/2")]);
        let shard: Value = serde_json::from_str::<Value>(&text).expect("json")[0].clone();
        assert!(
            shard["replayed"].as_u64().is_some_and(|n| (1..6).contains(&n)),
            "each shard has part: {shard}"
        );
        let path = work.path().join(format!("shard-{i}.json"));
        std::fs::write(&path, text).expect("write");
        files.push(path);
    }
    let out = Command::new(env!("CARGO_BIN_EXE_edict"))
        .args(["replay", "-o", "json", "--merge"])
        .args(&files)
        .output()
        .expect("merge");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let merged: Value = serde_json::from_slice::<Value>(&out.stdout).expect("json")[0].clone();
    for field in ["replayed", "unchanged", "newly_denied", "newly_allowed", "masked", "errors"] {
        assert_eq!(merged[field], whole[field], "{field}: {merged} vs {whole}");
    }
    let bad = Command::new(env!("CARGO_BIN_EXE_edict"))
        .args(["replay", "-f"])
        .arg(work.path())
        .args(["--system", SYSTEM, "--shard", "2/2"])
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("expected I/N with 0 <= I < N"), "{bad:?}");
}

/// What OPA's own engine (v1.20.2, `scripts/opa_bundle.py`) says `data.main.outcome` is for
/// each input, with the bundle as published.
fn opa_outcomes(archive: &[u8], inputs: &[Value]) -> Vec<Value> {
    let dir = tempfile::tempdir().expect("tempdir");
    let (bundle, cases) = (dir.path().join("bundle.tar.gz"), dir.path().join("cases.json"));
    std::fs::write(&bundle, archive).expect("write bundle");
    std::fs::write(&cases, json!({"queries": ["data.main.outcome"], "inputs": inputs}).to_string())
        .expect("cases");
    let out = Command::new(common::python())
        .arg(common::root().join("scripts/opa_bundle.py"))
        .arg(&bundle)
        .arg(&cases)
        .output()
        .expect("run opa_bundle.py");
    assert!(out.status.success(), "OPA refused the bundle: {}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    report["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            assert!(r["error"].is_null(), "OPA: {r}");
            r["result"].clone()
        })
        .collect()
}

/// The replay evaluates with regorus (`edict eval`'s engine). For every recorded input and
/// every proposed change of the test above, OPA's own engine decides the same outcome: the
/// same allowed, tier, deciding sources and messages.
#[tokio::test]
async fn regorus_and_opa_decide_every_recorded_input_alike_for_each_change() {
    let work = tempfile::tempdir().expect("tempdir");
    common::copy_examples(work.path());
    let store = work.path().join(".edict/store");
    record(&store).await;
    let sink = edict::ingest::Sink::of(&edict::registry::Registry::embedded(&store));
    let system = SystemKey::new("acme", "local", "acme-payments", "payments-cluster");
    let events = edict::ingest::query::events(&sink, &system, None).await.expect("recorded");
    let inputs: Vec<Value> = events.iter().map(|e| e["input"].clone()).collect();
    assert_eq!(inputs.len(), 5);
    let systems = work.path().join("systems.yaml");
    let changes: [(&str, &str); 4] = [
        ("", ""),
        (r#"allowed: ["envoyproxy/envoy"]"#, r#"allowed: ["envoyproxy/envoy", "nginx"]"#),
        (r#"allowed: ["envoyproxy/envoy", "nginx"]"#, "allowed: []"),
        (
            "    deny contains sprintf(\"container %q must not be privileged\", [c.name]) if {",
            "    deny contains \"no Secrets with data\" if {\n    \tinput.request.kind.kind == \"Secret\"\n    }\n\n    deny contains sprintf(\"container %q must not be privileged\", [c.name]) if {",
        ),
    ];
    let key = edict::model::ObjectKey::new("acme-payments", "payments-cluster");
    let mut allowed_seen = std::collections::BTreeSet::new();
    for (from, to) in changes {
        if !from.is_empty() {
            edit(&systems, from, to);
        }
        let ws =
            edict::engine::workspace::Workspace::load(&[work.path().to_path_buf()], "local").expect("load");
        let bundle = ws.builds[&key].bundle.as_ref().expect("builds");
        let compiled = edict::policy::rego::compile(
            &bundle.modules(),
            &bundle.data(),
            edict::engine::pipeline::ENTRYPOINT,
        )
        .expect("compiles");
        let ours: Vec<Value> =
            inputs.iter().map(|i| compiled.eval(OUTCOME, i).expect("eval").expect("defined")).collect();
        let theirs = opa_outcomes(&bundle.archive(), &inputs);
        assert_eq!(ours, theirs, "after {to:?}");
        // Replay evaluates in regorus's VM: it decides every input as the interpreter and OPA do.
        let vm = compiled.with_vm(OUTCOME);
        assert!(vm.runs_in_vm(OUTCOME), "the VM compiles the bundle after {to:?}");
        let in_vm: Vec<Value> =
            inputs.iter().map(|i| vm.eval(OUTCOME, i).expect("eval").expect("defined")).collect();
        assert_eq!(in_vm, theirs, "in the VM, after {to:?}");
        assert_eq!(vm.vm_fallbacks(), 0, "no input left the VM for the interpreter");
        allowed_seen.extend(ours.iter().map(|o| o["allowed"].to_string()));
    }
    assert_eq!(allowed_seen.len(), 2, "both verdicts occur among the cases");
}
