//! edict's bundles evaluated by OPA's own engine (v1.20.2, through `scripts/opa_bundle.py`)
//! give exactly what regorus gives; OPA's bundle loader accepts their manifest and roots;
//! the generated `system.log` masks are what DESIGN.md §1 "Decision masking" says; and a
//! bundle is a pure function of its input.
//!
//! Needs the venv of `scripts/setup.sh` (see `common::python`). Each OPA run loads one bundle
//! and evaluates every input of that bundle at once (a run costs ~0.15 s).

mod common;

#[path = "data/conformance/precedence_table.rs"]
mod table;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use edict::api::{DefaultDecision, SystemType};
use edict::bundle::{Bundle, BundleInput, PolicyModule, build};
use edict::engine::workspace::Workspace;
use edict::model::ObjectKey;
use edict::policy::rego::{Compiled, compile};
use serde_json::{Value, json};

const QUERIES: [&str; 2] = ["data.main.outcome", "data.main.main"];
const CLUSTER: &str = "local";

// ---------------------------------------------------------------------------------------
// Running both engines.

/// What OPA said about one bundle: its manifest as OPA's loader read it, and one result per
/// (input, query), input by input.
struct OpaRun {
    manifest: Value,
    results: Vec<Value>,
}

fn opa_script() -> PathBuf {
    common::root().join("scripts/opa_bundle.py")
}

fn write_archive(dir: &Path, bundle: &Bundle) -> PathBuf {
    let path = dir.join("bundle.tar.gz");
    std::fs::write(&path, bundle.archive()).expect("write bundle");
    path
}

/// Run `opa_bundle.py` on a bundle with these queries and inputs, whatever OPA says.
fn opa_run(bundle: &Bundle, queries: &[&str], inputs: &[Value]) -> std::process::Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let archive = write_archive(dir.path(), bundle);
    let cases = dir.path().join("cases.json");
    std::fs::write(&cases, json!({"queries": queries, "inputs": inputs}).to_string()).expect("write cases");
    Command::new(common::python()).arg(opa_script()).arg(&archive).arg(&cases).output().expect("run python")
}

/// Evaluate every query for every input in OPA, in one run. OPA must accept the bundle.
fn opa_eval(bundle: &Bundle, queries: &[&str], inputs: &[Value]) -> OpaRun {
    let out = opa_run(bundle, queries, inputs);
    assert!(
        out.status.success(),
        "OPA rejected the bundle of {} (exit {:?}):\n{}",
        bundle.manifest.metadata["system"],
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("opa_bundle.py prints JSON");
    let results = report["results"].as_array().cloned().unwrap_or_default();
    assert_eq!(results.len(), queries.len() * inputs.len(), "one result per input and query");
    let mut values = Vec::new();
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["input_index"], i / queries.len());
        assert_eq!(r["query"], queries[i % queries.len()]);
        assert!(
            r["error"].is_null(),
            "OPA failed on {} for input {}: {}",
            r["query"],
            r["input_index"],
            r["error"]
        );
        values.push(r["result"].clone());
    }
    OpaRun { manifest: report["manifest"].clone(), results: values }
}

/// `data.system.log.mask` in OPA for one decision-log event, in [`mask_order`].
fn opa_mask(bundle: &Bundle, event: &Value) -> Value {
    let dir = tempfile::tempdir().expect("temp dir");
    let archive = write_archive(dir.path(), bundle);
    let event_file = dir.path().join("event.json");
    std::fs::write(&event_file, event.to_string()).expect("write event");
    let out = Command::new(common::python())
        .arg(opa_script())
        .arg(&archive)
        .arg("--mask")
        .arg(&event_file)
        .output()
        .expect("run python");
    assert!(out.status.success(), "OPA rejected the bundle: {}", String::from_utf8_lossy(&out.stderr));
    let masks: Value = serde_json::from_slice(&out.stdout).expect("opa_bundle.py prints JSON");
    mask_order(masks.as_array().cloned().expect("a list of masks"))
}

/// Masks (a set) as a list: pointer strings first, sorted, then object masks.
fn mask_order(mut masks: Vec<Value>) -> Value {
    masks.sort_by_key(|m| match m {
        Value::String(s) => (0, s.clone(), String::new()),
        other => (1, String::new(), other.to_string()),
    });
    Value::Array(masks)
}

