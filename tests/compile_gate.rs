//! Differential test of edict's compile gate against OPA's own compiler (issue 8, "How it is
//! shown"): every case of `tests/data/rego_gate/` (see its README), plus the bundle of every
//! example System and of every precedence-table fixture, is compiled by OPA v1.20.2
//! (`scripts/opa_compile.py`, all cases in one Python run) and checked by
//! `edict::policy::check_modules`.
//!
//! - Accept/reject must agree on every case.
//! - On the rejected cases, the set of (error code, file, line) must agree on at least 95%;
//!   every other case is listed, with its reason, in `known-differences.json`, and a listed
//!   case that now agrees is a failure too.
//!
//! The expected verdicts are OPA's, never written by hand. Needs the venv of `scripts/setup.sh`
//! (see `common::python`).

mod common;

#[allow(dead_code)]
#[path = "data/conformance/precedence_table.rs"]
mod table;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use edict::engine::workspace::Workspace;
use edict::policy::{Capabilities, check_modules};
use serde::Deserialize;
use serde_json::json;

/// The classes of the corpus (its directories): the OPA error codes that make a rejected case
/// count for the class, and how many rejected and accepted cases the class must have.
const CLASSES: &[(&str, &[&str], usize, usize)] = &[
    ("parse", &[PARSE], 8, 4),
    ("unsafe", &[UNSAFE, COMPILE], 8, 4),
    ("undefined", &[TYPE, UNSAFE], 8, 4),
    ("builtins", &[TYPE], 8, 4),
    ("types", &[TYPE], 8, 4),
    ("recursion", &[RECURSION], 8, 4),
    ("conflicts", &[TYPE, COMPILE], 8, 4),
    ("refheads", &[TYPE, COMPILE], 8, 4),
    ("imports", &[COMPILE, PARSE], 8, 4),
    ("deprecated", &[TYPE], 8, 4),
    ("with", &[TYPE, COMPILE, UNSAFE], 8, 4),
    ("keywords", &[COMPILE], 8, 4),
    ("stages", &[PARSE, COMPILE, TYPE, UNSAFE, RECURSION], 8, 0),
    ("valid", &[], 0, 8),
    ("examples", &[], 0, 3),
    ("mutations", &[PARSE, COMPILE, TYPE, UNSAFE, RECURSION], 8, 0),
];

/// Small edits a person makes by mistake, applied to each Policy module of the examples: each
/// gives one generated case (where the module has the text to edit), judged by OPA like the rest.
const MUTATIONS: &[(&str, &str, &str)] = &[
    ("misspelt_input", "input.", "inptu."),
    ("count_of_number", "count(", "count(1, "),
    ("sprintf_without_values", "sprintf(", "sprintf(1 + "),
    ("dropped_binding", "some ", "not "),
    ("renamed_rule_reference", "contains ", "contains undefined_helper(1) == "),
    ("number_for_string", "startswith(", "startswith(3, "),
    ("deprecated_builtin", "count(", "any(["),
];

const PARSE: &str = "rego_parse_error";
const COMPILE: &str = "rego_compile_error";
const TYPE: &str = "rego_type_error";
const UNSAFE: &str = "rego_unsafe_var_error";
const RECURSION: &str = "rego_recursion_error";

const MIN_CASES: usize = 150;
/// Rejected cases on which the errors must agree.
const MIN_AGREEMENT: f64 = 0.95;

fn corpus_dir() -> PathBuf {
    common::root().join("tests/data/rego_gate")
}

// ---------------------------------------------------------------------------------------
// The cases.

struct Case {
    /// `class/file` for the corpus, `examples/...` for the generated ones.
    name: String,
    class: String,
    /// (label, Rego text), compiled together.
    modules: Vec<(String, String)>,
}

