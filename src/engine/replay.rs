//! Replay: what a proposed change would have decided for the requests a System really saw.
//!
//! Each recorded decision's input is evaluated against the proposed bundle and compared with
//! what OPA decided then. Inputs are deduplicated by content first (admission traffic repeats
//! heavily). The flips are grouped by what now decides (the deciding sources and messages),
//! each group with a few example decisions. A decision whose input had fields erased by the
//! masks that the proposed policy reads (by the constant prefixes of its `input` references)
//! is reported as not replayable, whatever it decides without them: not guessed. Erased fields
//! the policy does not read cannot change its decision, so those decisions replay as usual.
//!
//! With a baseline bundle (the live one), each input is decided by it too and the proposed
//! bundle is compared with that: a flip then comes from the change itself, and decisions whose
//! recorded outcome the live bundle no longer reproduces (data or time changed since) are
//! counted apart as drift.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::ingest::decisions::Outcome;
use crate::ingest::query::Recorded;
use crate::policy::rego::Compiled;

/// Examples kept per group of flips.
const EXAMPLES: usize = 3;

/// What replaying one System's recorded decisions found.
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Report {
    /// The System (`namespace/name`).
    pub system: String,
    /// What the proposed bundle is compared with: `recorded` (what OPA decided then) or
    /// `live <revision>` (what the live bundle decides for the same input now).
    pub baseline: String,
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
    /// With the live baseline: decisions the live bundle decides differently from the record
    /// (data or time changed since, not the proposed change).
    pub drift: usize,
    /// The flips, grouped by what decides now.
    pub groups: Vec<Group>,
}

/// Flips that the same sources and messages decide now.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct Group {
    /// `newly denied`, `newly allowed` or `cannot replay: input masked at …`.
    pub change: String,
    /// What decides now (`stack/ns/name`, `system`, or the default decision).
    pub decided_by: Vec<String>,
    /// The messages that decide now.
    pub messages: Vec<String>,
    /// The rules that produce those messages for the group's first input: `deny at
    /// <module path in the bundle>:<lines of its definitions>`.
    #[serde(default)]
    pub rules: Vec<String>,
    /// How many decisions.
    pub count: usize,
    /// A few of them: `time decision_id`.
    pub examples: Vec<String>,
}

/// The bundle a replay compares with, when not the recorded outcomes.
pub struct Baseline<'a> {
    /// Its name in the report (`live 95220d66ab12`).
    pub name: String,
    /// The compiled bundle.
    pub compiled: &'a Compiled,
}

/// A bundle archive (`bundle.tar.gz`, as published) compiled for evaluation.
pub fn compile_archive(bytes: &[u8]) -> Result<Compiled, String> {
    let entries = crate::bundle::read_archive(bytes).map_err(|e| format!("reading the bundle: {e}"))?;
    let mut modules = Vec::new();
    let mut data = serde_json::json!({});
    for (path, body) in entries {
        let path = path.trim_start_matches('/').to_string();
        if path.ends_with(".rego") {
            modules.push((path, String::from_utf8_lossy(&body).into_owned()));
        } else if path == "data.json" {
            data = serde_json::from_slice(&body).map_err(|e| format!("the bundle's data.json: {e}"))?;
        }
    }
    crate::policy::rego::compile(&modules, &data, crate::engine::pipeline::ENTRYPOINT)
        .map(|compiled| compiled.with_vm(OUTCOME))
        .map_err(|e| e.to_string())
}

/// The rule a replay evaluates for every distinct input.
pub const OUTCOME: &str = "data.main.outcome";

/// What a replay knows of the proposed bundle's modules: what they read of the input, and
/// where their decision rules are.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    /// The constant prefixes of the modules' `input` references (`["request", "object",
    /// "spec"]`; `[]` for all of it).
    reads: Vec<Vec<String>>,
    /// Every decision rule (`deny`, `enforce`, `monitor`) of the Stacks' and the System's
    /// Policies.
    rules: Vec<DecisionRule>,
}