fn regorus(bundle: &Bundle, entrypoint: &str) -> Compiled {
    compile(&bundle.modules(), &bundle.data(), entrypoint).unwrap_or_else(|e| panic!("regorus: {e}"))
}

/// A query's value in regorus, `null` when undefined (as opa_bundle.py reports it).
fn regorus_eval(compiled: &Compiled, query: &str, input: &Value) -> Value {
    regorus_try(compiled, query, input).unwrap_or_else(|e| panic!("regorus fails on {query}: {e}"))
}

fn regorus_try(compiled: &Compiled, query: &str, input: &Value) -> Result<Value, String> {
    compiled.eval(query, input).map(|v| v.unwrap_or(Value::Null)).map_err(|e| e.to_string())
}

/// `data.system.log.mask` in regorus, in [`mask_order`].
fn regorus_mask(bundle: &Bundle, event: &Value) -> Value {
    let compiled = regorus(bundle, "data.system.log.mask");
    match regorus_eval(&compiled, "data.system.log.mask", event) {
        Value::Array(a) => mask_order(a),
        Value::Null => json!([]),
        other => panic!("mask is not a set: {other}"),
    }
}

/// Evaluate `inputs` in both engines and list every (input, query) where they differ.
/// No normalisation: the entrypoint turns every set it returns into a sorted array
/// (`sort(...)`) and both engines order values (objects included) alike, so results are
/// compared exactly, order included.
fn differences(bundle: &Bundle, labels: &[String], inputs: &[Value]) -> (OpaRun, Vec<String>) {
    let opa = opa_eval(bundle, &QUERIES, inputs);
    let compiled = regorus(bundle, "data.main.main");
    let mut diffs = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        for (q, query) in QUERIES.iter().enumerate() {
            let theirs = &opa.results[i * QUERIES.len() + q];
            match regorus_try(&compiled, query, input) {
                Ok(ours) if ours == *theirs => {}
                Ok(ours) => {
                    diffs.push(format!("{} / {query}:\n  regorus: {ours}\n  OPA:     {theirs}", labels[i]))
                }
                Err(e) => {
                    diffs.push(format!("{} / {query}:\n  regorus error: {e}\n  OPA: {theirs}", labels[i]))
                }
            }
        }
    }
    (opa, diffs)
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `*.json` file of a directory, by file name.
fn json_files(dir: &Path) -> Vec<(String, Value)> {
    let mut files: Vec<(String, Value)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| (p.file_name().unwrap_or_default().to_string_lossy().into_owned(), read_json(&p)))
        .collect();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files
}

// ---------------------------------------------------------------------------------------
// The acme examples.

fn acme_dir() -> PathBuf {
    common::root().join("examples/acme")
}

fn load(paths: &[PathBuf]) -> Workspace {
    let ws = Workspace::load(paths, CLUSTER).expect("manifests load");
    assert!(ws.problems().is_empty(), "the manifests have problems: {:#?}", ws.problems());
    ws
}

fn acme() -> Workspace {
    load(&[acme_dir()])
}

fn acme_bundle<'a>(ws: &'a Workspace, system: &str) -> (&'a BundleInput, &'a Bundle) {
    let (namespace, name) = system.split_once('/').expect("namespace/name");
    let build = &ws.builds[&ObjectKey::new(namespace, name)];
    let input = build.input.as_ref().unwrap_or_else(|| panic!("{system} did not resolve"));
    let bundle =
        build.bundle.as_ref().unwrap_or_else(|| panic!("{system} has no bundle: {:#?}", build.problems));
    (input, bundle)
}

/// The example inputs and ours, by file name (`examples/inputs/…`, then `tests/data/…`).
fn all_inputs() -> Vec<(String, Value)> {
    let mut inputs = json_files(&common::root().join("examples/inputs"));
    inputs.extend(json_files(&common::root().join("tests/data/conformance/inputs")));
    inputs
}

