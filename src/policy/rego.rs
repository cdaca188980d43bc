//! Everything edict asks of a Rego engine (regorus): parse a module, check that a bundle's
//! modules compile together, run Rego tests, evaluate a decision.
//!
//! Errors carry the module label and the 1-based line and column regorus reports, so that
//! callers can map them back to the manifest a person edits.

use std::fmt;

use regorus::unstable::{Expr, Rule, RuleHead};
use regorus::{Engine, Value};

/// A Rego error at a place in a module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegoError {
    /// The module label given to the engine (empty when regorus named no place).
    pub file: String,
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// 1-based column (0 when unknown).
    pub col: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for RegoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}:{}: {}", self.file, self.line, self.col, self.message)
        } else {
            write!(f, "{}", self.message)
        }
    }
}

impl std::error::Error for RegoError {}

impl RegoError {
    /// Read regorus's error text (`--> file:line:col`, the source line, a caret, `error: msg`).
    pub fn from_engine(err: &anyhow::Error) -> Self {
        let text = format!("{err:#}");
        let mut found = RegoError { file: String::new(), line: 0, col: 0, message: String::new() };
        for line in text.lines() {
            let line = line.trim();
            if let Some(place) = line.strip_prefix("--> ") {
                let mut parts = place.rsplitn(3, ':');
                let col = parts.next().and_then(|c| c.parse().ok());
                let ln = parts.next().and_then(|l| l.parse().ok());
                if let (Some(col), Some(ln), Some(file)) = (col, ln, parts.next()) {
                    found.file = file.to_string();
                    found.line = ln;
                    found.col = col;
                }
            } else if let Some(msg) = line.strip_prefix("error: ") {
                found.message = msg.to_string();
            }
        }
        if found.message.is_empty() {
            found.message =
                text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ");
        }
        found
    }
}

/// A rule head found in a module: its name and where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleSite {
    /// The first component of the rule's reference (`deny`, `test_x`, `mask`).
    pub name: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// Whether the rule is a plain partial set rule (`name contains x if ...`).
    pub set: bool,
    /// For `name contains {"allowed": <literal>, …}`: the literal as written and where.
    pub allowed: Option<(String, usize, usize)>,
}

/// A string literal contributed to a `mask` rule, and where it is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaskLiteral {
    /// The JSON pointer (or the `path` of an object-form mask).
    pub pointer: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
}

/// What edict needs to know about one module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleInfo {
    /// Package components without `data` (`["stacks", "base", "rules"]`).
    pub package: Vec<String>,
    /// Line and column of the `package` keyword.
    pub package_at: (usize, usize),
    /// Every rule head.
    pub rules: Vec<RuleSite>,
    /// Literal pointers of `mask` rules.
    pub masks: Vec<MaskLiteral>,
}

/// Parse one Rego v1 module, as OPA's parser takes it (through the compile gate's parser).
/// The message of an error starts with OPA's error code.
pub fn parse_module(label: &str, text: &str) -> Result<ModuleInfo, RegoError> {
    let parsed = crate::policy::parse(label, text).map_err(|e| RegoError {
        file: e.file,
        line: e.line,
        col: e.col,
        message: format!("{}: {}", e.code, e.message),
    })?;
    Ok(module_info(&parsed))
}

/// What edict needs to know about a module already parsed.
pub fn module_info(parsed: &crate::policy::Parsed) -> ModuleInfo {
    let module = &parsed.module;
    let mut info = ModuleInfo {
        package: parsed.package.clone(),
        package_at: crate::policy::at(&module.package.span),
        rules: Vec::new(),
        masks: Vec::new(),
    };
    for rule in &module.policy {
        collect_rule(rule, &mut info);
    }
    info
}