/// One decision rule of one module: `data.<package>.<name>`, defined at `lines` of `file`.
#[derive(Clone, Debug)]
struct DecisionRule {
    /// `data.a.b.deny`.
    path: String,
    /// `deny`.
    name: String,
    /// The module's path in the bundle.
    file: String,
    /// The lines of its definitions.
    lines: Vec<usize>,
}

impl DecisionRule {
    /// `deny at a/b/policy.rego:12,31`.
    fn describe(&self) -> String {
        let lines: Vec<String> = self.lines.iter().map(usize::to_string).collect();
        format!("{} at {}:{}", self.name, self.file, lines.join(","))
    }
}

/// What the modules of a bundle read of their input and where their decision rules are. The
/// generated `main` and the decision masks' own `system` packages aside; a module that does
/// not parse is taken to read all of the input.
pub fn sources(modules: &[(String, String)]) -> Sources {
    let mut out = Sources::default();
    for (label, text) in modules {
        let Ok(parsed) = crate::policy::parse(label, text) else {
            out.reads = vec![Vec::new()];
            continue;
        };
        if parsed.package.first().map(String::as_str) == Some("system") {
            continue;
        }
        out.reads.extend(crate::policy::analyse::input_reads(&parsed.module));
        if parsed.package == ["main"] {
            continue;
        }
        let info = crate::policy::rego::module_info(&parsed);
        for name in crate::bundle::DECISION_RULES {
            let lines: Vec<usize> = info.rules.iter().filter(|r| r.name == name).map(|r| r.line).collect();
            if !lines.is_empty() {
                out.rules.push(DecisionRule {
                    path: format!("data.{}.{name}", crate::policy::rego::rego_ref(&info.package)),
                    name: name.to_string(),
                    file: label.clone(),
                    lines,
                });
            }
        }
    }
    if out.reads.iter().any(Vec::is_empty) {
        out.reads = vec![Vec::new()];
    }
    out.reads.sort();
    out.reads.dedup();
    out
}

/// The decision rules whose value for `input` holds one of `messages` (a `deny` string, or a
/// decision object's `message`): the rules that decide, as `deny at file:line`.
fn deciding_rules(
    proposed: &Compiled,
    rules: &[DecisionRule],
    input: &Value,
    messages: &[String],
) -> Vec<String> {
    let says = |v: &Value| {
        let message = v.as_str().or_else(|| v["message"].as_str());
        message.is_some_and(|m| messages.iter().any(|n| n == m))
    };
    rules
        .iter()
        .filter(|rule| {
            let value = proposed.eval(&rule.path, input).ok().flatten();
            value.as_ref().and_then(Value::as_array).is_some_and(|all| all.iter().any(says))
        })
        .map(DecisionRule::describe)
        .collect()
}

/// Whether a policy reading `reads` (see [`Sources`]) may read what the JSON pointer
/// `erased` (`/input/request/object/data`) names: one path is a prefix of the other.
fn reads_pointer(reads: &[Vec<String>], erased: &str) -> bool {
    let path: Vec<String> =
        erased.split('/').skip(1).map(|step| step.replace("~1", "/").replace("~0", "~")).collect();
    let Some(("input", path)) = path.split_first().map(|(h, t)| (h.as_str(), t)) else { return false };
    reads.iter().any(|read| {
        let n = read.len().min(path.len());
        read[..n] == path[..n]
    })
}

/// What a bundle decides for one input, as far as a replay needs it.
#[derive(Clone, Debug, Default)]
struct Decided {
    allowed: Option<bool>,
    decided_by: Vec<String>,
    messages: Vec<String>,
}

impl Decided {
    fn of(compiled: &Compiled, input: &Value) -> Decided {
        let Some(outcome) = compiled.eval(OUTCOME, input).ok().flatten() else {
            return Decided::default();
        };
        let Outcome { allowed, decided_by, .. } = Outcome::of_result(&outcome);
        let decided_by = if decided_by.is_empty() {
            vec![outcome["reason"].as_str().unwrap_or("default decision").to_string()]
        } else {
            decided_by
        };
        let messages = outcome["messages"]
            .as_array()
            .map(|m| m.iter().filter_map(Value::as_str).map(String::from).collect())
            .unwrap_or_default();
        Decided { allowed, decided_by, messages }
    }
}

