//! The compile gate: the checks OPA's compiler runs on a bundle, on regorus's AST.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::Capabilities;

mod model;
mod recursion;
mod safety;
mod source;

pub use model::{Parsed, at, input_reads};

/// Parse one Rego v1 module as OPA's parser would take it (regorus's parser, with edict's
/// corrections where the two differ: see `model`).
pub fn parse(label: &str, text: &str) -> Result<Parsed, CompileError> {
    model::parse(label, text)
}
mod structure;
mod typecheck;
pub mod types;
mod units;

use typecheck::RuleTypes;

/// OPA's error codes, as its compiler prints them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorCode {
    /// `rego_parse_error`
    Parse,
    /// `rego_compile_error`
    Compile,
    /// `rego_type_error`
    Type,
    /// `rego_unsafe_var_error`
    UnsafeVar,
    /// `rego_recursion_error`
    Recursion,
}

impl ErrorCode {
    /// OPA's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Parse => "rego_parse_error",
            ErrorCode::Compile => "rego_compile_error",
            ErrorCode::Type => "rego_type_error",
            ErrorCode::UnsafeVar => "rego_unsafe_var_error",
            ErrorCode::Recursion => "rego_recursion_error",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One error, at the token OPA would point at.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CompileError {
    /// The module's label (its path in the bundle).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// OPA's error code.
    pub code: ErrorCode,
    /// OPA's wording where it has one.
    pub message: String,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}: {}", self.file, self.line, self.col, self.code, self.message)
    }
}

/// Check modules (label, Rego v1 text) that are compiled together, as OPA compiles a bundle.
/// Like OPA, stops after the first compiler stage that finds errors; the errors are sorted.
pub fn check_modules(modules: &[(String, String)], caps: &Capabilities) -> Vec<CompileError> {
    Gate::default().check(modules, caps)
}

/// Check modules as one program, every stage over all of them at once, as OPA's compiler does:
/// what [`Gate::check`] must agree with (it checks unit by unit).
pub fn check_whole(modules: &[(String, String)], caps: &Capabilities) -> Vec<CompileError> {
    let parsed: Vec<Result<model::Parsed, CompileError>> =
        modules.iter().map(|(label, text)| model::parse(label, text)).collect();
    let mut errors: Vec<CompileError> = parsed.iter().filter_map(|p| p.as_ref().err().cloned()).collect();
    if !errors.is_empty() {
        errors.sort();
        return errors;
    }
    let parsed: Vec<&model::Parsed> = parsed.iter().filter_map(|p| p.as_ref().ok()).collect();
    let verdict = check_program(&model::Program::new(&parsed), caps, RuleTypes::new());
    limited(verdict.failed.map(|(_, e)| e).unwrap_or_default())
}

/// The compile gate, with what it parsed and checked kept by content: a module is outlined once
/// (parsed again only when a verdict needs its syntax tree and the tree left the cache), and a
/// unit of modules (a Stack's, a System's own, the entrypoint: see `units`) is checked
/// once per content of itself and of what it reads. A bundle whose Stack changed checks only
/// that Stack's unit and the generated entrypoint again.
#[derive(Default)]
pub struct Gate {
    /// Every module seen, by label and text: its outline, or why it does not parse.
    outlines: Mutex<HashMap<[u8; 32], Outlined>>,
    /// Syntax trees, only as many as [`TREES_LIMIT`] allows: a tree is needed only when a unit's
    /// verdict is computed, and the trees of every System's own modules are what made a gate
    /// large.
    trees: Mutex<Trees>,
    checked: Mutex<HashMap<[u8; 32], Arc<Verdict>>>,
}

/// A module's outline, or why it does not parse; shared by every bundle that holds it.
type Outlined = Arc<Result<model::Outline, CompileError>>;

/// Syntax trees in two generations: a tree used again moves to the young one, and when the
/// young one is full it becomes the old one and the old one is dropped. What is used often (the
/// modules of Stacks that many Systems share) stays; what is not leaves within two generations.
#[derive(Default)]
struct Trees {
    young: HashMap<[u8; 32], Arc<model::Parsed>>,
    old: HashMap<[u8; 32], Arc<model::Parsed>>,
}