fn collect_rule(rule: &Rule, info: &mut ModuleInfo) {
    let (refr, key, set) = match rule {
        Rule::Spec { head: RuleHead::Compr { refr, .. }, .. }
        | Rule::Spec { head: RuleHead::Func { refr, .. }, .. } => (refr, None, false),
        Rule::Spec { head: RuleHead::Set { refr, key, .. }, .. } => {
            (refr, key.as_ref(), matches!(refr.as_ref(), Expr::Var { .. }))
        }
        Rule::Default { refr, .. } => (refr, None, false),
    };
    let Some(name) = base_name(refr) else { return };
    let span = rule.span();
    if name == "mask"
        && let Some(pointer) = key.and_then(|k| mask_pointer(k))
    {
        info.masks.push(pointer);
    }
    let allowed = key.and_then(|k| allowed_literal(k));
    let (line, col) = crate::policy::at(span);
    info.rules.push(RuleSite { name, line, col, set, allowed });
}

fn base_name(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Var { span, .. } => Some(span.text().to_string()),
        Expr::RefDot { refr, .. } | Expr::RefBrack { refr, .. } => base_name(refr),
        _ => None,
    }
}

/// The `allowed` field of an object literal, when its value is a literal.
fn allowed_literal(expr: &Expr) -> Option<(String, usize, usize)> {
    let Expr::Object { fields, .. } = expr else { return None };
    fields.iter().find_map(|(_, k, v)| match k.as_ref() {
        Expr::String { value, .. } | Expr::RawString { value, .. }
            if value.as_string().ok().map(|s| s.as_ref() == "allowed") == Some(true) =>
        {
            match v.as_ref() {
                Expr::String { span, value, .. } | Expr::RawString { span, value, .. } => {
                    let text = serde_json::Value::String(value.as_string().ok()?.to_string()).to_string();
                    let (line, col) = crate::policy::at(span);
                    Some((text, line, col))
                }
                Expr::Number { span, .. } | Expr::Bool { span, .. } | Expr::Null { span, .. } => {
                    let (line, col) = crate::policy::at(span);
                    Some((span.text().to_string(), line, col))
                }
                _ => None,
            }
        }
        _ => None,
    })
}

fn mask_pointer(expr: &Expr) -> Option<MaskLiteral> {
    match expr {
        Expr::String { span, value, .. } | Expr::RawString { span, value, .. } => {
            let (line, col) = crate::policy::at(span);
            Some(MaskLiteral { pointer: value.as_string().ok()?.to_string(), line, col })
        }
        Expr::Object { fields, .. } => fields.iter().find_map(|(_, k, v)| match k.as_ref() {
            Expr::String { value, .. }
                if value.as_string().ok().map(|s| s.as_ref() == "path") == Some(true) =>
            {
                mask_pointer(v)
            }
            _ => None,
        }),
        _ => None,
    }
}

/// A set of modules (label, text) and data loaded into one engine.
pub struct Compiled {
    engine: Engine,
    /// The data document loaded.
    data: Value,
    /// One rule compiled to regorus's bytecode VM too ([`Compiled::with_vm`]).
    vm: Option<Vm>,
}

/// A rule compiled to regorus's register VM (RVM), and VMs loaded with it that are not in use:
/// an evaluation takes one (or loads a new one) and puts it back.
struct Vm {
    rule: String,
    program: std::sync::Arc<regorus::rvm::Program>,
    idle: std::sync::Mutex<Vec<regorus::rvm::RegoVM>>,
    /// Evaluations the VM failed and the interpreter took over.
    fallbacks: std::sync::atomic::AtomicUsize,
}

impl Vm {
    /// Evaluate the rule for `input`, a new VM being loaded with `data`.
    fn eval(&self, data: &Value, input: Value) -> anyhow::Result<Value> {
        let taken = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut vm = match taken {
            Some(vm) => vm,
            None => {
                let mut vm = regorus::rvm::RegoVM::new();
                vm.load_program(self.program.clone());
                vm.set_data(data.clone())?;
                vm
            }
        };
        vm.set_input(input);
        let value = vm.execute_entry_point_by_name(&self.rule);
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(vm);
        }
        Ok(value?)
    }
}