/// Every `*.rego` file below the corpus directory, by path (the rules of the README, the
/// same as `opa_compile.py --corpus`).
fn corpus() -> Vec<Case> {
    let mut files = Vec::new();
    rego_files(&corpus_dir(), &mut files);
    let mut cases: Vec<Case> = files
        .iter()
        .map(|path| {
            let rel = path.strip_prefix(corpus_dir()).expect("below the corpus").to_string_lossy();
            let name = rel.trim_end_matches(".rego").replace('\\', "/");
            let (class, _) =
                name.split_once('/').unwrap_or_else(|| panic!("{name}: not in a class directory"));
            let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let file = path.file_name().expect("file name").to_string_lossy().into_owned();
            Case { class: class.to_string(), modules: split_modules(&file, &text), name }
        })
        .collect();
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    cases
}

fn rego_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rego_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rego") {
            out.push(path);
        }
    }
}

/// A file's modules: split at `# module: LABEL` lines, or the whole file under its name.
fn split_modules(file: &str, text: &str) -> Vec<(String, String)> {
    let mut modules: Vec<(String, String)> = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in text.split_inclusive('\n') {
        let label = line
            .trim_end()
            .strip_prefix("# module: ")
            .filter(|l| !l.is_empty() && !l.contains(char::is_whitespace));
        match label {
            Some(label) => modules.extend(current.replace((label.to_string(), String::new()))),
            None => {
                if let Some((_, body)) = current.as_mut() {
                    body.push_str(line);
                }
            }
        }
    }
    modules.extend(current);
    if modules.is_empty() { vec![(file.to_string(), text.to_string())] } else { modules }
}

/// The bundle of every example System and of every precedence-table fixture: everything in
/// the repository that edict builds must pass OPA's compiler, and edict's gate.
fn generated() -> Vec<Case> {
    let mut cases = Vec::new();
    let ws = Workspace::load(&[common::root().join("examples/acme")], "local").expect("examples load");
    for (key, build) in &ws.builds {
        let input =
            build.input.as_ref().unwrap_or_else(|| panic!("{key} did not resolve: {:#?}", build.problems));
        cases.push(Case {
            name: format!("examples/acme/{key}"),
            class: "examples".into(),
            modules: edict::bundle::build(input).modules(),
        });
    }
    assert!(cases.len() >= 3, "only {} example Systems", cases.len());
    for fixture in table::FIXTURES {
        cases.push(Case {
            name: format!("examples/precedence/{}", fixture.name),
            class: "examples".into(),
            modules: edict::bundle::build(&table::bundle_input(fixture)).modules(),
        });
    }
    cases.extend(mutations(&cases));
    cases
}

