//! What the checks read: parsed modules, every rule with its full path and kind, and how a
//! name in a module resolves (a local variable, a rule of the package, an import, `input`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use regorus::Value;
use regorus::unstable::{Expr, Literal, Module, Parser, Query, Rule, RuleHead, Source, Span};

use super::{CompileError, ErrorCode, source};

/// One parsed module.
pub struct Parsed {
    /// The module's label (its path in the bundle).
    pub label: String,
    /// regorus's syntax tree.
    pub module: Module,
    /// The package without `data` (`["stacks", "base"]`).
    pub package: Vec<String>,
    /// Imports that shadow an earlier one, found before regorus parsed the module.
    pub shadowing_imports: Vec<CompileError>,
    /// The constant prefixes (without `data`) of every `data` reference the module makes,
    /// through imports too: what other modules it may read (see `units`).
    pub reads: Vec<Vec<String>>,
}

/// What the gate keeps of a module between checks: where it sits and what it reads, enough to
/// place it in its unit and to key its unit's verdict. Its syntax tree is kept apart, in a
/// bounded cache: at 10,000 Systems the trees of every module held 164 MiB.
#[derive(Clone, Debug)]
pub struct Outline {
    /// As [`Parsed::package`].
    pub package: Vec<String>,
    /// As [`Parsed::reads`].
    pub reads: Vec<Vec<String>>,
}

impl Parsed {
    /// What the gate keeps of this module between checks.
    pub fn outline(&self) -> Outline {
        Outline { package: self.package.clone(), reads: self.reads.clone() }
    }
}

/// Parse one Rego v1 module.
pub fn parse(label: &str, text: &str) -> Result<Parsed, CompileError> {
    let fail = |e: anyhow::Error| {
        let found = crate::policy::rego::RegoError::from_engine(&e);
        // regorus refuses `input` and `data` as names while parsing; OPA's compiler refuses them
        // in its keyword stage, with its own words.
        let (code, message) = match found.message.strip_suffix(" cannot be shadowed") {
            Some(name @ ("input" | "data")) if found.col <= 1 => {
                (ErrorCode::Compile, format!("rules must not shadow {name} (use a different rule name)"))
            }
            Some(name @ ("input" | "data")) => (
                ErrorCode::Compile,
                format!("variables must not shadow {name} (use a different variable name)"),
            ),
            _ => (ErrorCode::Parse, found.message),
        };
        CompileError {
            file: label.to_string(),
            line: found.line.max(1),
            col: found.col.max(1),
            code,
            message,
        }
    };
    let (text, shadowing_imports) = source::pre_imports(label, text)?;
    let text = source::with_var_indexes(&source::template_strings(&source::default_values(&text)));
    let source = Source::from_contents(label.to_string(), text).map_err(fail)?;
    let mut parser = Parser::new(&source).map_err(fail)?;
    parser.enable_rego_v1().map_err(fail)?;
    let module = parser.parse().map_err(fail)?;
    let package = match path_of(&module.package.refr) {
        Some(parts) => parts.into_iter().skip_while(|p| p == "data").collect(),
        None => Vec::new(),
    };
    for rule in &module.policy {
        match rule.as_ref() {
            // OPA's parser refuses a default value that is not a constant.
            Rule::Default { value, .. } => {
                let mut found = None;
                walk_expr(value, &mut |e| match e {
                    Expr::Var { .. } if found.is_none() => found = Some("var"),
                    Expr::Call { .. }
                    | Expr::ArrayCompr { .. }
                    | Expr::SetCompr { .. }
                    | Expr::ObjectCompr { .. } => found = Some("ref"),
                    _ => {}
                });
                if let Some(what) = found {
                    let (line, col) = at(rule.span());
                    return Err(CompileError {
                        file: label.to_string(),
                        line,
                        col,
                        code: ErrorCode::Parse,
                        message: format!("illegal default rule (value cannot contain {what})"),
                    });
                }
            }
            // OPA's parser refuses keywords as rule names; regorus takes `contains := 1`.
            Rule::Spec { head, .. } => {
                let refr = match head {
                    RuleHead::Compr { refr, .. }
                    | RuleHead::Set { refr, .. }
                    | RuleHead::Func { refr, .. } => refr,
                };
                if let Expr::Var { span, .. } = refr.as_ref()
                    && matches!(
                        span.text(),
                        "contains"
                            | "if"
                            | "in"
                            | "every"
                            | "some"
                            | "not"
                            | "with"
                            | "as"
                            | "import"
                            | "package"
                            | "default"
                            | "else"
                    )
                {
                    let (line, col) = at(span);
                    return Err(CompileError {
                        file: label.to_string(),
                        line,
                        col,
                        code: ErrorCode::Parse,
                        message: format!("{} keyword cannot be used for rule name", span.text()),
                    });
                }
            }
        }
    }
    let reads = data_reads(&module);
    Ok(Parsed { label: label.to_string(), module, package, shadowing_imports, reads })
}