/// Load modules and data into a fresh engine and prepare `entrypoint` (e.g. `data.main.main`),
/// which resolves every rule the entrypoint depends on.
pub fn compile(
    modules: &[(String, String)],
    data: &serde_json::Value,
    entrypoint: &str,
) -> Result<Compiled, RegoError> {
    let mut engine = Engine::new();
    for (label, text) in modules {
        engine.add_policy(label.clone(), text.clone()).map_err(|e| RegoError::from_engine(&e))?;
    }
    let data = to_value(data)?;
    engine.add_data(data.clone()).map_err(|e| RegoError::from_engine(&e))?;
    let rule: regorus::Rc<str> = entrypoint.into();
    engine.compile_with_entrypoint(&rule).map_err(|e| RegoError::from_engine(&e))?;
    Ok(Compiled { engine, data, vm: None })
}

impl Compiled {
    /// Evaluate a rule (`data.main.outcome`) for one input. Undefined is `None`.
    pub fn eval(
        &self,
        rule: &str,
        input: &serde_json::Value,
    ) -> Result<Option<serde_json::Value>, RegoError> {
        let input = to_value(input)?;
        if let Some(vm) = self.vm.as_ref().filter(|vm| vm.rule == rule) {
            // Where the VM fails, the interpreter decides (and reports its own error).
            match vm.eval(&self.data, input.clone()) {
                Ok(value) => return from_value(value),
                Err(_) => _ = vm.fallbacks.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            }
        }
        let mut engine = self.engine.clone();
        engine.set_input(input);
        let value = engine.eval_rule(rule.to_string()).map_err(|e| RegoError::from_engine(&e))?;
        from_value(value)
    }

    /// Whether evaluations of `rule` run in the VM ([`Compiled::with_vm`]).
    pub fn runs_in_vm(&self, rule: &str) -> bool {
        self.vm.as_ref().is_some_and(|vm| vm.rule == rule)
    }