/// Each mutation applied once to each example Policy module (not to the generated ones), in
/// the bundle it belongs to.
fn mutations(examples: &[Case]) -> Vec<Case> {
    let mut out = Vec::new();
    for case in examples.iter().filter(|c| c.name.starts_with("examples/acme/")) {
        for (m, (label, text)) in case.modules.iter().enumerate() {
            if label.starts_with("main/") || label.starts_with("system/") {
                continue;
            }
            for (name, from, to) in MUTATIONS {
                if !text.contains(from) {
                    continue;
                }
                let mut modules = case.modules.clone();
                modules[m].1 = text.replacen(from, to, 1);
                out.push(Case {
                    name: format!(
                        "mutations/{}/{label}/{name}",
                        case.name.trim_start_matches("examples/acme/")
                    ),
                    class: "mutations".into(),
                    modules,
                });
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// The two verdicts.

/// (code, file, line) of one error; OPA's "error limit reached" has no file and line 0.
type Place = (String, String, usize);

#[derive(Clone, Debug, PartialEq)]
enum Verdict {
    Accepted,
    Rejected(BTreeSet<Place>),
}

impl Verdict {
    fn codes(&self) -> BTreeSet<&str> {
        match self {
            Verdict::Accepted => BTreeSet::new(),
            Verdict::Rejected(errors) => errors.iter().map(|(c, _, _)| c.as_str()).collect(),
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Accepted => f.write_str("accepted"),
            Verdict::Rejected(errors) => {
                let list: Vec<String> =
                    errors.iter().map(|(c, file, line)| format!("{file}:{line} {c}")).collect();
                write!(f, "rejected: {}", list.join(", "))
            }
        }
    }
}

#[derive(Deserialize)]
struct OpaResult {
    name: String,
    ok: bool,
    errors: Vec<OpaError>,
}

#[derive(Deserialize)]
struct OpaError {
    code: String,
    file: Option<String>,
    line: usize,
    message: String,
}

/// OPA's verdict on every case, in one run of `opa_compile.py`.
fn opa_verdicts(cases: &[Case]) -> Vec<(Verdict, Vec<String>)> {
    let script = common::root().join("scripts/opa_compile.py");
    let input =
        json!(cases.iter().map(|c| json!({"name": c.name, "modules": c.modules})).collect::<Vec<_>>());
    let mut child = Command::new(common::python())
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || stdin.write_all(input.to_string().as_bytes()));
    let out = child.wait_with_output().expect("opa_compile.py runs");
    writer.join().expect("writer thread").expect("write the cases");
    assert!(
        out.status.success(),
        "{} failed ({}):\n{}",
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<OpaResult> = serde_json::from_slice(&out.stdout).expect("opa_compile.py prints JSON");
    assert_eq!(results.len(), cases.len(), "one OPA verdict per case");
    results
        .into_iter()
        .zip(cases)
        .map(|(r, case)| {
            assert_eq!(r.name, case.name, "OPA's verdicts come in case order");
            let unparsed: Vec<&str> =
                r.errors.iter().filter(|e| e.code == "unparsed").map(|e| e.message.as_str()).collect();
            assert!(
                unparsed.is_empty(),
                "{}: opa_compile.py could not read OPA's errors: {unparsed:?}",
                r.name
            );
            let messages = r.errors.iter().map(|e| format!("{}: {}", e.code, e.message)).collect();
            if r.ok {
                assert!(r.errors.is_empty(), "{}: accepted with errors", r.name);
                return (Verdict::Accepted, messages);
            }
            assert!(!r.errors.is_empty(), "{}: rejected without errors", r.name);
            let places = r.errors.into_iter().map(|e| (e.code, e.file.unwrap_or_default(), e.line)).collect();
            (Verdict::Rejected(places), messages)
        })
        .collect()
}

fn edict_verdict(case: &Case) -> (Verdict, Vec<String>) {
    let errors = check_modules(&case.modules, Capabilities::latest());
    if errors.is_empty() {
        return (Verdict::Accepted, Vec::new());
    }
    let messages = errors.iter().map(|e| e.to_string()).collect();
    let places = errors.into_iter().map(|e| (e.code.as_str().to_string(), e.file, e.line)).collect();
    (Verdict::Rejected(places), messages)
}

// ---------------------------------------------------------------------------------------
// Known differences.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KnownDifference {
    case: String,
    reason: String,
}

fn known_differences() -> BTreeMap<String, String> {
    listed("known-differences.json")
}

/// Cases where edict's accept/reject verdict is still not OPA's: gaps in the gate that are
/// known and not yet closed (the issue stays open while this list is not empty).
fn open_gaps() -> BTreeMap<String, String> {
    listed("open-gaps.json")
}

fn listed(file: &str) -> BTreeMap<String, String> {
    let path = corpus_dir().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let list: Vec<KnownDifference> =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut known = BTreeMap::new();
    for d in list {
        assert!(!d.reason.trim().is_empty(), "{}: known difference {} has no reason", path.display(), d.case);
        assert!(
            known.insert(d.case.clone(), d.reason).is_none(),
            "{}: {} listed twice",
            path.display(),
            d.case
        );
    }
    known
}

// ---------------------------------------------------------------------------------------

/// Checks that the corpus is what the issue asks for, by OPA's verdicts: enough cases, enough
/// rejected ones in every class (with the codes of the class), enough valid near-misses.
fn corpus_shape(cases: &[Case], opa: &[(Verdict, Vec<String>)]) -> Vec<String> {
    let mut problems = Vec::new();
    if cases.len() < MIN_CASES {
        problems.push(format!("only {} cases, want at least {MIN_CASES}", cases.len()));
    }
    for case in cases {
        if !CLASSES.iter().any(|(class, ..)| *class == case.class) {
            problems.push(format!("{}: class {:?} is not in CLASSES", case.name, case.class));
        }
    }
    for (class, codes, min_rejected, min_accepted) in CLASSES {
        let verdicts: Vec<&Verdict> =
            cases.iter().zip(opa).filter(|(c, _)| c.class == *class).map(|(_, (v, _))| v).collect();
        let accepted = verdicts.iter().filter(|v| ***v == Verdict::Accepted).count();
        let counted = verdicts
            .iter()
            .filter(|v| **v != &Verdict::Accepted && v.codes().iter().all(|c| codes.contains(c)))
            .count();
        eprintln!(
            "class {class:<11} {:>3} cases: {accepted:>3} accepted, {:>3} rejected ({counted} with {codes:?})",
            verdicts.len(),
            verdicts.len() - accepted,
        );
        if counted < *min_rejected {
            problems
                .push(format!("class {class}: {counted} cases rejected with {codes:?}, want {min_rejected}"));
        }
        if accepted < *min_accepted {
            problems.push(format!("class {class}: {accepted} cases accepted, want {min_accepted}"));
        }
    }
    problems
}

/// One case where edict and OPA differ: its name, both verdicts, both sets of messages.
type Row<'a> = (&'a str, Verdict, Verdict, Vec<String>, Vec<String>);

#[test]
fn edict_compile_gate_agrees_with_opa() {
    let mut cases = corpus();
    assert!(!cases.is_empty(), "no case in {}", corpus_dir().display());
    cases.extend(generated());
    let opa = opa_verdicts(&cases);

    let shape = corpus_shape(&cases, &opa);
    assert!(shape.is_empty(), "the corpus is not what the issue asks for:\n{}", shape.join("\n"));

    // Everything in the repository's examples is valid Rego.
    for (case, (verdict, messages)) in cases.iter().zip(&opa) {
        if case.class == "examples" {
            assert_eq!(verdict, &Verdict::Accepted, "OPA refuses {}: {messages:#?}", case.name);
        }
    }

    let known = known_differences();
    let gaps = open_gaps();
    let mut open = 0;
    let mut verdict_diffs = Vec::new();
    let mut error_diffs = Vec::new();
    let mut stale = Vec::new();
    let rejected = opa.iter().filter(|(v, _)| *v != Verdict::Accepted).count();
    let mut listed_rejected = 0;
    for (case, (theirs, their_messages)) in cases.iter().zip(&opa) {
        let (ours, our_messages) = edict_verdict(case);
        let row = (case.name.as_str(), theirs.clone(), ours.clone(), their_messages.clone(), our_messages);
        let both_rejected = *theirs != Verdict::Accepted && ours != Verdict::Accepted;
        if (*theirs == Verdict::Accepted) != (ours == Verdict::Accepted) {
            if gaps.contains_key(&case.name) {
                open += 1;
            } else {
                verdict_diffs.push(row);
            }
        } else if gaps.contains_key(&case.name) {
            stale.push(format!("{}: edict now agrees with OPA: remove it from open-gaps.json", case.name));
        } else if both_rejected && known.contains_key(&case.name) {
            listed_rejected += 1;
            if *theirs == ours {
                stale.push(format!(
                    "{}: edict now agrees with OPA: remove it from known-differences.json",
                    case.name
                ));
            }
        } else if *theirs != ours {
            error_diffs.push(row);
        }
    }
    for name in gaps.keys() {
        if !cases.iter().any(|c| c.name == *name) {
            stale.push(format!("{name}: listed in open-gaps.json, but there is no such case"));
        }
    }
    for name in known.keys() {
        match cases.iter().zip(&opa).find(|(c, _)| c.name == *name) {
            None => {
                stale.push(format!("{name}: listed in known-differences.json, but there is no such case"))
            }
            Some((_, (Verdict::Accepted, _))) => {
                stale.push(format!("{name}: listed in known-differences.json, but OPA accepts it"))
            }
            Some(_) => {}
        }
    }

    let mut report = String::new();
    let render = |title: &str, rows: &[Row]| {
        // Columns as wide as their widest cell; each row's messages follow it, indented.
        let w1 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(4);
        let w2 = rows.iter().map(|r| r.1.to_string().len()).max().unwrap_or(0).max(3);
        let mut out = format!("\n{title} ({}):\n", rows.len());
        out += &format!("{:<w1$} | {:<w2$} | edict\n", "case", "OPA");
        out += &format!("{}-+-{}-+-{}\n", "-".repeat(w1), "-".repeat(w2), "-".repeat(w2));
        for (name, theirs, ours, their_messages, our_messages) in rows {
            out += &format!("{name:<w1$} | {:<w2$} | {ours}\n", theirs.to_string());
            for m in their_messages {
                out += &format!("    OPA:   {}\n", m.replace('\n', "\n           "));
            }
            for m in our_messages {
                out += &format!("    edict: {}\n", m.replace('\n', "\n           "));
            }
        }
        out
    };
    if !verdict_diffs.is_empty() {
        report += &render("accept/reject differs and the case is not an open gap", &verdict_diffs);
    }
    if !error_diffs.is_empty() {
        report += &render(
            "errors (code, file, line) differ and the case is not in known-differences.json",
            &error_diffs,
        );
    }
    if !stale.is_empty() {
        report += &format!("\nknown-differences.json is out of date:\n{}\n", stale.join("\n"));
    }
    let agreement = if rejected == 0 { 1.0 } else { 1.0 - listed_rejected as f64 / rejected as f64 };
    if agreement < MIN_AGREEMENT {
        report += &format!(
            "\nerrors agree on {:.1}% of the {rejected} rejected cases ({listed_rejected} known differences), want {:.0}%\n",
            agreement * 100.0,
            MIN_AGREEMENT * 100.0
        );
    }
    eprintln!(
        "{} cases: {rejected} rejected by OPA; {} accept/reject differences ({open} open gaps listed); {} error differences; {listed_rejected} known",
        cases.len(),
        verdict_diffs.len(),
        error_diffs.len(),
    );
    assert!(report.is_empty(), "edict's compile gate disagrees with OPA:{report}");
}

/// The gate checks a bundle unit by unit (a Stack's modules, the System's, the entrypoint),
/// each once per content; OPA checks it whole. Both must say the same of every case, and a
/// gate that checked other bundles before (its caches warm) must say what a fresh one says.
#[test]
fn checking_unit_by_unit_says_what_checking_the_whole_says() {
    let mut cases = corpus();
    cases.extend(generated());
    let caps = Capabilities::latest();
    let warm = edict::policy::Gate::new();
    let mut multi_unit_refusals = 0;
    for case in &cases {
        let whole = edict::policy::check_whole(&case.modules, caps);
        assert_eq!(check_modules(&case.modules, caps), whole, "{}: fresh gate", case.name);
        assert_eq!(warm.check(&case.modules, caps), whole, "{}: warm gate", case.name);
        if case.modules.len() > 3 && !whole.is_empty() {
            multi_unit_refusals += 1;
        }
    }
    assert!(multi_unit_refusals >= 10, "only {multi_unit_refusals} refused bundles of several units");
}