/// The constant prefixes of the `data` references of a module: `data.a.b[x].c` reads `a.b`, an
/// import `data.a as b` reads `a` and so does `b.c`. Names of the module's own package are not
/// listed: they read the package, which `units` groups by itself.
fn data_reads(module: &Module) -> Vec<Vec<String>> {
    root_reads(module, "data")
}

/// The constant prefixes of the `input` references of a module, as [`Parsed::reads`] are of
/// `data`: `input.a.b[x].c` reads `[a, b]`, a bare `input` (passed to a function, say) reads
/// `[]`, that is all of it; imports of `input` count too.
pub fn input_reads(module: &Module) -> Vec<Vec<String>> {
    root_reads(module, "input")
}

fn root_reads(module: &Module, root: &str) -> Vec<Vec<String>> {
    let mut aliases: HashMap<String, Vec<String>> = HashMap::new();
    let mut out = Vec::new();
    for (alias, path) in imports(module) {
        if path[0] == root {
            let path = path[1..].to_vec();
            aliases.insert(alias, path.clone());
            out.push(path);
        }
    }
    for rule in &module.policy {
        walk_refs(rule, &mut |e| {
            let Some((head, parts)) = ref_parts(e) else { return };
            let path = match head.text() {
                name if name == root => Vec::new(),
                name => match aliases.get(name) {
                    Some(p) => p.clone(),
                    None => return,
                },
            };
            out.push(with_keys(path, parts));
        });
    }
    out.sort();
    out.dedup();
    out
}

/// The imports of `data` and `input` of a module, each as the name it binds and its path
/// (`import data.a.b as c` binds `c` to `[data, a, b]`; without `as`, the last step names it).
fn imports(module: &Module) -> impl Iterator<Item = (String, Vec<String>)> + '_ {
    module.imports.iter().filter_map(|import| {
        let path = path_of(&import.refr)?;
        if !matches!(path.first().map(String::as_str), Some("data" | "input")) {
            return None;
        }
        let alias = import.r#as.as_ref().map(|s| s.text().to_string()).or_else(|| path.last().cloned())?;
        Some((alias, path))
    })
}

/// The variables a rule's arguments name (a function's, or a default function's).
pub fn arg_names(rule: &Rule) -> BTreeSet<String> {
    let args: &[_] = match rule {
        Rule::Spec { head: RuleHead::Func { args, .. }, .. } | Rule::Default { args, .. } => args,
        _ => &[],
    };
    let mut out = BTreeSet::new();
    for a in args {
        walk_expr(a, &mut |e| {
            if let Expr::Var { span, .. } = e {
                out.insert(span.text().to_string());
            }
        });
    }
    out
}

/// `path` followed by the constant steps of a reference, up to its first other index: what a
/// reference certainly reads (`a.b[x].c` reads `a.b`).
pub fn with_keys(mut path: Vec<String>, parts: Vec<Part<'_>>) -> Vec<String> {
    for p in parts {
        match p {
            Part::Key(k) => path.push(k),
            Part::Expr(_) => break,
        }
    }
    path
}

/// What a rule defines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleKind {
    /// One value (`p := 1`, `p if …`, `a.b.c := 1`).
    Value,
    /// A partial set (`p contains x`).
    Set,
    /// A rule whose head ends in a variable key (`p[x] := y`).
    Object,
    /// A function of this many arguments.
    Function(usize),
}

/// One rule of the program.
pub struct RuleDef<'a> {
    /// Index of its module.
    pub module: usize,
    /// The rule.
    pub rule: &'a Rule,
    /// Its path from `data`, up to the first variable in its head (`["p", "allow"]`).
    pub path: Vec<String>,
    /// What it defines.
    pub kind: RuleKind,
    /// Whether it is a `default` rule.
    pub default: bool,
}

impl RuleDef<'_> {
    /// Where OPA locates errors about the rule: the start of the rule.
    pub fn span(&self) -> &Span {
        self.rule.span()
    }

    /// `data.p.allow`
    pub fn name(&self) -> String {
        dotted(&self.path)
    }
}

