//! Replay: what a proposed change would have decided for the requests a System really saw.
//!
//! Each recorded decision's input is evaluated against the proposed bundle and compared with
//! what OPA decided then. Inputs are deduplicated by content first (admission traffic repeats
//! heavily). The flips are grouped by what now decides (the deciding sources and messages),
//! each group with a few example decisions. A decision whose input had fields erased by the
//! masks, and whose outcome would change, is reported as not replayable (the erased fields may
//! be what decides), not guessed.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::ingest::query::Recorded;
use crate::policy::rego::Compiled;

/// Examples kept per group of flips.
const EXAMPLES: usize = 3;

/// What replaying one System's recorded decisions found.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    /// The System (`namespace/name`).
    pub system: String,
    /// Decisions replayed.
    pub replayed: usize,
    /// Distinct inputs among them (each evaluated once).
    pub distinct_inputs: usize,
    /// Decided the same way.
    pub unchanged: usize,
    /// Allowed then, denied now.
    pub newly_denied: usize,
    /// Denied then, allowed now.
    pub newly_allowed: usize,
    /// Inputs the proposed bundle could not evaluate, or records with no outcome.
    pub errors: usize,
    /// Would change, but the input had fields erased by the masks: not replayable.
    pub masked: usize,
    /// The flips, grouped by what decides now.
    pub groups: Vec<Group>,
}

/// Flips that the same sources and messages decide now.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Group {
    /// `newly denied`, `newly allowed` or `cannot replay: input masked at …`.
    pub change: String,
    /// What decides now (`stack/ns/name`, `system`, or the default decision).
    pub decided_by: Vec<String>,
    /// The messages that decide now.
    pub messages: Vec<String>,
    /// How many decisions.
    pub count: usize,
    /// A few of them: `time decision_id`.
    pub examples: Vec<String>,
}

/// Replay `events` (as stored) against `proposed`, for `system`.
pub fn replay(system: &str, proposed: &Compiled, events: &[Value]) -> Report {
    let mut report = Report { system: system.to_string(), replayed: events.len(), ..Report::default() };
    let mut outcomes: BTreeMap<[u8; 32], Option<Value>> = BTreeMap::new();
    let mut groups: BTreeMap<(String, Vec<String>, Vec<String>), Group> = BTreeMap::new();
    for event in events {
        let recorded = Recorded::of(event);
        let input = &event["input"];
        let digest: [u8; 32] = Sha256::digest(serde_json::to_vec(input).unwrap_or_default()).into();
        let outcome = outcomes
            .entry(digest)
            .or_insert_with(|| proposed.eval("data.main.outcome", input).ok().flatten())
            .clone();
        let (Some(then), Some(now)) =
            (recorded.allowed, outcome.as_ref().and_then(|o| o["allowed"].as_bool()))
        else {
            report.errors += 1;
            continue;
        };
        if then == now {
            report.unchanged += 1;
            continue;
        }
        let outcome = outcome.unwrap_or_default();
        let change = if !recorded.erased.is_empty() {
            report.masked += 1;
            format!("cannot replay: input masked at {}", recorded.erased.join(", "))
        } else if now {
            report.newly_allowed += 1;
            "newly allowed".to_string()
        } else {
            report.newly_denied += 1;
            "newly denied".to_string()
        };
        let decided_by: Vec<String> = outcome["decided_by"]
            .as_array()
            .map(|all| {
                all.iter()
                    .map(|d| match (d["source"].as_str(), d["name"].as_str()) {
                        (Some(s), Some(n)) if !n.is_empty() => format!("{s}/{n}"),
                        (Some(s), _) => s.to_string(),
                        _ => d.to_string(),
                    })
                    .collect()
            })
            .filter(|v: &Vec<String>| !v.is_empty())
            .unwrap_or_else(|| vec![outcome["reason"].as_str().unwrap_or("default decision").to_string()]);
        let messages: Vec<String> = outcome["messages"]
            .as_array()
            .map(|m| m.iter().filter_map(Value::as_str).map(String::from).collect())
            .unwrap_or_default();
        let group = groups
            .entry((change.clone(), decided_by.clone(), messages.clone()))
            .or_insert_with(|| Group { change, decided_by, messages, count: 0, examples: Vec::new() });
        group.count += 1;
        if group.examples.len() < EXAMPLES {
            group.examples.push(format!("{} {}", recorded.time, recorded.decision_id));
        }
    }
    report.distinct_inputs = outcomes.len();
    report.groups = groups.into_values().collect();
    report.groups.sort_by(|a, b| b.count.cmp(&a.count).then(a.change.cmp(&b.change)));
    report
}

/// When a replay should fail a pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailOn {
    /// Never.
    Nothing,
    /// When any recorded request would now be denied.
    NewlyDenied,
    /// When any decision would change (or cannot be replayed).
    Any,
}

impl FailOn {
    /// Whether `reports` fail this gate.
    pub fn fails(self, reports: &[Report]) -> bool {
        match self {
            FailOn::Nothing => false,
            FailOn::NewlyDenied => reports.iter().any(|r| r.newly_denied > 0),
            FailOn::Any => reports.iter().any(|r| r.newly_denied + r.newly_allowed + r.masked > 0),
        }
    }
}

/// The reports as Markdown, for a pull-request comment.
pub fn markdown(reports: &[Report]) -> String {
    let mut out = String::from(
        "| System | replayed | unchanged | newly denied | newly allowed | not replayable | errors |\n|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in reports {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} | {} |\n",
            r.system, r.replayed, r.unchanged, r.newly_denied, r.newly_allowed, r.masked, r.errors
        ));
    }
    for r in reports.iter().filter(|r| !r.groups.is_empty()) {
        out.push_str(&format!("\n**{}**\n\n", r.system));
        for g in &r.groups {
            out.push_str(&format!(
                "- {} × {}, decided by {}: {}\n",
                g.count,
                g.change,
                g.decided_by.join(", "),
                if g.messages.is_empty() { "(no message)".to_string() } else { g.messages.join("; ") }
            ));
            for e in &g.examples {
                out.push_str(&format!("  - `{e}`\n"));
            }
        }
    }
    out
}

/// The reports as text, for a terminal.
pub fn text(reports: &[Report]) -> String {
    let mut out = String::new();
    for r in reports {
        out.push_str(&format!(
            "{}: {} decisions replayed ({} distinct inputs): {} unchanged, {} newly denied, {} newly allowed, {} not replayable (masked input), {} errors\n",
            r.system, r.replayed, r.distinct_inputs, r.unchanged, r.newly_denied, r.newly_allowed, r.masked, r.errors
        ));
        for g in &r.groups {
            out.push_str(&format!("  {} × {} — decided by {}\n", g.count, g.change, g.decided_by.join(", ")));
            for m in &g.messages {
                out.push_str(&format!("      {m}\n"));
            }
            for e in &g.examples {
                out.push_str(&format!("      e.g. {e}\n"));
            }
        }
    }
    out
}