/// What each example System must decide for the inputs written for its type, so that the
/// conformance run provably covers allow and deny paths of every type. (tier, allowed)
const EXPECTED: &[(&str, &str, u64, bool)] = &[
    // kubernetes: baseline stack (proxy deny, superuser allow max), system no-privileged,
    // default allow.
    ("acme-payments/payments-cluster", "pod-with-nginx.json", 3, false),
    ("acme-payments/payments-cluster", "pod-by-superuser.json", 2, true),
    ("acme-payments/payments-cluster", "pod-by-two-superuser-groups.json", 2, true),
    ("acme-payments/payments-cluster", "pod-many-violations.json", 3, false),
    ("acme-payments/payments-cluster", "pod-privileged.json", 7, false),
    ("acme-payments/payments-cluster", "pod-allowed-proxy.json", 9, true),
    ("acme-payments/payments-cluster", "pod-plain.json", 9, true),
    ("acme-payments/payments-cluster", "secret.json", 9, true),
    ("acme-payments/payments-cluster", "configmap-no-uid.json", 9, true),
    // envoy: edge guard stack (admin from untrusted: deny max), system routes, default deny.
    ("acme-shop/storefront-envoy", "admin-from-internet.json", 1, false),
    ("acme-shop/storefront-envoy", "admin-from-ipv6.json", 1, false),
    ("acme-shop/storefront-envoy", "admin-from-office.json", 8, true),
    ("acme-shop/storefront-envoy", "admin-post-from-office.json", 7, false),
    ("acme-shop/storefront-envoy", "get-storefront.json", 8, true),
    ("acme-shop/storefront-envoy", "post-without-auth.json", 7, false),
    ("acme-shop/storefront-envoy", "post-with-auth.json", 9, false),
    // custom: the System is in monitor mode, default allow: its denials are only reported.
    ("acme-data/batch-api", "big-batch-job.json", 9, true),
    ("acme-data/batch-api", "small-batch-job.json", 9, true),
    ("acme-data/batch-api", "batch-job-at-limit.json", 9, true),
    ("acme-data/batch-api", "empty.json", 9, true),
];

#[test]
fn example_bundles_decide_the_same_in_opa_and_regorus() {
    let ws = acme();
    let inputs = all_inputs();
    let (labels, values): (Vec<String>, Vec<Value>) = inputs.iter().cloned().unzip();
    assert_eq!(ws.builds.len(), 3, "three example systems");
    let mut all_diffs = Vec::new();
    let mut outcomes: BTreeMap<(String, String), Value> = BTreeMap::new();
    let mut compared = 0;
    for key in ws.builds.keys() {
        let system = key.to_string();
        let (input, bundle) = acme_bundle(&ws, &system);
        // Every input goes to every System, except requests without an HTTP part to the
        // Envoy System: there the engines differ (see
        // `known_difference_negated_membership_of_an_undefined_value`).
        let keep: Vec<usize> = (0..values.len())
            .filter(|&i| input.system_type != SystemType::Envoy || has_http(&values[i]))
            .collect();
        let labels: Vec<String> = keep.iter().map(|&i| labels[i].clone()).collect();
        let values: Vec<Value> = keep.iter().map(|&i| values[i].clone()).collect();
        compared += values.len();
        let (opa, diffs) = differences(bundle, &labels, &values);
        // OPA's loader read the manifest we wrote: same revision, roots and metadata.
        assert_eq!(opa.manifest["revision"], bundle.revision(), "{system}");
        assert_eq!(opa.manifest["roots"], json!(bundle.manifest.roots), "{system}");
        assert_eq!(opa.manifest["rego_version"], 1, "{system}");
        assert_eq!(opa.manifest["metadata"], bundle.manifest.metadata, "{system}");
        all_diffs.extend(diffs.into_iter().map(|d| format!("{system}: {d}")));
        for (i, label) in labels.iter().enumerate() {
            outcomes.insert((system.clone(), label.clone()), opa.results[i * QUERIES.len()].clone());
        }
    }
    assert!(all_diffs.is_empty(), "OPA and regorus differ:\n{}", all_diffs.join("\n"));
    assert!(compared >= 40, "only {compared} (system, input) pairs compared");

    for (system, file, tier, allowed) in EXPECTED {
        let outcome = &outcomes[&(system.to_string(), file.to_string())];
        assert_eq!(
            (&outcome["tier"], &outcome["allowed"]),
            (&json!(tier), &json!(allowed)),
            "{system} with {file}: {outcome}"
        );
    }
    // Every file of the input directories was meant for some System.
    for (label, _) in &inputs {
        assert!(EXPECTED.iter().any(|(_, f, _, _)| f == label), "no expectation for {label}");
    }
}