    /// How many evaluations the VM failed and the interpreter took over.
    pub fn vm_fallbacks(&self) -> usize {
        self.vm.as_ref().map_or(0, |vm| vm.fallbacks.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Also compile `rule` (`data.main.outcome`) to regorus's register VM, which evaluates it
    /// several times faster than the tree-walking interpreter (3.8× per input on the benches'
    /// reference System): for work that evaluates one rule over many inputs (replay). Evaluations of
    /// `rule` then run in the VM; other rules, and any input the VM fails on, in the
    /// interpreter. A bundle the VM cannot compile keeps the interpreter for everything.
    pub fn with_vm(mut self, rule: &str) -> Self {
        let entry: regorus::Rc<str> = rule.into();
        let program = self.engine.clone().compile_with_entrypoint(&entry).ok().and_then(|policy| {
            regorus::languages::rego::compiler::Compiler::compile_from_policy(&policy, &[rule]).ok()
        });
        self.vm = program.map(|program| Vm {
            rule: rule.to_string(),
            program,
            idle: Default::default(),
            fallbacks: Default::default(),
        });
        self
    }
}

/// The outcome of one Rego test rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestResult {
    /// `data.<package>.test_<name>`.
    pub name: String,
    /// Line and column of the test rule in its module.
    pub at: (usize, usize),
    /// `None` when it passed; otherwise why it failed.
    pub failure: Option<String>,
}

/// Run the `test_` rules of `tests` (label, text) with `modules` loaded, like `opa test`.
pub fn run_tests(
    modules: &[(String, String)],
    tests: &(String, String),
) -> Result<Vec<TestResult>, RegoError> {
    let info = parse_module(&tests.0, &tests.1)?;
    let mut engine = Engine::new();
    for (label, text) in modules.iter().chain(std::iter::once(tests)) {
        engine.add_policy(label.clone(), text.clone()).map_err(|e| RegoError::from_engine(&e))?;
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut results = Vec::new();
    for rule in info.rules.iter().filter(|r| r.name.starts_with("test_")) {
        if !seen.insert(rule.name.clone()) {
            continue;
        }
        let path = format!("data.{}.{}", rego_ref(&info.package), rule.name);
        let failure = match engine.eval_rule(path.clone()) {
            Ok(Value::Bool(true)) => None,
            Ok(Value::Undefined) => Some("undefined (a condition did not hold)".to_string()),
            Ok(v) => Some(format!("evaluated to {v}, not true")),
            Err(e) => Some(RegoError::from_engine(&e).message),
        };
        results.push(TestResult { name: path, at: (rule.line, rule.col), failure });
    }
    Ok(results)
}

/// Package components as a Rego reference body: `a.b["c-d"]`.
pub fn rego_ref(components: &[String]) -> String {
    let mut out = String::new();
    for (i, c) in components.iter().enumerate() {
        let ident = !c.is_empty()
            && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
            && !c.starts_with(|ch: char| ch.is_ascii_digit());
        if ident {
            if i > 0 {
                out.push('.');
            }
            out.push_str(c);
        } else {
            out.push_str(&format!("[{}]", serde_json::Value::String(c.clone())));
        }
    }
    out
}

fn to_value(v: &serde_json::Value) -> Result<Value, RegoError> {
    Value::from_json_str(&v.to_string()).map_err(|e| RegoError::from_engine(&e))
}

fn from_value(v: Value) -> Result<Option<serde_json::Value>, RegoError> {
    if v == Value::Undefined {
        return Ok(None);
    }
    let text = v.to_json_str().map_err(|e| RegoError::from_engine(&e))?;
    serde_json::from_str(&text).map(Some).map_err(|e| RegoError {
        file: String::new(),
        line: 0,
        col: 0,
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_reports_package_rules_and_masks() {
        let info = parse_module(
            "m.rego",
            "package stacks.base.system.log\n\nmask contains \"/input/a\"\nmask contains {\"op\": \"upsert\", \"path\": \"/x\", \"value\": 1}\nfoo := 1\n",
        )
        .expect("parses");
        assert_eq!(info.package, vec!["stacks", "base", "system", "log"]);
        assert_eq!(info.masks.len(), 2);
        // The column is that of the pointer text, just inside the quote.
        assert_eq!(info.masks[0], MaskLiteral { pointer: "/input/a".into(), line: 3, col: 16 });
        assert_eq!(info.masks[1].pointer, "/x");
        assert_eq!(
            info.rules.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            vec!["mask", "mask", "foo"]
        );
    }

    #[test]
    fn syntax_errors_have_line_and_column() {
        let err = parse_module("p.rego", "package x\n\ndeny contains msg if {\n  msg := \n}\n")
            .expect_err("invalid");
        assert_eq!(err.file, "p.rego");
        assert!(err.line >= 4, "{err:?}");
        assert!(err.col > 0, "{err:?}");
        assert!(!err.message.is_empty());
    }

    #[test]
    fn tests_pass_and_fail() {
        let modules = vec![("p.rego".to_string(), "package p\n\nallow if input.x == 1\n".to_string())];
        let tests = (
            "p_test.rego".to_string(),
            "package p_test\n\ntest_ok if data.p.allow with input as {\"x\": 1}\n\ntest_bad if data.p.allow with input as {\"x\": 2}\n"
                .to_string(),
        );
        let results = run_tests(&modules, &tests).expect("runs");
        assert_eq!(results.len(), 2);
        assert_eq!(results[0].failure, None);
        assert_eq!(results[1].name, "data.p_test.test_bad");
        assert_eq!(results[1].at, (5, 1));
        assert!(results[1].failure.is_some());
    }

    #[test]
    fn rego_ref_quotes_odd_components() {
        assert_eq!(rego_ref(&["a".into(), "b-c".into(), "1x".into()]), "a[\"b-c\"][\"1x\"]");
    }
}