impl Trees {
    fn get(&mut self, key: &[u8; 32]) -> Option<Arc<model::Parsed>> {
        if let Some(tree) = self.young.get(key) {
            return Some(tree.clone());
        }
        let tree = self.old.remove(key)?;
        self.insert(*key, tree.clone());
        Some(tree)
    }

    fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }

    fn insert(&mut self, key: [u8; 32], tree: Arc<model::Parsed>) {
        if self.young.len() >= TREES_LIMIT {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(key, tree);
    }
}

/// Syntax trees a gate keeps in each of its two generations.
const TREES_LIMIT: usize = 1_000;

/// One compiler stage: it adds the errors it finds.
type Stage<'a> = &'a dyn Fn(&mut Vec<CompileError>);

/// Outlines (and unit verdicts) a gate keeps before it starts over, so a long run does not grow
/// without end.
const OUTLINES_LIMIT: usize = 20_000;

/// What checking one unit found.
struct Verdict {
    /// The first stage that found errors, and all it found there.
    failed: Option<(usize, Vec<CompileError>)>,
    /// The value types of the unit's rules, once the type stage ran.
    types: RuleTypes,
    /// What units that read this one can see of each of its rules, by path (see [`exports`]).
    exports: Vec<(Vec<String>, [u8; 32])>,
}

/// What another unit can see of each rule of a unit: its path, kind, whether it is a default,
/// its value type and, for a rule without a body, its text (the constant keys of an object the
/// type checker reads). Sorted by path.
fn exports(program: &model::Program, types: &RuleTypes) -> Vec<(Vec<String>, [u8; 32])> {
    let mut out: Vec<(Vec<String>, [u8; 32])> = program
        .own_rules()
        .iter()
        .map(|def| {
            let mut h = Sha256::new();
            h.update(format!("{:?} {} {:?}", def.kind, def.default, types.get(&def.path)).as_bytes());
            if let regorus::unstable::Rule::Spec { bodies, .. } = def.rule
                && bodies.is_empty()
            {
                h.update(def.rule.span().text().as_bytes());
            }
            (def.path.clone(), h.finalize().into())
        })
        .collect();
    out.sort();
    out
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let outlines = lock(&self.outlines).len();
        let trees = lock(&self.trees).len();
        let checked = lock(&self.checked).len();
        f.debug_struct("Gate")
            .field("outlines", &outlines)
            .field("trees", &trees)
            .field("checked", &checked)
            .finish()
    }
}

impl Gate {
    /// A gate with nothing parsed yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The outline of every module, those not seen before parsed on all cores: their trees go
    /// into `fresh`, by index, for this check.
    fn outline_all(
        &self,
        modules: &[(String, String)],
        keys: &[[u8; 32]],
        fresh: &Mutex<HashMap<usize, Arc<model::Parsed>>>,
    ) -> Vec<Outlined> {
        cached_all(&self.outlines, keys, |i| {
            let (label, text) = &modules[i];
            Arc::new(model::parse(label, text).map(|parsed| {
                let outline = parsed.outline();
                lock(fresh).insert(i, Arc::new(parsed));
                outline
            }))
        })
    }

    /// The syntax tree of module `i`: parsed in this check, kept, or parsed again.
    fn tree(
        &self,
        i: usize,
        modules: &[(String, String)],
        keys: &[[u8; 32]],
        fresh: &Mutex<HashMap<usize, Arc<model::Parsed>>>,
    ) -> Arc<model::Parsed> {
        if let Some(tree) = lock(fresh).get(&i).cloned() {
            lock(&self.trees).insert(keys[i], tree.clone());
            return tree;
        }
        if let Some(tree) = lock(&self.trees).get(&keys[i]) {
            return tree;
        }
        let (label, text) = &modules[i];
        // Parsing is a function of the label and the text, and this module parsed before.
        let tree = Arc::new(model::parse(label, text).expect("a module with an outline parses again"));
        lock(fresh).insert(i, tree.clone());
        lock(&self.trees).insert(keys[i], tree.clone());
        tree
    }