#[test]
fn example_answers_have_the_shape_of_their_type() {
    let ws = acme();
    let inputs: BTreeMap<String, Value> = all_inputs().into_iter().collect();
    let run = |system: &str, files: &[&str]| -> Vec<Value> {
        let (_, bundle) = acme_bundle(&ws, system);
        let values: Vec<Value> = files.iter().map(|f| inputs[*f].clone()).collect();
        let opa = opa_eval(bundle, &["data.main.main"], &values);
        opa.results
    };

    let k8s = run("acme-payments/payments-cluster", &["pod-with-nginx.json", "pod-by-superuser.json"]);
    assert_eq!(
        k8s[0]["response"],
        json!({
            "uid": "3a1c-pod-nginx",
            "allowed": false,
            "status": {
                "code": 403,
                "reason": "Forbidden",
                "message": "container \"proxy\" runs proxy \"nginx\", which this system's features do not allow",
            },
        })
    );
    assert_eq!(k8s[1]["response"], json!({"uid": "7f2e-superuser", "allowed": true}));

    let envoy = run("acme-shop/storefront-envoy", &["admin-from-internet.json", "get-storefront.json"]);
    assert_eq!(
        envoy[0],
        json!({
            "allowed": false,
            "headers": {"x-edict-tier": "1"},
            "http_status": 403,
            "body": "admin path from untrusted network 203.0.113.9",
        })
    );
    assert_eq!(
        envoy[1],
        json!({"allowed": true, "headers": {"x-edict-tier": "8"}, "http_status": 200, "body": ""})
    );

    let custom = run("acme-data/batch-api", &["big-batch-job.json"]);
    assert_eq!(custom[0]["allowed"], true);
    assert_eq!(custom[0]["tier"], 9);
    assert_eq!(
        custom[0]["monitored"],
        json!([{
            "source": "system",
            "name": "acme-data/batch-api",
            "allowed": false,
            "message": "ana asked for 80 workers; the limit is 50",
            "priority_maximum": false,
        }])
    );
}

fn has_http(input: &Value) -> bool {
    input.pointer("/attributes/request/http").is_some()
}

// Inputs on which the engines differ, for reasons outside edict: in how the example
// policies' Rego evaluates, not in the generated entrypoint. Pinned so that a change on
// either side is noticed.

/// `not http.method in {...}` with `http` undefined: regorus takes `not <undefined>` as true,
/// so the storefront's "writes need a signed-in user" deny fires (tier 7). OPA's compiler
/// hoists the operands of a negated call out of the `not` (open-policy-agent/opa#1877,
/// #4743), so the body is undefined and nothing decides (tier 9). Both deny; they disagree
/// on why.
#[test]
fn known_difference_negated_membership_of_an_undefined_value() {
    let ws = acme();
    let (_, bundle) = acme_bundle(&ws, "acme-shop/storefront-envoy");
    let inputs = [json!({}), read_json(&common::root().join("examples/inputs/pod-with-nginx.json"))];
    let opa = opa_eval(bundle, &["data.main.outcome"], &inputs);
    let compiled = regorus(bundle, "data.main.main");
    for (i, input) in inputs.iter().enumerate() {
        let ours = regorus_eval(&compiled, "data.main.outcome", input);
        let theirs = &opa.results[i];
        assert_eq!((&ours["tier"], &ours["allowed"]), (&json!(7), &json!(false)), "regorus: {ours}");
        assert_eq!(ours["messages"], json!(["writes need a signed-in user"]));
        assert_eq!((&theirs["tier"], &theirs["allowed"]), (&json!(9), &json!(false)), "OPA: {theirs}");
        assert_eq!(theirs["enforced"], json!([]));
    }
}

