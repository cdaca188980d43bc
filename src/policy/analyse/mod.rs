//! The compile gate: the checks OPA's compiler runs on a bundle, on regorus's AST.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::Capabilities;

mod model;
mod recursion;
mod safety;
mod source;

pub use model::{Parsed, at};

/// Parse one Rego v1 module as OPA's parser would take it (regorus's parser, with edict's
/// corrections where the two differ: see `model`).
pub fn parse(label: &str, text: &str) -> Result<Parsed, CompileError> {
    model::parse(label, text)
}
mod structure;
mod typecheck;
pub mod types;

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

/// The compile gate, with the modules it parsed kept by content: a bundle whose Stack changed
/// parses only that Stack's modules and the generated ones again.
#[derive(Default)]
pub struct Gate {
    parsed: Mutex<HashMap<[u8; 32], Parse>>,
}

/// A module parsed once, shared by every bundle that holds it.
type Parse = Arc<Result<model::Parsed, CompileError>>;

/// One compiler stage: it adds the errors it finds.
type Stage<'a> = &'a dyn Fn(&mut Vec<CompileError>);

/// Modules a gate keeps parsed before it starts over, so a long run does not grow without end.
const PARSED_LIMIT: usize = 20_000;

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kept = self.parsed.lock().map(|p| p.len()).unwrap_or_default();
        f.debug_struct("Gate").field("parsed", &kept).finish()
    }
}

impl Gate {
    /// A gate with nothing parsed yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn parse(&self, label: &str, text: &str) -> Parse {
        let mut h = Sha256::new();
        h.update(label.as_bytes());
        h.update([0]);
        h.update(text.as_bytes());
        let key: [u8; 32] = h.finalize().into();
        if let Some(hit) = self.parsed.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return hit;
        }
        let parsed = Arc::new(model::parse(label, text));
        if let Ok(mut c) = self.parsed.lock() {
            if c.len() >= PARSED_LIMIT {
                c.clear();
            }
            c.insert(key, parsed.clone());
        }
        parsed
    }

    /// Check modules compiled together, as [`check_modules`] does.
    pub fn check(&self, modules: &[(String, String)], caps: &Capabilities) -> Vec<CompileError> {
        let parsed: Vec<_> = modules.iter().map(|(label, text)| self.parse(label, text)).collect();
        let mut errors: Vec<CompileError> =
            parsed.iter().filter_map(|p| p.as_ref().as_ref().err().cloned()).collect();
        if !errors.is_empty() {
            errors.sort();
            return errors;
        }
        let parsed: Vec<&model::Parsed> = parsed.iter().filter_map(|p| p.as_ref().as_ref().ok()).collect();
        check_parsed(&parsed, caps)
    }
}

fn check_parsed(parsed: &[&model::Parsed], caps: &Capabilities) -> Vec<CompileError> {
    let mut errors = Vec::new();
    let program = model::Program::new(parsed);
    let stages: [Stage; 12] = [
        &|e| structure::keyword_overrides(&program, e),
        &|e| structure::duplicate_imports(&program, e),
        &|e| structure::local_declarations(&program, e),
        &|e| structure::print_calls(&program, e),
        &|e| structure::with_targets(&program, caps, e),
        &|e| structure::rule_conflicts(&program, e),
        &|e| structure::undefined_functions(&program, caps, e),
        &|e| safety::check_heads(&program, caps, e),
        &|e| safety::check_bodies(&program, caps, e),
        &|e| recursion::recursion(&program, e),
        &|e| typecheck::check_types(&program, caps, e),
        &|e| typecheck::deprecated(&program, caps, e),
    ];
    for stage in stages {
        stage(&mut errors);
        if !errors.is_empty() {
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
            return errors;
        }
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
}