/// What the proposed bundle decides for an input, and whether the baseline allows it.
#[derive(Clone, Debug)]
struct Verdict {
    now: Decided,
    live: Option<bool>,
}

/// A replay fed batch by batch (as the stored objects are read), so that memory holds one
/// batch of events and one small verdict per distinct input, not every recorded decision. Each
/// batch's new distinct inputs are evaluated on all cores.
pub struct Replay<'a> {
    proposed: &'a Compiled,
    /// What the proposed bundle's modules read and where their decision rules are.
    sources: Sources,
    baseline: Option<&'a Baseline<'a>>,
    report: Report,
    /// Input digest → what the proposed bundle and the baseline decide.
    decided: HashMap<[u8; 32], Verdict>,
    groups: BTreeMap<(String, Vec<String>, Vec<String>), Group>,
}

impl<'a> Replay<'a> {
    /// A replay of `system`'s decisions against `proposed` (whose modules' [`sources`] are
    /// `sources`), compared with what was recorded or with what `baseline` decides.
    pub fn new(
        system: &str,
        proposed: &'a Compiled,
        sources: Sources,
        baseline: Option<&'a Baseline<'a>>,
    ) -> Self {
        Replay {
            proposed,
            sources,
            baseline,
            report: Report {
                system: system.to_string(),
                baseline: baseline.map_or_else(|| "recorded".to_string(), |b| b.name.clone()),
                ..Report::default()
            },
            decided: HashMap::new(),
            groups: BTreeMap::new(),
        }
    }

    /// Replay one batch of recorded events (as stored), in order.
    pub fn add(&mut self, events: &[Value]) {
        use rayon::prelude::*;
        let digests: Vec<[u8; 32]> = events
            .par_iter()
            .map(|e| Sha256::digest(serde_json::to_vec(&e["input"]).unwrap_or_default()).into())
            .collect();
        let mut fresh: Vec<([u8; 32], &Value)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (digest, event) in digests.iter().zip(events) {
            if !self.decided.contains_key(digest) && seen.insert(*digest) {
                fresh.push((*digest, &event["input"]));
            }
        }
        let (proposed, baseline) = (self.proposed, self.baseline);
        let verdicts: Vec<([u8; 32], Verdict)> = fresh
            .par_iter()
            .map(|(digest, input)| {
                let live = baseline.and_then(|b| Decided::of(b.compiled, input).allowed);
                (*digest, Verdict { now: Decided::of(proposed, input), live })
            })
            .collect();
        self.decided.extend(verdicts);
        for (digest, event) in digests.iter().zip(events) {
            self.count(event, digest);
        }
    }

    fn count(&mut self, event: &Value, digest: &[u8; 32]) {
        let report = &mut self.report;
        report.replayed += 1;
        let recorded = Recorded::of(event);
        let Some(Verdict { now, live }) = self.decided.get(digest) else { return };
        let then = match self.baseline {
            None => recorded.allowed,
            Some(_) => {
                if live.is_some() && recorded.allowed.is_some() && *live != recorded.allowed {
                    report.drift += 1;
                }
                *live
            }
        };
        // Fields the masks erased that the proposed policy reads: what it would decide with
        // them is not known, whatever it decides without them.
        let unknown: Vec<&str> = recorded
            .erased
            .iter()
            .map(String::as_str)
            .filter(|p| reads_pointer(&self.sources.reads, p))
            .collect();
        let (Some(then), Some(allowed)) = (then, now.allowed) else {
            report.errors += 1;
            return;
        };
        let masked = !unknown.is_empty();
        let change = if masked {
            report.masked += 1;
            format!("cannot replay: input masked at {} (read by the proposed policy)", unknown.join(", "))
        } else if then == allowed {
            report.unchanged += 1;
            return;
        } else if allowed {
            report.newly_allowed += 1;
            "newly allowed".to_string()
        } else {
            report.newly_denied += 1;
            "newly denied".to_string()
        };
        let (proposed, rules) = (self.proposed, &self.sources.rules);
        let key = (change, now.decided_by.clone(), now.messages.clone());
        let group = self.groups.entry(key).or_insert_with_key(|(change, decided_by, messages)| Group {
            change: change.clone(),
            decided_by: decided_by.clone(),
            messages: messages.clone(),
            // Found once per group, on its first input: the deciding messages' rules.
            rules: if masked {
                Vec::new()
            } else {
                deciding_rules(proposed, rules, &event["input"], messages)
            },
            count: 0,
            examples: Vec::new(),
        });
        group.count += 1;
        if group.examples.len() < EXAMPLES {
            group.examples.push(format!("{} {}", recorded.time, recorded.decision_id));
        }
    }