/// `data.a.b["c-d"]`
pub fn dotted(path: &[String]) -> String {
    format!("data.{}", crate::policy::rego::rego_ref(path))
}

/// All modules compiled together: the modules checked, then the modules they read (their
/// context), which are indexed but not checked again.
pub struct Program<'a> {
    /// The modules, each part in label order (as OPA sorts them): first the checked ones.
    pub modules: Vec<&'a Parsed>,
    /// Every rule, those of checked modules first.
    pub rules: Vec<RuleDef<'a>>,
    /// How many of `rules` belong to checked modules.
    pub checked: usize,
    /// Rules by path.
    pub by_path: BTreeMap<Vec<String>, Vec<usize>>,
    /// Names each module resolves to a path (`input`, rules of its package, imports).
    pub globals: Vec<HashMap<String, Vec<String>>>,
    /// The rules each rule reads, computed once (see `structure::dependencies`).
    pub dependencies: std::sync::OnceLock<Vec<BTreeSet<usize>>>,
}

impl<'a> Program<'a> {
    /// Index the rules of parsed modules, all to be checked.
    pub fn new(parsed: &[&'a Parsed]) -> Self {
        Self::with_context(parsed, &[])
    }

    /// Index the rules of the modules to check and of the modules they read.
    pub fn with_context(checked: &[&'a Parsed], context: &[&'a Parsed]) -> Self {
        let by_label = |part: &[&'a Parsed]| {
            let mut v = part.to_vec();
            v.sort_by(|a, b| a.label.cmp(&b.label));
            v
        };
        let mut modules = by_label(checked);
        let own_modules = modules.len();
        modules.extend(by_label(context));
        let mut rules = Vec::new();
        let mut own_rules = 0;
        for (m, p) in modules.iter().enumerate() {
            for rule in &p.module.policy {
                if let Some(def) = rule_def(m, p, rule) {
                    rules.push(def);
                }
            }
            if m + 1 == own_modules {
                own_rules = rules.len();
            }
        }
        let mut by_path: BTreeMap<Vec<String>, Vec<usize>> = BTreeMap::new();
        for (i, r) in rules.iter().enumerate() {
            by_path.entry(r.path.clone()).or_default().push(i);
        }
        let mut package_rules: HashMap<&[String], BTreeSet<String>> = HashMap::new();
        for r in &rules {
            let pkg = &modules[r.module].package;
            if let Some(first) = r.path.get(pkg.len()) {
                package_rules.entry(pkg.as_slice()).or_default().insert(first.clone());
            }
        }
        // Only checked modules resolve names.
        let globals = modules[..own_modules]
            .iter()
            .map(|p| {
                let mut g = HashMap::new();
                g.insert("input".to_string(), vec!["input".to_string()]);
                g.insert("data".to_string(), vec!["data".to_string()]);
                for name in package_rules.get(p.package.as_slice()).into_iter().flatten() {
                    let mut path = vec!["data".to_string()];
                    path.extend(p.package.iter().cloned());
                    path.push(name.clone());
                    g.insert(name.clone(), path);
                }
                g.extend(imports(&p.module));
                g
            })
            .collect();
        Program {
            modules,
            rules,
            checked: own_rules,
            by_path,
            globals,
            dependencies: std::sync::OnceLock::new(),
        }
    }

    /// The rules of the checked modules (their indexes are their places in `rules`).
    pub fn own_rules(&self) -> &[RuleDef<'a>] {
        &self.rules[..self.checked]
    }

    /// The checked modules.
    pub fn own_modules(&self) -> &[&'a Parsed] {
        &self.modules[..self.globals.len()]
    }

    /// Rules whose path is `path` or starts with it, and the rule at a prefix of `path`
    /// (what a reference to `path` may read).
    pub fn rules_for(&self, path: &[String]) -> Vec<usize> {
        let mut out = Vec::new();
        for n in 1..path.len() {
            if let Some(found) = self.by_path.get(&path[..n]) {
                out.extend(found.iter().copied());
            }
        }
        for (p, found) in self.by_path.range(path.to_vec()..) {
            if !p.starts_with(path) {
                break;
            }
            out.extend(found.iter().copied());
        }
        out
    }

    /// The functions at exactly `path`.
    pub fn functions_at(&self, path: &[String]) -> Vec<usize> {
        self.by_path
            .get(path)
            .map(|v| {
                v.iter().copied().filter(|&i| matches!(self.rules[i].kind, RuleKind::Function(_))).collect()
            })
            .unwrap_or_default()
    }
}

fn rule_def<'a>(module: usize, parsed: &Parsed, rule: &'a Rule) -> Option<RuleDef<'a>> {
    let (refr, kind, default) = match rule {
        Rule::Default { refr, args, .. } => {
            (refr, if args.is_empty() { RuleKind::Value } else { RuleKind::Function(args.len()) }, true)
        }
        Rule::Spec { head: RuleHead::Func { refr, args, .. }, .. } => {
            (refr, RuleKind::Function(args.len()), false)
        }
        Rule::Spec { head: RuleHead::Set { refr, .. }, .. } => (refr, RuleKind::Set, false),
        Rule::Spec { head: RuleHead::Compr { refr, .. }, .. } => (refr, RuleKind::Value, false),
    };
    let (head, parts) = ref_parts(refr)?;
    let mut path = parsed.package.clone();
    path.push(head.text().to_string());
    let mut kind = kind;
    for part in parts {
        match part {
            Part::Key(k) => path.push(k),
            Part::Expr(_) => {
                if kind == RuleKind::Value {
                    kind = RuleKind::Object;
                }
                break;
            }
        }
    }
    Some(RuleDef { module, rule, path, kind, default })
}

