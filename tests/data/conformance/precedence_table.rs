//! The precedence table: bundles whose Stacks and System carry one rule of every kind, and
//! cases that fire some of those rules and say which tier must decide.
//!
//! Shared by `tests/precedence.rs` (regorus) and `tests/conformance.rs` (OPA's own engine),
//! so that the nine tiers of DESIGN.md §1 "Decisions and precedence" are proven in both.
//!
//! Every source (a Stack or the System) carries every [`VARIANTS`] rule, each guarded by
//! `"<source>.<variant>" in input.fire`, so a case decides exactly which decisions exist.
//! The message of a decision is `"<source> <variant>"`.

use edict::api::{DefaultDecision, Enforcement, SystemType};
use edict::bundle::{BundleInput, PolicyModule, StackInput};
use edict::model::ObjectKey;
use serde_json::{Value, json};

/// The bound Stacks and the System, as `decided_by` names them.
pub const BASE: &str = "acme-platform/base";
pub const EXTRA: &str = "acme-platform/extra-rules";
pub const DRY: &str = "acme-platform/dry-run";
pub const SYSTEM: &str = "acme-payments/api";

/// (variant, rule kind, value). `MSG` in the value is replaced by the quoted message.
pub const VARIANTS: &[(&str, &str, &str)] = &[
    ("deny_max", "enforce", r#"{"allowed": false, "message": MSG, "priority": "maximum"}"#),
    ("allow_max", "enforce", r#"{"allowed": true, "message": MSG, "priority": "maximum"}"#),
    ("deny", "enforce", r#"{"allowed": false, "message": MSG}"#),
    ("allow", "enforce", r#"{"allowed": true, "message": MSG}"#),
    // Only "maximum" is a priority; anything else is an ordinary decision.
    ("allow_high", "enforce", r#"{"allowed": true, "message": MSG, "priority": "high"}"#),
    // An enforce decision that does not say `"allowed": true` fails closed.
    ("no_allowed", "enforce", r#"{"message": MSG}"#),
    ("no_message", "enforce", r#"{"allowed": false}"#),
    ("deny_string", "deny", "MSG"),
    // A deny rule never allows, whatever its object says.
    ("deny_object", "deny", r#"{"allowed": true, "message": MSG}"#),
    ("deny_object_max", "deny", r#"{"allowed": true, "message": MSG, "priority": "maximum"}"#),
    ("monitor_deny", "monitor", r#"{"allowed": false, "message": MSG}"#),
    ("monitor_string", "monitor", "MSG"),
];

/// The short source names used in `fire` ids and messages, with their `decided_by` entry.
const SOURCES: &[(&str, &str, &str)] = &[
    ("base", "stack", BASE),
    ("extra", "stack", EXTRA),
    ("dry", "stack", DRY),
    ("system", "system", SYSTEM),
];

/// A System and the Stacks bound to it.
pub struct Fixture {
    pub name: &'static str,
    pub system_type: SystemType,
    pub enforcement: Enforcement,
    pub default_decision: DefaultDecision,
    /// (short source name, enforcement) of the bound Stacks.
    pub stacks: &'static [(&'static str, Enforcement)],
}

use Enforcement::{Enforce, Monitor};

pub const FIXTURES: &[Fixture] = &[
    Fixture {
        name: "kubernetes",
        system_type: SystemType::Kubernetes,
        enforcement: Enforce,
        default_decision: DefaultDecision::Deny,
        stacks: &[("base", Enforce), ("extra", Enforce), ("dry", Monitor)],
    },
    Fixture {
        name: "default-allow",
        system_type: SystemType::Kubernetes,
        enforcement: Enforce,
        default_decision: DefaultDecision::Allow,
        stacks: &[("base", Enforce), ("extra", Enforce), ("dry", Monitor)],
    },
    Fixture {
        name: "system-monitor",
        system_type: SystemType::Kubernetes,
        enforcement: Monitor,
        default_decision: DefaultDecision::Allow,
        stacks: &[("base", Enforce)],
    },
    Fixture {
        name: "envoy",
        system_type: SystemType::Envoy,
        enforcement: Enforce,
        default_decision: DefaultDecision::Deny,
        stacks: &[("base", Enforce), ("dry", Monitor)],
    },
    Fixture {
        name: "custom",
        system_type: SystemType::Custom,
        enforcement: Enforce,
        default_decision: DefaultDecision::Allow,
        stacks: &[("base", Enforce), ("extra", Enforce)],
    },
];

pub fn fixture(name: &str) -> &'static Fixture {
    FIXTURES.iter().find(|f| f.name == name).unwrap_or_else(|| panic!("no fixture {name}"))
}

fn source(short: &str) -> (&'static str, &'static str) {
    SOURCES
        .iter()
        .find(|(s, _, _)| *s == short)
        .map(|(_, kind, name)| (*kind, *name))
        .unwrap_or_else(|| panic!("no source {short}"))
}

/// The rule kind of a variant.
fn rule_kind(variant: &str) -> &'static str {
    VARIANTS
        .iter()
        .find(|(v, _, _)| *v == variant)
        .map(|(_, k, _)| *k)
        .unwrap_or_else(|| panic!("no rule variant {variant:?}: the case table has a typo"))
}

/// Two packages per source (deny rules in one, enforce and monitor rules in the other), so the
/// entrypoint has to collect decisions from several packages of one source.
fn policies(short: &str, root: &str) -> Vec<PolicyModule> {
    let mut rules = String::new();
    let mut denials = String::new();
    for (variant, kind, value) in VARIANTS {
        let msg = Value::String(format!("{short} {variant}")).to_string();
        let line = format!(
            "{kind} contains {} if \"{short}.{variant}\" in input.fire\n\n",
            value.replace("MSG", &msg)
        );
        if *kind == "deny" { denials.push_str(&line) } else { rules.push_str(&line) }
    }
    [("rules", rules), ("denials", denials)]
        .into_iter()
        .map(|(leaf, body)| {
            let package = format!("{root}.{leaf}");
            PolicyModule {
                name: format!("{short}-{leaf}"),
                package: package.split('.').map(String::from).collect(),
                rego: format!("package {package}\n\n{body}").into(),
            }
        })
        .collect()
}

/// The bundle input of a fixture.
pub fn bundle_input(f: &Fixture) -> BundleInput {
    let system_root = match f.system_type {
        SystemType::Kubernetes => "admission_control",
        SystemType::Envoy => "envoy",
        SystemType::Custom => "custom",
    };
    let mut stacks: Vec<StackInput> = f
        .stacks
        .iter()
        .map(|(short, enforcement)| {
            let (_, name) = source(short);
            let (namespace, name) = name.split_once('/').expect("namespace/name");
            let key = ObjectKey::new(namespace, name);
            let id = edict::bundle::stack_id(name);
            StackInput {
                key,
                generation: Some(1),
                enforcement: *enforcement,
                default_masks: true,
                policies: policies(short, &format!("stacks.{id}")),
            }
        })
        .collect();
    stacks.sort_by(|a, b| a.key.cmp(&b.key));
    let (namespace, name) = SYSTEM.split_once('/').expect("namespace/name");
    BundleInput {
        tenant: "acme".into(),
        cluster: "test".into(),
        system: ObjectKey::new(namespace, name),
        system_type: f.system_type,
        enforcement: f.enforcement,
        default_decision: f.default_decision,
        labels: [("env".to_string(), "prod".to_string())].into(),
        features: Default::default(),
        options: Default::default(),
        policies: policies("system", system_root),
        stacks,
    }
}

/// One row of the table: which rules fire, and what must be decided.
pub struct Case {
    pub name: &'static str,
    pub fixture: &'static str,
    /// `"<source>.<variant>"` of the rules that fire.
    pub fire: &'static [&'static str],
    pub tier: u64,
    pub allowed: bool,
    /// `decided_by` names (a Stack's `namespace/name`, or [`SYSTEM`]).
    pub decided_by: &'static [&'static str],
    /// The messages of the deciding tier, sorted.
    pub messages: &'static [&'static str],
}

const DEFAULT_DENY: &str = "no rule decided: default decision is deny";
const DEFAULT_ALLOW: &str = "no rule decided: default decision is allow";

#[rustfmt::skip]
pub const CASES: &[Case] = &[
    // Every tier wins over a decision in a lower tier.
    Case { name: "tier 1: stack deny max beats every lower tier", fixture: "kubernetes",
        fire: &["base.deny_max", "base.allow_max", "base.deny", "base.allow", "system.deny_max", "system.allow"],
        tier: 1, allowed: false, decided_by: &[BASE], messages: &["base deny_max"] },
    Case { name: "tier 1: stack deny max beats stack allow max of another stack", fixture: "kubernetes",
        fire: &["base.deny_max", "extra.allow_max"],
        tier: 1, allowed: false, decided_by: &[BASE], messages: &["base deny_max"] },
    Case { name: "tier 2: stack allow max beats stack denies and system deny max", fixture: "kubernetes",
        fire: &["base.allow_max", "base.deny", "extra.deny_string", "system.deny_max"],
        tier: 2, allowed: true, decided_by: &[BASE], messages: &["base allow_max"] },
    Case { name: "tier 3: stack deny beats stack allow (tie in the stack tier)", fixture: "kubernetes",
        fire: &["base.deny", "base.allow", "system.deny_max", "system.allow_max"],
        tier: 3, allowed: false, decided_by: &[BASE], messages: &["base deny"] },
    Case { name: "tier 4: stack allow beats system deny max", fixture: "kubernetes",
        fire: &["base.allow", "system.deny_max"],
        tier: 4, allowed: true, decided_by: &[BASE], messages: &["base allow"] },
    Case { name: "tier 5: system deny max beats system allow max", fixture: "kubernetes",
        fire: &["system.deny_max", "system.allow_max", "system.deny"],
        tier: 5, allowed: false, decided_by: &[SYSTEM], messages: &["system deny_max"] },
    Case { name: "tier 6: system allow max beats system denies", fixture: "kubernetes",
        fire: &["system.allow_max", "system.deny", "system.deny_string"],
        tier: 6, allowed: true, decided_by: &[SYSTEM], messages: &["system allow_max"] },
    Case { name: "tier 7: system deny beats system allow", fixture: "kubernetes",
        fire: &["system.deny", "system.allow"],
        tier: 7, allowed: false, decided_by: &[SYSTEM], messages: &["system deny"] },
    Case { name: "tier 8: system allow beats the default deny", fixture: "kubernetes",
        fire: &["system.allow"],
        tier: 8, allowed: true, decided_by: &[SYSTEM], messages: &["system allow"] },
    Case { name: "tier 9: nothing decides, default deny", fixture: "kubernetes",
        fire: &[],
        tier: 9, allowed: false, decided_by: &[], messages: &[DEFAULT_DENY] },
    Case { name: "tier 9: nothing decides, default allow", fixture: "default-allow",
        fire: &[],
        tier: 9, allowed: true, decided_by: &[], messages: &[DEFAULT_ALLOW] },
    Case { name: "default allow does not override a system deny", fixture: "default-allow",
        fire: &["system.deny"],
        tier: 7, allowed: false, decided_by: &[SYSTEM], messages: &["system deny"] },

    // Priority maximum on a system rule does not lift it above stack rules.
    Case { name: "system allow max loses to a plain stack deny", fixture: "kubernetes",
        fire: &["system.allow_max", "base.deny"],
        tier: 3, allowed: false, decided_by: &[BASE], messages: &["base deny"] },
    Case { name: "system deny max loses to a plain stack allow", fixture: "kubernetes",
        fire: &["extra.allow", "system.deny_max"],
        tier: 4, allowed: true, decided_by: &[EXTRA], messages: &["extra allow"] },
    Case { name: "a priority other than maximum is an ordinary decision", fixture: "kubernetes",
        fire: &["system.allow_high", "system.deny"],
        tier: 7, allowed: false, decided_by: &[SYSTEM], messages: &["system deny"] },
    Case { name: "an ordinary-priority allow is tier 8", fixture: "kubernetes",
        fire: &["system.allow_high"],
        tier: 8, allowed: true, decided_by: &[SYSTEM], messages: &["system allow_high"] },

    // deny rules: strings and objects are both not-allowed decisions.
    Case { name: "string deny from a stack is a stack deny", fixture: "kubernetes",
        fire: &["base.deny_string", "base.allow", "system.allow_max"],
        tier: 3, allowed: false, decided_by: &[BASE], messages: &["base deny_string"] },
    Case { name: "string deny from the system is a system deny", fixture: "kubernetes",
        fire: &["system.deny_string", "system.allow"],
        tier: 7, allowed: false, decided_by: &[SYSTEM], messages: &["system deny_string"] },
    Case { name: "object deny saying allowed: true is still a deny", fixture: "kubernetes",
        fire: &["base.deny_object", "system.allow_max"],
        tier: 3, allowed: false, decided_by: &[BASE], messages: &["base deny_object"] },
    Case { name: "system object deny beats system allow", fixture: "kubernetes",
        fire: &["system.deny_object", "system.allow"],
        tier: 7, allowed: false, decided_by: &[SYSTEM], messages: &["system deny_object"] },
    Case { name: "object deny with priority maximum is tier 1", fixture: "kubernetes",
        fire: &["base.deny_object_max", "extra.allow_max"],
        tier: 1, allowed: false, decided_by: &[BASE], messages: &["base deny_object_max"] },
    Case { name: "enforce without allowed fails closed", fixture: "kubernetes",
        fire: &["system.no_allowed", "system.allow"],
        tier: 7, allowed: false, decided_by: &[SYSTEM], messages: &["system no_allowed"] },
    Case { name: "a decision without message decides with no message", fixture: "kubernetes",
        fire: &["system.no_message", "system.allow"],
        tier: 7, allowed: false, decided_by: &[SYSTEM], messages: &[] },
    Case { name: "all messages of the deciding tier are listed", fixture: "kubernetes",
        fire: &["system.deny_max", "system.deny_object_max", "system.allow_max"],
        tier: 5, allowed: false, decided_by: &[SYSTEM],
        messages: &["system deny_max", "system deny_object_max"] },

    // monitor rules and monitor-mode sources are reported, never decide.
    Case { name: "monitor rules never decide", fixture: "kubernetes",
        fire: &["base.monitor_deny", "system.monitor_string", "system.allow"],
        tier: 8, allowed: true, decided_by: &[SYSTEM], messages: &["system allow"] },
    Case { name: "monitor rules alone leave the default deny", fixture: "kubernetes",
        fire: &["base.monitor_deny", "extra.monitor_string"],
        tier: 9, allowed: false, decided_by: &[], messages: &[DEFAULT_DENY] },
    Case { name: "monitor rules alone leave the default allow", fixture: "default-allow",
        fire: &["system.monitor_deny"],
        tier: 9, allowed: true, decided_by: &[], messages: &[DEFAULT_ALLOW] },
    Case { name: "a stack in monitor mode does not decide", fixture: "kubernetes",
        fire: &["dry.deny_max", "dry.deny_string", "system.allow"],
        tier: 8, allowed: true, decided_by: &[SYSTEM], messages: &["system allow"] },
    Case { name: "a stack in monitor mode alone leaves the default", fixture: "kubernetes",
        fire: &["dry.allow_max"],
        tier: 9, allowed: false, decided_by: &[], messages: &[DEFAULT_DENY] },
    Case { name: "a stack in monitor mode cannot deny under default allow", fixture: "default-allow",
        fire: &["dry.deny", "dry.deny_object_max"],
        tier: 9, allowed: true, decided_by: &[], messages: &[DEFAULT_ALLOW] },
    Case { name: "a system in monitor mode does not decide", fixture: "system-monitor",
        fire: &["system.deny_max", "system.deny_string"],
        tier: 9, allowed: true, decided_by: &[], messages: &[DEFAULT_ALLOW] },
    Case { name: "stacks still decide for a system in monitor mode", fixture: "system-monitor",
        fire: &["system.allow_max", "base.deny"],
        tier: 3, allowed: false, decided_by: &[BASE], messages: &["base deny"] },

    // Several stacks.
    Case { name: "two stacks deny in the same tier: both decide", fixture: "kubernetes",
        fire: &["base.deny", "extra.deny_string", "system.deny_max"],
        tier: 3, allowed: false, decided_by: &[BASE, EXTRA], messages: &["base deny", "extra deny_string"] },
    Case { name: "one stack's deny beats another stack's allow", fixture: "kubernetes",
        fire: &["base.allow", "extra.deny"],
        tier: 3, allowed: false, decided_by: &[EXTRA], messages: &["extra deny"] },
    Case { name: "two stacks allow: both decide", fixture: "kubernetes",
        fire: &["base.allow", "extra.allow", "system.deny"],
        tier: 4, allowed: true, decided_by: &[BASE, EXTRA], messages: &["base allow", "extra allow"] },
    Case { name: "one stack's allow max beats another stack's deny", fixture: "kubernetes",
        fire: &["extra.allow_max", "base.deny"],
        tier: 2, allowed: true, decided_by: &[EXTRA], messages: &["extra allow_max"] },

    // Other system types decide the same way.
    Case { name: "envoy: stack deny max", fixture: "envoy",
        fire: &["base.deny_max", "system.allow_max"],
        tier: 1, allowed: false, decided_by: &[BASE], messages: &["base deny_max"] },
    Case { name: "envoy: system allow", fixture: "envoy",
        fire: &["system.allow", "dry.deny"],
        tier: 8, allowed: true, decided_by: &[SYSTEM], messages: &["system allow"] },
    Case { name: "envoy: default deny", fixture: "envoy",
        fire: &["dry.deny_max"],
        tier: 9, allowed: false, decided_by: &[], messages: &[DEFAULT_DENY] },
    Case { name: "custom: system deny under default allow", fixture: "custom",
        fire: &["system.deny_string", "system.allow"],
        tier: 7, allowed: false, decided_by: &[SYSTEM], messages: &["system deny_string"] },
    Case { name: "custom: stack deny max against stack allow max", fixture: "custom",
        fire: &["base.allow_max", "extra.deny_max"],
        tier: 1, allowed: false, decided_by: &[EXTRA], messages: &["extra deny_max"] },
    Case { name: "custom: default allow", fixture: "custom",
        fire: &[],
        tier: 9, allowed: true, decided_by: &[], messages: &[DEFAULT_ALLOW] },
];

/// The input of a case: the rules to fire, and a request uid for the Kubernetes answer.
pub fn case_input(index: usize, case: &Case) -> Value {
    json!({"fire": case.fire, "request": {"uid": format!("case-{index}")}})
}

/// The tier names of `outcome.reason`.
pub fn reason(tier: u64) -> &'static str {
    [
        "stack deny (priority maximum)",
        "stack allow (priority maximum)",
        "stack deny",
        "stack allow",
        "system deny (priority maximum)",
        "system allow (priority maximum)",
        "system deny",
        "system allow",
        "default decision",
    ][tier as usize - 1]
}

/// Whether a fired rule is enforced (decides) or only reported: `monitor` rules, and every
/// rule of a Stack or System in monitor mode, are reported as monitored.
fn enforced(f: &Fixture, fired: &str) -> bool {
    let (short, variant) = fired.split_once('.').expect("<source>.<variant>");
    let mode = if short == "system" {
        f.enforcement
    } else {
        f.stacks
            .iter()
            .find(|(s, _)| *s == short)
            .map(|(_, e)| *e)
            .unwrap_or_else(|| panic!("fixture {} binds no stack {short}", f.name))
    };
    rule_kind(variant) != "monitor" && mode == Enforce
}

/// Check an outcome against its case. Sets in the outcome (`decided_by`, `enforced`,
/// `monitored`) are compared as sorted lists of what the case implies.
pub fn check(case: &Case, outcome: &Value) -> Result<(), String> {
    let f = fixture(case.fixture);
    let mut problems = Vec::new();
    let mut expect = |what: &str, got: &Value, want: Value| {
        if *got != want {
            problems.push(format!("{what}: got {got}, want {want}"));
        }
    };
    expect("tier", &outcome["tier"], json!(case.tier));
    expect("allowed", &outcome["allowed"], json!(case.allowed));
    expect("reason", &outcome["reason"], json!(reason(case.tier)));
    let decided_by: Vec<Value> = case
        .decided_by
        .iter()
        .map(|name| json!({"source": if *name == SYSTEM { "system" } else { "stack" }, "name": name}))
        .collect();
    expect("decided_by", &outcome["decided_by"], json!(decided_by));
    expect("messages", &outcome["messages"], json!(case.messages));

    // Which decisions are listed as enforced and which as monitored (by message, or by the
    // source for the one variant that has none).
    let label = |d: &Value| -> String {
        match d["message"].as_str() {
            Some("") | None => format!("<{} without message>", d["name"].as_str().unwrap_or("?")),
            Some(m) => m.to_string(),
        }
    };
    let listed = |key: &str| -> Vec<String> {
        let mut v: Vec<String> =
            outcome[key].as_array().map(|a| a.iter().map(label).collect()).unwrap_or_default();
        v.sort();
        v
    };
    let implied = |want_enforced: bool| -> Vec<String> {
        let mut v: Vec<String> = case
            .fire
            .iter()
            .filter(|id| enforced(f, id) == want_enforced)
            .map(|id| {
                let (short, variant) = id.split_once('.').expect("<source>.<variant>");
                if variant == "no_message" {
                    format!("<{} without message>", source(short).1)
                } else {
                    format!("{short} {variant}")
                }
            })
            .collect();
        v.sort();
        v
    };
    expect("enforced", &json!(listed("enforced")), json!(implied(true)));
    expect("monitored", &json!(listed("monitored")), json!(implied(false)));
    if problems.is_empty() { Ok(()) } else { Err(problems.join("\n  ")) }
}