/// `sprintf("%d", [input.workers])` in the batch-api example policy (System in monitor mode)
/// with a non-integer and with a string.
#[test]
fn known_difference_sprintf_d_with_a_non_integer_or_a_string() {
    let ws = acme();
    let (_, bundle) = acme_bundle(&ws, "acme-data/batch-api");
    let dir = common::root().join("tests/data/conformance/known-differences");
    let float = read_json(&dir.join("batch-job-float-workers.json"));
    let string = read_json(&dir.join("batch-job-string-workers.json"));
    let opa = opa_eval(bundle, &["data.main.outcome"], &[float.clone(), string.clone()]);
    let compiled = regorus(bundle, "data.main.main");
    let message = |outcome: &Value| outcome["monitored"][0]["message"].clone();

    // `%d` with a non-integer number: OPA formats it as Go does ("%!d(float64=50.5)"),
    // regorus fails the whole evaluation.
    assert_eq!(message(&opa.results[0]), "cy asked for %!d(float64=50.5) workers; the limit is 50");
    let err = regorus_try(&compiled, "data.main.outcome", &float).expect_err("regorus fails");
    assert!(err.contains("number specified for format verb d"), "{err}");

    // `%d` with a string ("80" > 50 holds: strings sort after numbers): OPA writes
    // "%!d(string=80)", regorus an empty string.
    assert_eq!(message(&opa.results[1]), "dee asked for %!d(string=80) workers; the limit is 50");
    let ours = regorus_eval(&compiled, "data.main.outcome", &string);
    assert_eq!(message(&ours), "dee asked for  workers; the limit is 50");

    // Apart from those messages, the decisions agree.
    let mut theirs = opa.results[1].clone();
    theirs["monitored"][0]["message"] = message(&ours);
    assert_eq!(ours, theirs);
}

// ---------------------------------------------------------------------------------------
// The precedence table in OPA.