/// One step of a reference after its head.
pub enum Part<'e> {
    /// A constant key (`.b` or `["b"]`).
    Key(String),
    /// Any other index (`[x]`, `[1]`, `[f(x)]`).
    Expr(&'e Expr),
}

/// A reference as its head variable and its steps (`a.b[x]` is `a`, [`b`, `x`]).
pub fn ref_parts(expr: &Expr) -> Option<(&Span, Vec<Part<'_>>)> {
    let mut parts = Vec::new();
    let mut cur = expr;
    loop {
        match cur {
            Expr::Var { span, .. } => {
                parts.reverse();
                return Some((span, parts));
            }
            Expr::RefDot { refr, field, .. } => {
                parts.push(Part::Key(string_of(&field.1).unwrap_or_else(|| field.0.text().to_string())));
                cur = refr;
            }
            Expr::RefBrack { refr, index, .. } => {
                match index.as_ref() {
                    Expr::String { value, .. } | Expr::RawString { value, .. } => {
                        parts.push(Part::Key(string_of(value).unwrap_or_default()))
                    }
                    other => parts.push(Part::Expr(other)),
                }
                cur = refr;
            }
            _ => return None,
        }
    }
}

/// A reference whose steps are all constant, as its components (`data.a.b` is `[data, a, b]`).
pub fn path_of(expr: &Expr) -> Option<Vec<String>> {
    let (head, parts) = ref_parts(expr)?;
    let mut out = vec![head.text().to_string()];
    for p in parts {
        match p {
            Part::Key(k) => out.push(k),
            Part::Expr(_) => return None,
        }
    }
    Some(out)
}

fn string_of(v: &Value) -> Option<String> {
    v.as_string().ok().map(|s| s.to_string())
}

/// Call `f` on `expr` and every expression inside it, including comprehension bodies.
pub fn walk_expr<'e>(expr: &'e Expr, f: &mut dyn FnMut(&'e Expr)) {
    f(expr);
    match expr {
        Expr::Array { items, .. } | Expr::Set { items, .. } => items.iter().for_each(|i| walk_expr(i, f)),
        Expr::Object { fields, .. } => {
            for (_, k, v) in fields {
                walk_expr(k, f);
                walk_expr(v, f);
            }
        }
        Expr::ArrayCompr { term, query, .. } | Expr::SetCompr { term, query, .. } => {
            walk_expr(term, f);
            walk_query(query, f);
        }
        Expr::ObjectCompr { key, value, query, .. } => {
            walk_expr(key, f);
            walk_expr(value, f);
            walk_query(query, f);
        }
        Expr::Call { fcn, params, .. } => {
            walk_expr(fcn, f);
            params.iter().for_each(|p| walk_expr(p, f));
        }
        Expr::UnaryExpr { expr, .. } => walk_expr(expr, f),
        Expr::RefDot { refr, .. } => walk_expr(refr, f),
        Expr::RefBrack { refr, index, .. } => {
            walk_expr(refr, f);
            walk_expr(index, f);
        }
        Expr::BinExpr { lhs, rhs, .. }
        | Expr::BoolExpr { lhs, rhs, .. }
        | Expr::ArithExpr { lhs, rhs, .. }
        | Expr::AssignExpr { lhs, rhs, .. } => {
            walk_expr(lhs, f);
            walk_expr(rhs, f);
        }
        Expr::Membership { key, value, collection, .. } => {
            if let Some(k) = key {
                walk_expr(k, f);
            }
            walk_expr(value, f);
            walk_expr(collection, f);
        }
        _ => {}
    }
}