    /// How many syntax trees the gate keeps.
    #[cfg(test)]
    fn trees_kept(&self) -> usize {
        lock(&self.trees).len()
    }

    /// How many unit verdicts the gate keeps.
    #[cfg(test)]
    fn verdicts_kept(&self) -> usize {
        lock(&self.checked).len()
    }

    /// Check modules compiled together, as [`check_modules`] does. Modules not parsed yet are
    /// parsed on all cores, and so are units that do not read each other (rayon: inside a
    /// pipeline that already builds Systems on every core, this adds no threads).
    pub fn check(&self, modules: &[(String, String)], caps: &Capabilities) -> Vec<CompileError> {
        let keys: Vec<[u8; 32]> = modules
            .iter()
            .map(|(label, text)| {
                let mut h = Sha256::new();
                h.update(label.as_bytes());
                h.update([0]);
                h.update(text.as_bytes());
                h.finalize().into()
            })
            .collect();
        let fresh = Mutex::new(HashMap::new());
        let outlined = self.outline_all(modules, &keys, &fresh);
        let mut errors: Vec<CompileError> =
            outlined.iter().filter_map(|p| p.as_ref().as_ref().err().cloned()).collect();
        if !errors.is_empty() {
            errors.sort();
            return errors;
        }
        let parsed: Vec<&model::Outline> = outlined.iter().filter_map(|p| p.as_ref().as_ref().ok()).collect();
        let units = units::units(&parsed);
        // Units in waves: a unit's wave comes after the waves of every unit it reads, so the
        // units of one wave are checked side by side.
        let mut wave = vec![0usize; units.len()];
        for (u, unit) in units.iter().enumerate() {
            wave[u] = unit.reads.iter().map(|&r| wave[r] + 1).max().unwrap_or(0);
        }
        let mut verdicts: Vec<Option<Arc<Verdict>>> = vec![None; units.len()];
        for w in 0..units.len() {
            let now: Vec<usize> = (0..units.len()).filter(|&u| wave[u] == w).collect();
            if now.is_empty() {
                break;
            }
            let done: Vec<Arc<Verdict>> = {
                let read =
                    |r: usize| verdicts[r].as_ref().expect("a unit's reads are checked in earlier waves");
                let unit_keys: Vec<[u8; 32]> =
                    now.iter().map(|&u| unit_key(&units[u], &keys, &parsed, read, caps)).collect();
                cached_all(&self.checked, &unit_keys, |i| {
                    let unit = &units[now[i]];
                    let tree = |m: usize| self.tree(m, modules, &keys, &fresh);
                    let members: Vec<Arc<model::Parsed>> = unit.members.iter().map(|&m| tree(m)).collect();
                    let context: Vec<Arc<model::Parsed>> =
                        unit.reads.iter().flat_map(|&r| units[r].members.iter().map(|&m| tree(m))).collect();
                    let members: Vec<&model::Parsed> = members.iter().map(|t| t.as_ref()).collect();
                    let context: Vec<&model::Parsed> = context.iter().map(|t| t.as_ref()).collect();
                    let mut types = RuleTypes::new();
                    for &r in &unit.reads {
                        types.extend(read(r).types.iter().map(|(p, t)| (p.clone(), t.clone())));
                    }
                    Arc::new(check_program(&model::Program::with_context(&members, &context), caps, types))
                })
            };
            for (u, verdict) in now.into_iter().zip(done) {
                verdicts[u] = Some(verdict);
            }
        }
        let verdicts: Vec<Arc<Verdict>> = verdicts.into_iter().flatten().collect();
        // OPA stops at the first stage that found errors anywhere.
        let first = verdicts.iter().filter_map(|v| v.failed.as_ref().map(|(stage, _)| *stage)).min();
        let errors = verdicts
            .iter()
            .filter_map(|v| v.failed.as_ref())
            .filter(|(stage, _)| Some(*stage) == first)
            .flat_map(|(_, e)| e.iter().cloned())
            .collect();
        limited(errors)
    }
}