    /// The report of everything added.
    pub fn finish(self) -> Report {
        let mut report = self.report;
        report.distinct_inputs = self.decided.len();
        report.groups = self.groups.into_values().collect();
        report.groups.sort_by(|a, b| b.count.cmp(&a.count).then(a.change.cmp(&b.change)));
        report
    }
}

/// Combine the reports of shards (`--shard i/n`) into one per System: counts add up, groups
/// with the same change, sources and messages merge (examples kept up to the usual few).
/// `distinct_inputs` adds up too, so it is an upper bound when shards share inputs.
pub fn merge(reports: Vec<Report>) -> Vec<Report> {
    let mut by_system: BTreeMap<(String, String), Report> = BTreeMap::new();
    for r in reports {
        let into = by_system.entry((r.system.clone(), r.baseline.clone())).or_insert_with(|| Report {
            system: r.system.clone(),
            baseline: r.baseline.clone(),
            ..Report::default()
        });
        into.replayed += r.replayed;
        into.distinct_inputs += r.distinct_inputs;
        into.unchanged += r.unchanged;
        into.newly_denied += r.newly_denied;
        into.newly_allowed += r.newly_allowed;
        into.errors += r.errors;
        into.masked += r.masked;
        into.drift += r.drift;
        for g in r.groups {
            match into
                .groups
                .iter_mut()
                .find(|h| (&h.change, &h.decided_by, &h.messages) == (&g.change, &g.decided_by, &g.messages))
            {
                Some(h) => {
                    h.count += g.count;
                    let room = EXAMPLES.saturating_sub(h.examples.len());
                    h.examples.extend(g.examples.into_iter().take(room));
                }
                None => into.groups.push(g),
            }
        }
    }
    let mut out: Vec<Report> = by_system.into_values().collect();
    for r in &mut out {
        r.groups.sort_by(|a, b| b.count.cmp(&a.count).then(a.change.cmp(&b.change)));
    }
    out
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
            for rule in &g.rules {
                out.push_str(&format!("  - rule `{rule}`\n"));
            }
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
            "{}: {} decisions replayed ({} distinct inputs) against {}: {} unchanged, {} newly denied, {} newly allowed, {} not replayable (masked input), {} errors\n",
            r.system, r.replayed, r.distinct_inputs, r.baseline, r.unchanged, r.newly_denied, r.newly_allowed, r.masked, r.errors
        ));
        if r.baseline != "recorded" {
            out.push_str(&format!(
                "  {} decided differently by the live bundle than recorded (data or time changed, not this change)\n",
                r.drift
            ));
        }
        for g in &r.groups {
            out.push_str(&format!("  {} × {} — decided by {}\n", g.count, g.change, g.decided_by.join(", ")));
            for m in &g.messages {
                out.push_str(&format!("      {m}\n"));
            }
            for rule in &g.rules {
                out.push_str(&format!("      rule {rule}\n"));
            }
            for e in &g.examples {
                out.push_str(&format!("      e.g. {e}\n"));
            }
        }
    }
    out
}
