//! Differential check of `edict::select::glob` against OPA's `glob.match`.
//!
//! `tests/data/glob_cases.json` holds cases whose `matches` (or `error`)
//! values were produced by OPA's engine. Edict must agree with each, except
//! where a case carries an `edict` field: those pin known bugs of OPA's
//! engine (gobwas/glob v0.2.3), with OPA's answer in `matches` and edict's
//! (the documented semantics) in `edict`.

mod common;

use std::path::PathBuf;
use std::process::Command;

use edict::select::glob::Glob;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Case {
    pattern: String,
    #[serde(default)]
    value: String,
    matches: Option<bool>,
    #[serde(default)]
    error: bool,
    edict: Option<bool>,
}

fn cases_path() -> PathBuf {
    common::root().join("tests/data/glob_cases.json")
}

/// Fewer cases than this (an empty or truncated case list) fails every test of this file:
/// a differential test that compares nothing must not pass.
const MIN_CASES: usize = 60;

fn load_cases() -> Vec<Case> {
    let path = cases_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let cases: Vec<Case> =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()));
    assert!(cases.len() >= MIN_CASES, "{}: only {} cases, want {MIN_CASES}", path.display(), cases.len());
    cases
}

/// None when edict agrees with the case.
fn mismatch(case: &Case) -> Option<String> {
    let glob = Glob::parse(&case.pattern);
    if case.error {
        return glob.ok().map(|_| format!("{:?}: OPA rejects it, edict accepts it", case.pattern));
    }
    let Some(expected) = case.edict.or(case.matches) else {
        return Some(format!("{:?}: case has neither matches nor error", case.pattern));
    };
    match glob {
        Err(e) => Some(format!("{:?}: edict rejects it: {e}", case.pattern)),
        Ok(g) if g.matches(&case.value) != expected => Some(format!(
            "{:?} vs {:?}: expected {expected}, edict says {}",
            case.pattern, case.value, !expected
        )),
        Ok(_) => None,
    }
}

#[test]
fn edict_agrees_with_opa_cases() {
    let cases = load_cases();
    assert!(cases.iter().any(|c| c.error), "no error case");
    let failures: Vec<String> = cases.iter().filter_map(mismatch).collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases disagree:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn divergences_are_real_divergences() {
    let overrides: Vec<Case> = load_cases().into_iter().filter(|c| c.edict.is_some()).collect();
    assert!(!overrides.is_empty(), "no case with an `edict` override: nothing to check");
    for case in &overrides {
        assert_ne!(
            case.edict, case.matches,
            "{:?} vs {:?}: an `edict` override must differ from OPA's answer",
            case.pattern, case.value
        );
    }
}

#[test]
fn opa_agrees_with_cases() {
    let script = common::root().join("scripts/opa_glob.py");
    let output = Command::new(common::python())
        .arg(&script)
        .arg(cases_path())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{} failed ({}):\n{stdout}\n{stderr}", script.display(), output.status);
    // OPA checked every case ("0 passed, 0 failed" would be a pass on nothing).
    let want = format!("{} passed, 0 failed", load_cases().len());
    assert!(stdout.lines().any(|l| l.trim() == want), "want {want:?}:\n{stdout}");
}