/// The key of a unit's verdict: a function of its modules, of what it can see of the units it
/// reads (the rules at the paths it reads: their kinds, types and constant keys) and of the OPA
/// release. A Stack's change that keeps the kinds and types of the decisions the entrypoint
/// reads leaves the entrypoint's verdict as it was.
fn unit_key<'v>(
    unit: &units::Unit,
    keys: &[[u8; 32]],
    parsed: &[&model::Outline],
    read: impl Fn(usize) -> &'v Arc<Verdict>,
    caps: &Capabilities,
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(caps.version.as_bytes());
    let mut own: Vec<&[u8; 32]> = unit.members.iter().map(|&m| &keys[m]).collect();
    own.sort();
    for k in own {
        h.update(k);
    }
    let reads: Vec<&Vec<String>> = unit.members.iter().flat_map(|&m| parsed[m].reads.iter()).collect();
    for &r in &unit.reads {
        h.update([0]);
        for (path, shape) in &read(r).exports {
            if reads.iter().any(|read| units::nested(path, read)) {
                for part in path {
                    h.update(part.as_bytes());
                    h.update([1]);
                }
                h.update(shape);
            }
        }
    }
    h.finalize().into()
}

/// Run the compiler stages in OPA's order over the checked modules of a program, stopping at the
/// first that finds errors. `context` holds the types of the rules of the modules it reads.
fn check_program(program: &model::Program, caps: &Capabilities, context: RuleTypes) -> Verdict {
    let (failed, types) = run_stages(program, caps, context);
    // What readers see, whether or not this unit failed: their own stages resolve against it.
    let exports = exports(program, &types);
    Verdict { failed, types, exports }
}

/// The first stage that found errors (and all it found there), and the rules' value types once
/// the type stage ran.
fn run_stages(
    program: &model::Program,
    caps: &Capabilities,
    context: RuleTypes,
) -> (Option<(usize, Vec<CompileError>)>, RuleTypes) {
    let mut errors = Vec::new();
    let stages: [Stage; 10] = [
        &|e| structure::keyword_overrides(program, e),
        &|e| structure::duplicate_imports(program, e),
        &|e| structure::local_declarations(program, e),
        &|e| structure::print_calls(program, e),
        &|e| structure::with_targets(program, caps, e),
        &|e| structure::rule_conflicts(program, e),
        &|e| structure::undefined_functions(program, caps, e),
        &|e| safety::check_heads(program, caps, e),
        &|e| safety::check_bodies(program, caps, e),
        &|e| recursion::recursion(program, e),
    ];
    for (n, stage) in stages.iter().enumerate() {
        stage(&mut errors);
        if !errors.is_empty() {
            return (Some((n, errors)), RuleTypes::new());
        }
    }
    let types = typecheck::check_types(program, caps, context, &mut errors);
    let mut stage = stages.len();
    if errors.is_empty() {
        stage += 1;
        structure::deprecated(program, caps, &mut errors);
    }
    ((!errors.is_empty()).then_some((stage, errors)), types)
}

/// The values in `cache` under `keys`, those it lacks made by `make(i)` (on all cores when
/// more than one is missing) and kept. A cache past [`OUTLINES_LIMIT`] entries starts over, so a
/// long run does not grow without end.
fn cached_all<V: Clone + Send>(
    cache: &Mutex<HashMap<[u8; 32], V>>,
    keys: &[[u8; 32]],
    make: impl Fn(usize) -> V + Sync,
) -> Vec<V> {
    let found: Vec<Option<V>> = match cache.lock() {
        Ok(c) => keys.iter().map(|k| c.get(k).cloned()).collect(),
        Err(_) => vec![None; keys.len()],
    };
    let missing: Vec<usize> = (0..keys.len()).filter(|&i| found[i].is_none()).collect();
    let made: Vec<V> = if missing.len() > 1 {
        missing.par_iter().map(|&i| make(i)).collect()
    } else {
        missing.iter().map(|&i| make(i)).collect()
    };
    if let Ok(mut c) = cache.lock() {
        if c.len() + made.len() > OUTLINES_LIMIT {
            c.clear();
        }
        for (&i, v) in missing.iter().zip(&made) {
            c.insert(keys[i], v.clone());
        }
    }
    let mut made = made.into_iter();
    found.into_iter().map(|f| f.or_else(|| made.next()).expect("one made for each missing")).collect()
}