/// Call `f` on every expression of a query, including `with` modifiers and nested queries.
pub fn walk_query<'e>(query: &'e Query, f: &mut dyn FnMut(&'e Expr)) {
    for stmt in &query.stmts {
        match &stmt.literal {
            Literal::SomeVars { .. } => {}
            Literal::SomeIn { key, value, collection, .. } => {
                if let Some(k) = key {
                    walk_expr(k, f);
                }
                walk_expr(value, f);
                walk_expr(collection, f);
            }
            Literal::Expr { expr, .. } | Literal::NotExpr { expr, .. } => walk_expr(expr, f),
            Literal::Every { domain, query, .. } => {
                walk_expr(domain, f);
                walk_query(query, f);
            }
        }
        for w in &stmt.with_mods {
            walk_expr(&w.refr, f);
            walk_expr(&w.r#as, f);
        }
    }
}

/// Call `f` on every expression of a rule but the name its head defines: the head's indexes,
/// arguments and value, and all its bodies.
pub fn walk_rule<'e>(rule: &'e Rule, f: &mut dyn FnMut(&'e Expr)) {
    let indexes = |refr: &'e Expr, f: &mut dyn FnMut(&'e Expr)| {
        if let Some((_, parts)) = ref_parts(refr) {
            for p in parts {
                if let Part::Expr(e) = p {
                    walk_expr(e, f);
                }
            }
        }
    };
    match rule {
        Rule::Default { args, value, .. } => {
            args.iter().for_each(|a| walk_expr(a, f));
            walk_expr(value, f);
        }
        Rule::Spec { head, bodies, .. } => {
            match head {
                RuleHead::Compr { refr, assign, .. } => {
                    indexes(refr, f);
                    if let Some(a) = assign {
                        walk_expr(&a.value, f);
                    }
                }
                RuleHead::Set { refr, key, .. } => {
                    indexes(refr, f);
                    if let Some(k) = key {
                        walk_expr(k, f);
                    }
                }
                RuleHead::Func { refr, args, assign, .. } => {
                    indexes(refr, f);
                    args.iter().for_each(|a| walk_expr(a, f));
                    if let Some(a) = assign {
                        walk_expr(&a.value, f);
                    }
                }
            }
            for body in bodies {
                if let Some(a) = &body.assign {
                    walk_expr(&a.value, f);
                }
                walk_query(&body.query, f);
            }
        }
    }
}

/// Call `f` on every whole reference of a rule (`data.a.b[x]`, not also `data.a` and `data`)
/// and every function a call names; the indexes of references are visited in turn.
pub fn walk_refs<'e>(rule: &'e Rule, f: &mut dyn FnMut(&'e Expr)) {
    // Expressions that are the inner part of a longer reference are skipped.
    let mut inner: std::collections::HashSet<*const Expr> = std::collections::HashSet::new();
    walk_rule(rule, &mut |e| {
        if let Expr::RefDot { refr, .. } | Expr::RefBrack { refr, .. } = e {
            inner.insert(refr.as_ref() as *const Expr);
        }
    });
    walk_rule(rule, &mut |e| {
        if matches!(e, Expr::Var { .. } | Expr::RefDot { .. } | Expr::RefBrack { .. })
            && !inner.contains(&(e as *const Expr))
        {
            f(e);
        }
    });
}

/// Where an expression starts as OPA sees it: regorus starts a call's span at its `(` and an
/// operator's at the operator; OPA points at the first token (`count` in `count(5) > 0`).
pub fn start(expr: &Expr) -> (usize, usize) {
    match expr {
        Expr::Call { fcn, .. } => start(fcn),
        Expr::BoolExpr { lhs, .. }
        | Expr::ArithExpr { lhs, .. }
        | Expr::BinExpr { lhs, .. }
        | Expr::AssignExpr { lhs, .. } => start(lhs).min(at(expr.span())),
        Expr::RefDot { refr, .. } | Expr::RefBrack { refr, .. } => start(refr).min(at(expr.span())),
        _ => at(expr.span()),
    }
}

/// 1-based line and column of a span, the column counted in characters as OPA counts it
/// (regorus counts a tab as four columns).
pub fn at(span: &Span) -> (usize, usize) {
    let text = span.source.contents();
    let start = span.start as usize;
    let col = text.get(..start).map(|before| {
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        before[line_start..].chars().count() + 1
    });
    (span.line as usize, col.unwrap_or(span.col as usize))
}