#[test]
fn precedence_table_decides_the_same_in_opa() {
    let mut failures = Vec::new();
    for fixture in table::FIXTURES {
        let bundle = build(&table::bundle_input(fixture));
        let cases: Vec<(usize, &table::Case)> =
            table::CASES.iter().enumerate().filter(|(_, c)| c.fixture == fixture.name).collect();
        let labels: Vec<String> = cases.iter().map(|(i, c)| format!("case {i} `{}`", c.name)).collect();
        let inputs: Vec<Value> = cases.iter().map(|(i, c)| table::case_input(*i, c)).collect();
        let (opa, diffs) = differences(&bundle, &labels, &inputs);
        failures.extend(diffs.into_iter().map(|d| format!("fixture {}: {d}", fixture.name)));
        for (n, (i, case)) in cases.iter().enumerate() {
            let outcome = &opa.results[n * QUERIES.len()];
            if let Err(why) = table::check(case, outcome) {
                failures.push(format!("OPA, case {i} `{}`:\n  {why}", case.name));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_system_without_policies_or_stacks_falls_to_its_default_in_both_engines() {
    for default in [DefaultDecision::Allow, DefaultDecision::Deny] {
        let mut input = table::bundle_input(table::fixture("custom"));
        input.policies.clear();
        input.stacks.clear();
        input.default_decision = default;
        let bundle = build(&input);
        let (opa, diffs) = differences(&bundle, &["{}".to_string()], &[json!({})]);
        assert!(diffs.is_empty(), "{}", diffs.join("\n"));
        assert_eq!(opa.results[0]["tier"], 9);
        assert_eq!(opa.results[0]["allowed"], default.allowed());
    }
}

/// Load every bundle a workspace built into OPA's engine (`opa_eval` fails the test when OPA
/// refuses one) and evaluate `data.main.outcome` once. The Systems whose bundle OPA loaded.
fn load_every_bundle_into_opa(ws: &Workspace) -> Vec<String> {
    let mut loaded = Vec::new();
    for (key, build) in &ws.builds {
        if let Some(bundle) = &build.bundle {
            let opa = opa_eval(bundle, &["data.main.outcome"], &[json!({})]);
            assert!(opa.results[0]["tier"].is_u64(), "{key}: no outcome in OPA: {}", opa.results[0]);
            loaded.push(key.to_string());
        }
    }
    loaded
}

/// Whatever edict builds, OPA must load: every bundle edict builds from the examples (every
/// System) is loaded into OPA's engine, and OPA must accept each.
///
/// A Policy whose `deny` is a boolean rule (`deny if ...`, common in hand-written Rego) is
/// refused by edict (the decision rules must be partial sets), so its System gets no bundle
/// while the other Systems still build; and OPA refuses that System's bundle as well
/// (`rego_type_error: undefined ref: data.batch.boolean.deny[__local0__]`, have: boolean).
#[test]
fn every_bundle_edict_builds_is_accepted_by_opa() {
    let ws = acme();
    let loaded = load_every_bundle_into_opa(&ws);
    assert!(!loaded.is_empty(), "edict built no bundle from the examples: nothing was checked");
    let systems: Vec<String> = ws.builds.keys().map(|k| k.to_string()).collect();
    assert_eq!(loaded, systems, "every example System builds");

    let dir = tempfile::tempdir().expect("temp dir");
    for (n, doc) in example_documents().iter().enumerate() {
        std::fs::write(dir.path().join(format!("{n:02}.yaml")), doc).expect("write");
    }
    let policy = r#"apiVersion: edict.dev/v1alpha1
kind: Policy
metadata:
  name: boolean-deny
  namespace: acme-data
spec:
  target: {kind: System, name: batch-api}
  rego: |
    package batch.boolean

    deny if input.workers > 100
"#;
    std::fs::write(dir.path().join("boolean-deny.yaml"), policy).expect("write");
    let ws = Workspace::load(&[dir.path().to_path_buf()], CLUSTER).expect("manifests load");
    let batch = &ws.builds[&ObjectKey::new("acme-data", "batch-api")];
    assert!(batch.bundle.is_none(), "edict built the bundle with a boolean deny rule");
    assert!(
        batch.problems.iter().any(|p| p.object.kind == "Policy" && p.object.name == "boolean-deny"),
        "the refusal names the Policy: {:#?}",
        batch.problems
    );
    let loaded = load_every_bundle_into_opa(&ws);
    let others: Vec<String> =
        systems.iter().filter(|s| s.as_str() != "acme-data/batch-api").cloned().collect();
    assert_eq!(loaded, others, "the other Systems still build");

    // OPA refuses that bundle too. edict leaves a refused Policy out of its System's input, so
    // put it back, build, and hand the bundle to OPA: the entrypoint iterates the `deny` set,
    // and OPA's type checker knows this `deny` is a boolean.
    let mut input = batch.input.clone().expect("batch-api resolves");
    assert!(input.policies.iter().all(|p| p.name != "boolean-deny"), "the refused Policy is left out");
    input.policies.push(PolicyModule {
        name: "boolean-deny".into(),
        package: ["batch", "boolean"].map(String::from).to_vec(),
        rego: "package batch.boolean\n\ndeny if input.workers > 100\n".into(),
    });
    let out = opa_run(&build(&input), &["data.main.outcome"], &[json!({})]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "OPA must refuse the bundle with the boolean deny: {stderr}");
    assert!(
        stderr.contains("rego_type_error: undefined ref: data.batch.boolean.deny")
            && stderr.contains("have: boolean"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------------
// Decision-log masks. In OPA's mask rules `input` is the whole decision event, so the
// admission review is at `input.input`.

fn event(ws: &Workspace, system: &str, review: &Value) -> Value {
    let (_, bundle) = acme_bundle(ws, system);
    let result = regorus_eval(&regorus(bundle, "data.main.main"), "data.main.main", review);
    json!({"input": review, "result": result, "decision_id": "d-1", "path": "main/main"})
}

const DEFAULT_MASKS: [&str; 4] = [
    "/input/request/object/data",
    "/input/request/oldObject/data",
    "/input/request/object/metadata/annotations",
    "/input/request/oldObject/metadata/annotations",
];
const STACK_MASKS: [&str; 2] = ["/input/request/object/stringData", "/input/request/oldObject/stringData"];

fn sorted(pointers: &[&str]) -> Value {
    let mut v: Vec<&str> = pointers.to_vec();
    v.sort();
    json!(v)
}

#[test]
fn secret_events_get_the_default_and_stack_masks() {
    let ws = acme();
    let system = "acme-payments/payments-cluster";
    let (_, bundle) = acme_bundle(&ws, system);
    let secret = event(&ws, system, &read_json(&common::root().join("examples/inputs/secret.json")));
    let want = sorted(&[&DEFAULT_MASKS[..], &STACK_MASKS[..]].concat());
    assert_eq!(opa_mask(bundle, &secret), want);
    assert_eq!(regorus_mask(bundle, &secret), want);
}

#[test]
fn pod_events_get_no_secret_masks() {
    let ws = acme();
    let system = "acme-payments/payments-cluster";
    let (_, bundle) = acme_bundle(&ws, system);
    let pod = event(&ws, system, &read_json(&common::root().join("examples/inputs/pod-with-nginx.json")));
    assert_eq!(opa_mask(bundle, &pod), json!([]));
    assert_eq!(regorus_mask(bundle, &pod), json!([]));
}

#[test]
fn stacks_without_default_masks_get_only_their_own() {
    // The example manifests, with `defaultMasks: false` on the kubernetes-baseline Stack.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut edited = 0;
    for (n, doc) in example_documents().iter().enumerate() {
        let doc = if doc.contains("name: kubernetes-baseline\n") && doc.contains("kind: Stack\n") {
            edited += 1;
            doc.replace("  type: kubernetes\n", "  type: kubernetes\n  defaultMasks: false\n")
        } else {
            doc.clone()
        };
        std::fs::write(dir.path().join(format!("{n:02}.yaml")), doc).expect("write");
    }
    assert_eq!(edited, 1);
    let ws = load(&[dir.path().to_path_buf()]);
    let system = "acme-payments/payments-cluster";
    let (input, bundle) = acme_bundle(&ws, system);
    assert!(input.stacks.iter().all(|s| !s.default_masks), "defaultMasks: false reaches the bundle");
    let secret = event(&ws, system, &read_json(&common::root().join("examples/inputs/secret.json")));
    assert_eq!(opa_mask(bundle, &secret), sorted(&STACK_MASKS));
    assert_eq!(regorus_mask(bundle, &secret), sorted(&STACK_MASKS));
}

#[test]
fn mask_union_keeps_object_masks_and_drops_pointers_outside_the_allowed_roots() {
    // The pipeline rejects such Policies; the generated union filters them all the same.
    let mut input = table::bundle_input(table::fixture("envoy"));
    input.stacks[0].policies.push(PolicyModule {
        name: "log".into(),
        package: ["stacks", "base", "system", "log"].map(String::from).to_vec(),
        rego: r#"package stacks.base.system.log

mask contains "/input/attributes/request/http/headers/authorization"

mask contains "/data/secret"

mask contains "/inputs/x"

mask contains {"op": "upsert", "path": "/result/body", "value": "**REDACTED**"}
"#
        .into(),
    });
    input.policies.push(PolicyModule {
        name: "log".into(),
        package: ["envoy", "system", "log"].map(String::from).to_vec(),
        rego: "package envoy.system.log\n\nmask contains \"/nd_builtin_cache\"\n".into(),
    });
    let bundle = build(&input);
    let ev = json!({"input": {"request": {"kind": {"kind": "Secret"}}}, "result": {}});
    // Envoy systems get no default Secret masks, even for an event that looks like a Secret.
    let want = json!([
        "/input/attributes/request/http/headers/authorization",
        "/nd_builtin_cache",
        {"op": "upsert", "path": "/result/body", "value": "**REDACTED**"},
    ]);
    assert_eq!(opa_mask(&bundle, &ev), want);
    assert_eq!(regorus_mask(&bundle, &ev), want);
}

// ---------------------------------------------------------------------------------------
// Determinism.

#[test]
fn building_twice_gives_byte_identical_archives() {
    let ws = acme();
    for build_result in ws.builds.values() {
        let input = build_result.input.as_ref().expect("resolved");
        let bundle = build_result.bundle.as_ref().expect("built");
        let (a, b) = (build(input), build(input));
        assert_eq!(a.archive(), b.archive(), "{}", build_result.key);
        assert_eq!(a.archive(), bundle.archive(), "{}", build_result.key);
        assert_eq!(a.revision(), bundle.revision(), "{}", build_result.key);
    }
    for fixture in table::FIXTURES {
        let input = table::bundle_input(fixture);
        assert_eq!(build(&input).archive(), build(&input).archive(), "fixture {}", fixture.name);
    }
}

/// The YAML documents of the example manifests, in file order.
fn example_documents() -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(acme_dir())
        .expect("examples/acme")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read manifest");
        let mut doc = String::new();
        for line in text.lines() {
            if line.trim_end() == "---" {
                docs.push(std::mem::take(&mut doc));
            } else {
                doc.push_str(line);
                doc.push('\n');
            }
        }
        docs.push(doc);
    }
    docs.retain(|d| d.lines().any(|l| l.starts_with("kind:")));
    docs
}

#[test]
fn revisions_do_not_depend_on_file_layout_or_document_order() {
    let original = common::archives(&acme());
    let docs = example_documents();
    assert_eq!(docs.len(), 13, "the examples have 13 documents");

    // All documents in one file, in reverse order.
    let reversed = tempfile::tempdir().expect("temp dir");
    let mut rev = docs.clone();
    rev.reverse();
    std::fs::write(reversed.path().join("all.yaml"), rev.join("---\n")).expect("write");

    // One document per file; the file names sort in an order unrelated to the original
    // (the n-th document goes to a file named by a scrambled index).
    let split = tempfile::tempdir().expect("temp dir");
    for (n, doc) in docs.iter().enumerate() {
        let scrambled = (n * 7 + 5) % 13;
        std::fs::write(split.path().join(format!("{scrambled:02}-doc.yaml")), doc).expect("write");
    }

    for dir in [reversed.path(), split.path()] {
        let got = common::archives(&load(&[dir.to_path_buf()]));
        assert_eq!(got.keys().collect::<Vec<_>>(), original.keys().collect::<Vec<_>>());
        for (system, (revision, archive)) in &original {
            assert_eq!(&got[system].0, revision, "revision of {system} from {}", dir.display());
            assert!(got[system].1 == *archive, "archive of {system} from {} differs", dir.display());
        }
    }
}

/// A decision whose `allowed` cannot mean what it says (only known at run time) fails closed
/// and is listed in `outcome.invalid` with its source, in OPA and in regorus alike.
#[test]
fn invalid_decisions_fail_closed_and_are_listed_in_both_engines() {
    let mut input = table::bundle_input(table::fixture("custom"));
    input.stacks.clear();
    input.default_decision = DefaultDecision::Allow;
    input.policies = vec![PolicyModule {
        name: "flags".to_string(),
        package: vec!["team".to_string(), "flags".to_string()],
        rego: "package team.flags\n\nenforce contains {\"allowed\": input.flag, \"message\": \"flag\"}\n\ndeny contains {\"allowed\": true, \"message\": \"odd\"} if input.odd\n"
            .into(),
    }];
    let bundle = build(&input);
    let inputs = [json!({"flag": "yes"}), json!({"flag": true}), json!({"flag": true, "odd": true})];
    let labels: Vec<String> = inputs.iter().map(Value::to_string).collect();
    let (opa, diffs) = differences(&bundle, &labels, &inputs);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    let outcome = |i: usize| &opa.results[i * QUERIES.len()];
    assert_eq!(outcome(0)["allowed"], false, "a non-boolean allowed fails closed: {}", outcome(0));
    assert_eq!(
        outcome(0)["invalid"],
        json!([{"source": "system", "name": input.system.to_string(), "rule": "enforce", "why": "an enforce decision's allowed must be a boolean"}]),
        "{}",
        outcome(0)
    );
    assert_eq!(outcome(1)["allowed"], true, "{}", outcome(1));
    assert_eq!(outcome(1)["invalid"], json!([]), "{}", outcome(1));
    assert_eq!(outcome(2)["allowed"], false, "{}", outcome(2));
    assert_eq!(outcome(2)["invalid"][0]["why"], "a deny decision cannot say allowed: true", "{}", outcome(2));
}