/// The value behind a lock, also after a panic elsewhere (what it guards stays consistent:
/// every change is one insert or one swap).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Errors as OPA prints them: sorted, once each, and no more than its limit.
fn limited(mut errors: Vec<CompileError>) -> Vec<CompileError> {
    errors.sort();
    errors.dedup();
    if errors.len() > ERROR_LIMIT {
        // OPA's compiler stops at its error limit and says so.
        errors.truncate(ERROR_LIMIT);
        errors.push(CompileError {
            file: String::new(),
            line: 0,
            col: 0,
            code: ErrorCode::Compile,
            message: "error limit reached".to_string(),
        });
    }
    errors
}

/// The number of errors OPA's compiler reports before it stops.
const ERROR_LIMIT: usize = 10;

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Vec<(ErrorCode, usize)> {
        let modules = vec![("p.rego".to_string(), text.to_string())];
        check_modules(&modules, Capabilities::latest()).into_iter().map(|e| (e.code, e.line)).collect()
    }

    #[test]
    fn valid_policies_pass() {
        let ok = "package p\n\nimport rego.v1\n\ndeny contains msg if {\n  some c in input.containers\n  not startswith(c.image, \"registry/\")\n  msg := sprintf(\"%s: bad image\", [c.name])\n}\n\nallow if count(deny) == 0\n\nf(x) := y if { y := x * 2 }\n\nnames := {n | some n in input.names}\n";
        assert_eq!(check(ok), vec![]);
    }

    #[test]
    fn the_issue_examples_are_refused() {
        assert_eq!(check("package p\n\nallow if {\n  count(5) > 0\n}\n"), vec![(ErrorCode::Type, 4)]);
        assert_eq!(check("package p\n\nallow if { z }\n"), vec![(ErrorCode::UnsafeVar, 3)]);
        assert_eq!(check("package p\n\nallow if { foo(1) }\n"), vec![(ErrorCode::Type, 3)]);
        assert_eq!(check("package p\n\nallow if { count(1, 2, 3) }\n"), vec![(ErrorCode::Type, 3)]);
        assert_eq!(
            check("package p\n\na if b\nb if a\n"),
            vec![(ErrorCode::Recursion, 3), (ErrorCode::Recursion, 4)]
        );
        assert_eq!(check("package p\n\nx := 1\nx contains 2\n"), vec![(ErrorCode::Type, 3)]);
        assert_eq!(check("package p\n\nallow if {\n  some x\n  input.y\n}\n"), vec![(ErrorCode::Compile, 4)]);
        assert_eq!(check("package p\n\nallow if any([true])\n"), vec![(ErrorCode::Type, 3)]);
        assert_eq!(check("package p\n\nallow if {\n  x := 1\n  x := 2\n}\n"), vec![(ErrorCode::Compile, 5)]);
        assert_eq!(check("package p\n\na.b := 1\na.b.c := 2\n"), vec![(ErrorCode::Type, 3)]);
    }

    fn bundle(stacks: &[&str]) -> Vec<(String, String)> {
        let mut modules: Vec<(String, String)> = stacks
            .iter()
            .enumerate()
            .map(|(i, rules)| (format!("stacks/s{i}/p.rego"), format!("package stacks.s{i}\n\n{rules}\n")))
            .collect();
        let reads: Vec<String> = (0..stacks.len()).map(|i| format!("data.stacks.s{i}.deny")).collect();
        modules.push(("main/main.rego".into(), format!("package main\n\nmain := [{}]\n", reads.join(", "))));
        modules
    }

    #[test]
    fn the_earliest_stage_wins_across_units() {
        let caps = Capabilities::latest();
        let gate = Gate::new();
        // A type error in one Stack, an unsafe variable in another: OPA reports only the unsafe
        // variable (safety runs before types), and so must a gate that checks each Stack alone.
        let both = bundle(&["deny contains 1 if count(5) > 0", "deny contains x if input.y", "deny := {}"]);
        let found = gate.check(&both, caps);
        assert_eq!(found, check_whole(&both, caps));
        assert_eq!(
            found.iter().map(|e| (e.code, e.file.as_str())).collect::<Vec<_>>(),
            vec![(ErrorCode::UnsafeVar, "stacks/s1/p.rego")]
        );
        // Mend the unsafe Stack: now the type error shows, from the cached unit.
        let one = bundle(&["deny contains 1 if count(5) > 0", "deny contains 1 if input.y", "deny := {}"]);
        let found = gate.check(&one, caps);
        assert_eq!(found, check_whole(&one, caps));
        assert_eq!(found.iter().map(|e| (e.code, e.line)).collect::<Vec<_>>(), vec![(ErrorCode::Type, 3)]);
    }

    #[test]
    fn a_unit_is_checked_with_the_types_of_what_it_reads() {
        let caps = Capabilities::latest();
        let gate = Gate::new();
        // The entrypoint's unit reads `deny` of a Stack checked on its own: its type (a number)
        // makes `count` refuse it, as OPA's checker would over the whole bundle.
        let mut modules = bundle(&["deny := 5"]);
        modules.push(("main/count.rego".into(), "package main\n\nn := count(data.stacks.s0.deny)\n".into()));
        let found = gate.check(&modules, caps);
        assert_eq!(found, check_whole(&modules, caps));
        assert_eq!(
            found.iter().map(|e| (e.code, e.file.as_str(), e.line)).collect::<Vec<_>>(),
            vec![(ErrorCode::Type, "main/count.rego", 3)]
        );
        // The same entrypoint after the Stack changed to a set: the Stack's new unit key changes
        // the entrypoint's, so the stale verdict is not reused.
        let mut mended = bundle(&["deny contains 5"]);
        mended.push(modules[2].clone());
        assert_eq!(gate.check(&mended, caps), vec![]);
    }

    #[test]
    fn a_stack_change_that_keeps_its_decisions_types_checks_only_that_stack() {
        let caps = Capabilities::latest();
        let gate = Gate::new();
        let before = bundle(&["deny contains \"a\" if input.x", "deny contains \"b\" if input.y"]);
        assert_eq!(gate.check(&before, caps), vec![]);
        assert_eq!(gate.verdicts_kept(), 3, "two Stacks and the entrypoint");
        // A new body and a new rule in the first Stack: its decisions are still a set of strings.
        let after =
            bundle(&["deny contains \"c\" if input.z\nhelper := 1", "deny contains \"b\" if input.y"]);
        assert_eq!(gate.check(&after, caps), vec![]);
        assert_eq!(gate.verdicts_kept(), 4, "only the changed Stack was checked again");
        // Its decisions become numbers: the entrypoint, which reads them, is checked again.
        let retyped = bundle(&["deny contains 1 if input.z", "deny contains \"b\" if input.y"]);
        assert_eq!(gate.check(&retyped, caps), check_whole(&retyped, caps));
        assert_eq!(gate.verdicts_kept(), 6);
    }

    #[test]
    fn trees_are_bounded_and_parsed_again_when_a_verdict_needs_them() {
        let caps = Capabilities::latest();
        let gate = Gate::new();
        let mut modules = bundle(&["deny := 5"]);
        modules.push(("main/count.rego".into(), "package main\n\nn := 1\n".into()));
        assert_eq!(gate.check(&modules, caps), vec![]);
        // Other bundles push the first one's trees out; only outlines and verdicts stay.
        for i in 0..TREES_LIMIT + 10 {
            assert_eq!(gate.check(&bundle(&[&format!("deny contains {i} if input.x")]), caps), vec![]);
        }
        assert!(gate.trees_kept() <= 2 * TREES_LIMIT, "{} trees kept", gate.trees_kept());
        // The entrypoint now counts the Stack's `deny`: checking it needs the Stack's tree again
        // (its unit's verdict is kept, its tree is not), and the number it holds is refused.
        modules[2].1 = "package main\n\nn := count(data.stacks.s0.deny)\n".into();
        let found = gate.check(&modules, caps);
        assert_eq!(found, check_whole(&modules, caps));
        assert_eq!(
            found.iter().map(|e| (e.code, e.file.as_str(), e.line)).collect::<Vec<_>>(),
            vec![(ErrorCode::Type, "main/count.rego", 3)]
        );
    }
}
