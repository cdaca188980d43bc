//! The nine precedence tiers of DESIGN.md §1 "Decisions and precedence", proven through the
//! real generated entrypoint (`main/main.rego`) evaluated by regorus.
//!
//! The table of cases lives in `tests/data/conformance/precedence_table.rs`, shared with
//! `tests/conformance.rs`, which runs the same bundles through OPA's own engine.

#[path = "data/conformance/precedence_table.rs"]
mod table;

use edict::bundle::{Bundle, build};
use edict::policy::rego::{Compiled, compile};
use serde_json::{Value, json};
use table::{BASE, CASES, Case, FIXTURES, SYSTEM};

fn compiled(fixture: &str) -> (Bundle, Compiled) {
    let bundle = build(&table::bundle_input(table::fixture(fixture)));
    let compiled = compile(&bundle.modules(), &bundle.data(), "data.main.main")
        .unwrap_or_else(|e| panic!("fixture {fixture} does not compile: {e}"));
    (bundle, compiled)
}

fn eval(compiled: &Compiled, rule: &str, input: &Value) -> Value {
    compiled
        .eval(rule, input)
        .unwrap_or_else(|e| panic!("{rule} fails: {e}"))
        .unwrap_or_else(|| panic!("{rule} is undefined for {input}"))
}

fn fire(fixture: &str, fire: &[&str], uid: Option<&str>) -> (Value, Value) {
    let (_, compiled) = compiled(fixture);
    let mut input = json!({"fire": fire});
    if let Some(uid) = uid {
        input["request"] = json!({"uid": uid});
    }
    (eval(&compiled, "data.main.outcome", &input), eval(&compiled, "data.main.main", &input))
}

#[test]
fn every_case_of_the_table_decides_as_specified() {
    let mut failures = Vec::new();
    for fixture in FIXTURES {
        let (_, compiled) = compiled(fixture.name);
        for (i, case) in CASES.iter().enumerate().filter(|(_, c)| c.fixture == fixture.name) {
            let outcome = eval(&compiled, "data.main.outcome", &table::case_input(i, case));
            if let Err(why) = table::check(case, &outcome) {
                failures.push(format!(
                    "case {i} `{}` ({}):\n  {why}\n  outcome: {outcome}",
                    case.name, case.fixture
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases fail:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

#[test]
fn the_table_covers_every_tier_and_every_fixture() {
    for tier in 1..=9 {
        assert!(CASES.iter().any(|c| c.tier == tier), "no case decides at tier {tier}");
    }
    for f in FIXTURES {
        assert!(CASES.iter().any(|c| c.fixture == f.name), "no case uses fixture {}", f.name);
    }
    // Every case that a rule decides has a competing decision that a wrong order would pick
    // instead: another rule, or a default decision that says the opposite.
    let lone: Vec<&Case> = CASES
        .iter()
        .filter(|c| {
            let default_allowed = table::fixture(c.fixture).default_decision.allowed();
            c.tier < 9 && c.fire.len() < 2 && c.allowed == default_allowed
        })
        .collect();
    assert!(
        lone.is_empty(),
        "cases without a competing decision: {:?}",
        lone.iter().map(|c| c.name).collect::<Vec<_>>()
    );
}

#[test]
fn enforced_and_monitored_entries_describe_each_decision() {
    let (outcome, _) =
        fire("kubernetes", &["base.deny_object_max", "system.allow_high", "dry.allow_max"], None);
    assert_eq!(
        outcome["enforced"],
        json!([
            // A deny object saying `allowed: true` is listed as not allowed.
            {"source": "stack", "name": BASE, "allowed": false, "message": "base deny_object_max", "priority_maximum": true},
            {"source": "system", "name": SYSTEM, "allowed": true, "message": "system allow_high", "priority_maximum": false},
        ]),
        "{outcome}"
    );
    assert_eq!(
        outcome["monitored"],
        json!([{"source": "stack", "name": "acme-platform/dry-run", "allowed": true, "message": "dry allow_max", "priority_maximum": true}]),
        "{outcome}"
    );
}

#[test]
fn kubernetes_denial_carries_uid_status_and_monitored_warnings() {
    let (outcome, main) = fire(
        "kubernetes",
        &[
            "base.deny",
            "extra.deny_string",
            "base.allow",
            "base.monitor_deny",
            "dry.deny",
            "system.monitor_string",
        ],
        Some("uid-1"),
    );
    assert_eq!(outcome["tier"], 3);
    assert_eq!(
        main,
        json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {
                "uid": "uid-1",
                "allowed": false,
                "status": {"code": 403, "reason": "Forbidden", "message": "base deny; extra deny_string"},
                "warnings": ["base monitor_deny", "dry deny", "system monitor_string"],
            },
        })
    );
}

#[test]
fn kubernetes_allowance_has_no_status_and_no_warnings_without_monitored_messages() {
    let (_, main) = fire("kubernetes", &["base.allow_max", "system.deny"], Some("uid-2"));
    assert_eq!(
        main,
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {"uid": "uid-2", "allowed": true}})
    );
}

#[test]
fn kubernetes_allowance_warns_with_monitored_messages() {
    let (_, main) = fire("kubernetes", &["system.allow", "dry.deny_max"], Some("uid-3"));
    assert_eq!(main["response"], json!({"uid": "uid-3", "allowed": true, "warnings": ["dry deny_max"]}));
}

#[test]
fn kubernetes_default_denial_says_why() {
    let (_, main) = fire("kubernetes", &[], Some("uid-4"));
    assert_eq!(
        main["response"],
        json!({
            "uid": "uid-4",
            "allowed": false,
            "status": {"code": 403, "reason": "Forbidden", "message": "no rule decided: default decision is deny"},
        })
    );
}

#[test]
fn kubernetes_answer_without_request_uid_has_empty_uid() {
    let (_, main) = fire("default-allow", &[], None);
    assert_eq!(main["response"], json!({"uid": "", "allowed": true}));
}

#[test]
fn envoy_denial_is_403_with_the_messages_as_body() {
    let (_, main) = fire("envoy", &["base.deny_max", "base.deny_object_max", "system.allow_max"], None);
    assert_eq!(
        main,
        json!({
            "allowed": false,
            "headers": {"x-edict-tier": "1"},
            "http_status": 403,
            "body": "base deny_max; base deny_object_max",
        })
    );
}

#[test]
fn envoy_allowance_is_200_with_empty_body() {
    let (_, main) = fire("envoy", &["system.allow", "dry.deny_max"], None);
    assert_eq!(
        main,
        json!({"allowed": true, "headers": {"x-edict-tier": "8"}, "http_status": 200, "body": ""})
    );
}

#[test]
fn envoy_default_denial_is_403() {
    let (_, main) = fire("envoy", &[], None);
    assert_eq!(main["http_status"], 403);
    assert_eq!(main["headers"], json!({"x-edict-tier": "9"}));
    assert_eq!(main["body"], "no rule decided: default decision is deny");
}

#[test]
fn custom_answer_is_the_outcome() {
    for fire_ids in [&["system.deny", "extra.monitor_deny"][..], &["base.allow"], &[]] {
        let (outcome, main) = fire("custom", fire_ids, None);
        assert_eq!(main, outcome, "fire {fire_ids:?}");
    }
}

#[test]
fn decided_by_names_the_system_by_namespace_and_name() {
    let (outcome, _) = fire("custom", &["system.deny"], None);
    assert_eq!(outcome["decided_by"], json!([{"source": "system", "name": "acme-payments/api"}]));
    let (outcome, _) = fire("custom", &["extra.deny"], None);
    assert_eq!(outcome["decided_by"], json!([{"source": "stack", "name": "acme-platform/extra-rules"}]));
}
