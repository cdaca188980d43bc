//! The compiler stages that look at names and shapes, before safety and types: keyword
//! overrides, imports, local declarations, `with` targets, rule conflicts, undefined
//! functions and recursion. Each says what OPA says, at the place OPA names.

use std::collections::BTreeSet;

use regorus::unstable::{AssignOp, Expr, Literal, Query, Rule, RuleHead, Span};

use super::model::{Program, RuleKind, arg_names, at, dotted, path_of, walk_expr, walk_rule};
use super::safety::declared_in;
use super::{CompileError, ErrorCode};
use crate::policy::Capabilities;

pub(super) fn error(
    program: &Program,
    module: usize,
    span: &Span,
    code: ErrorCode,
    message: String,
) -> CompileError {
    error_at(program, module, at(span), code, message)
}

fn error_at(
    program: &Program,
    module: usize,
    (line, col): (usize, usize),
    code: ErrorCode,
    message: String,
) -> CompileError {
    CompileError { file: program.modules[module].label.clone(), line, col, code, message }
}

/// The queries of a rule: its bodies, and every comprehension and `every` body in it (head
/// included).
pub(super) fn queries(rule: &Rule) -> Vec<&Query> {
    let mut out: Vec<&Query> = Vec::new();
    if let Rule::Spec { bodies, .. } = rule {
        out.extend(bodies.iter().map(|b| b.query.as_ref()));
    }
    walk_rule(rule, &mut |e| match e {
        Expr::ArrayCompr { query, .. } | Expr::SetCompr { query, .. } | Expr::ObjectCompr { query, .. } => {
            out.push(query.as_ref())
        }
        _ => {}
    });
    let mut i = 0;
    while i < out.len() {
        let q = out[i];
        for stmt in &q.stmts {
            if let Literal::Every { query, .. } = &stmt.literal
                && !out.iter().any(|seen| std::ptr::eq(*seen, query.as_ref()))
            {
                out.push(query.as_ref());
            }
        }
        i += 1;
    }
    out
}

/// `CheckKeywordOverrides`: in Rego v1, rules and variables must not be named `input` or `data`.
pub fn keyword_overrides(program: &Program, errors: &mut Vec<CompileError>) {
    for def in program.own_rules() {
        let pkg_len = program.modules[def.module].package.len();
        if let Some(name) = def.path.get(pkg_len).filter(|n| matches!(n.as_str(), "input" | "data"))
            && def.path.len() == pkg_len + 1
        {
            errors.push(error(
                program,
                def.module,
                def.span(),
                ErrorCode::Compile,
                format!("rules must not shadow {name} (use a different rule name)"),
            ));
        }
        let mut args: Vec<&Span> = Vec::new();
        if let Rule::Spec { head: RuleHead::Func { args: a, .. }, .. } = def.rule {
            for arg in a {
                if let Expr::Var { span, .. } = arg.as_ref() {
                    args.push(span);
                }
            }
        }
        for span in args {
            let name = span.text();
            if matches!(name, "input" | "data") {
                errors.push(error(
                    program,
                    def.module,
                    span,
                    ErrorCode::Compile,
                    format!("args must not shadow {name} (use a different variable name)"),
                ));
            }
        }
        for query in queries(def.rule) {
            for stmt in &query.stmts {
                let mut names: Vec<&Span> = Vec::new();
                match &stmt.literal {
                    Literal::Expr { expr, .. } => {
                        if let Expr::AssignExpr { op: AssignOp::ColEq, lhs, .. } = expr.as_ref() {
                            walk_expr(lhs, &mut |e| {
                                if let Expr::Var { span, .. } = e {
                                    names.push(span);
                                }
                            });
                        }
                    }
                    Literal::SomeVars { vars, .. } => names.extend(vars.iter()),
                    _ => {}
                }
                for span in names {
                    let name = span.text();
                    if matches!(name, "input" | "data") {
                        errors.push(error(
                            program,
                            def.module,
                            span,
                            ErrorCode::Compile,
                            format!("variables must not shadow {name} (use a different variable name)"),
                        ));
                    }
                }
            }
        }
    }
}

/// `CheckDuplicateImports`: two imports may not bind the same name (found as the module was
/// parsed, from its import lines).
pub fn duplicate_imports(program: &Program, errors: &mut Vec<CompileError>) {
    for parsed in program.own_modules() {
        errors.extend(parsed.shadowing_imports.iter().cloned());
    }
}

/// `RewriteLocalVars`: a variable is declared once per scope and not after it was used, and a
/// `some` variable is used.
pub fn local_declarations(program: &Program, errors: &mut Vec<CompileError>) {
    for def in program.own_rules() {
        let args = arg_names(def.rule);
        for query in queries(def.rule) {
            // A rule's own bodies see its arguments as declared; comprehensions start afresh.
            let is_body = matches!(def.rule, Rule::Spec { bodies, .. } if bodies.iter().any(|b| std::ptr::eq(b.query.as_ref(), query)));
            let mut assigned: BTreeSet<String> = if is_body { args.clone() } else { BTreeSet::new() };
            let mut referenced: BTreeSet<String> = BTreeSet::new();
            for (i, stmt) in query.stmts.iter().enumerate() {
                let mut declares: Vec<&Span> = Vec::new();
                let mut reads: Vec<&Expr> = Vec::new();
                match &stmt.literal {
                    Literal::Expr { expr, .. } => match expr.as_ref() {
                        Expr::AssignExpr { op: AssignOp::ColEq, lhs, rhs, .. } => {
                            walk_expr(lhs, &mut |e| {
                                if let Expr::Var { span, .. } = e {
                                    declares.push(span);
                                }
                            });
                            reads.push(rhs);
                        }
                        other => reads.push(other),
                    },
                    Literal::SomeIn { key, value, collection, .. } => {
                        for e in key.iter().chain([value]) {
                            walk_expr(e, &mut |e| {
                                if let Expr::Var { span, .. } = e {
                                    declares.push(span);
                                }
                            });
                        }
                        reads.push(collection);
                    }
                    Literal::SomeVars { vars, .. } => {
                        for span in vars {
                            let name = span.text();
                            if !used_after(query, i, name) {
                                errors.push(error(
                                    program,
                                    def.module,
                                    span,
                                    ErrorCode::Compile,
                                    format!("declared var {name} unused"),
                                ));
                            }
                        }
                    }
                    Literal::NotExpr { expr, .. } => reads.push(expr),
                    Literal::Every { domain, .. } => reads.push(domain),
                }
                for e in reads {
                    walk_expr(e, &mut |e| {
                        if let Expr::Var { span, .. } = e {
                            referenced.insert(span.text().to_string());
                        }
                    });
                }
                for span in declares {
                    let name = span.text();
                    if name == "_" {
                        continue;
                    }
                    let message = if assigned.contains(name) {
                        Some(format!("var {name} assigned above"))
                    } else if referenced.contains(name) {
                        Some(format!("var {name} referenced above"))
                    } else {
                        None
                    };
                    if let Some(message) = message {
                        errors.push(error(program, def.module, span, ErrorCode::Compile, message));
                    }
                    assigned.insert(name.to_string());
                }
            }
        }
    }
}

/// `RewritePrintCalls`: what `print` prints must be a variable the rule declares or binds.
pub fn print_calls(program: &Program, errors: &mut Vec<CompileError>) {
    for def in program.own_rules() {
        let mut prints: Vec<&Expr> = Vec::new();
        walk_rule(def.rule, &mut |e| {
            if let Expr::Call { fcn, .. } = e
                && fcn.span().text() == "print"
            {
                prints.push(e);
            }
        });
        if prints.is_empty() {
            continue;
        }
        // Every variable of the rule outside its print calls.
        let mut inside: Vec<*const Expr> = Vec::new();
        for p in &prints {
            walk_expr(p, &mut |e| inside.push(e as *const Expr));
        }
        let mut known = arg_names(def.rule);
        for q in queries(def.rule) {
            for stmt in &q.stmts {
                match &stmt.literal {
                    Literal::SomeVars { vars, .. } => known.extend(vars.iter().map(|v| v.text().to_string())),
                    Literal::Every { key, value, .. } => {
                        known.extend(key.iter().chain([value]).map(|v| v.text().to_string()))
                    }
                    _ => {}
                }
            }
        }
        walk_rule(def.rule, &mut |e| {
            if let Expr::Var { span, .. } = e
                && !inside.contains(&(e as *const Expr))
            {
                known.insert(span.text().to_string());
            }
        });
        for p in prints {
            let Expr::Call { params, .. } = p else { continue };
            let mut missing = BTreeSet::new();
            for arg in params {
                walk_expr(arg, &mut |e| {
                    if let Expr::Var { span, .. } = e {
                        let name = span.text();
                        if name != "_"
                            && !known.contains(name)
                            && !program.globals[def.module].contains_key(name)
                        {
                            missing.insert(name.to_string());
                        }
                    }
                });
            }
            for name in missing {
                errors.push(error_at(
                    program,
                    def.module,
                    super::model::start(p),
                    ErrorCode::Compile,
                    format!("var {name} is undeclared"),
                ));
            }
        }
    }
}

fn used_after(query: &Query, declared_at: usize, name: &str) -> bool {
    let mut used = false;
    for stmt in query.stmts.iter().skip(declared_at + 1) {
        if let Literal::SomeVars { .. } = stmt.literal {
            continue;
        }
        if let Literal::Every { key, value, .. } = &stmt.literal
            && (key.as_ref().is_some_and(|k| k.text() == name) || value.text() == name)
        {
            return true;
        }
        let mut visit = |e: &Expr| {
            if let Expr::Var { span, .. } = e
                && span.text() == name
            {
                used = true;
            }
        };
        match &stmt.literal {
            Literal::Every { domain, query, .. } => {
                walk_expr(domain, &mut visit);
                super::model::walk_query(query, &mut visit);
            }
            Literal::SomeIn { key, value, collection, .. } => {
                for e in key.iter().chain([value, collection]) {
                    walk_expr(e, &mut visit);
                }
            }
            Literal::Expr { expr, .. } | Literal::NotExpr { expr, .. } => walk_expr(expr, &mut visit),
            Literal::SomeVars { .. } => {}
        }
        for w in &stmt.with_mods {
            walk_expr(&w.r#as, &mut visit);
        }
    }
    used
}

/// What a call's function name resolves to.
pub enum Callee<'c> {
    /// A builtin.
    Builtin(&'c crate::policy::capabilities::Builtin),
    /// A rule of the program (its path from `data`).
    Rule(Vec<String>),
    /// Nothing: the name as written.
    Unknown(String),
}

/// Resolve a call's function name in a module, with the variables a body declares.
pub fn callee<'c>(
    program: &Program,
    module: usize,
    caps: &'c Capabilities,
    fcn: &Expr,
    declared: &BTreeSet<String>,
) -> Callee<'c> {
    let written = fcn.span().text().to_string();
    let Some(path) = path_of(fcn) else { return Callee::Unknown(written) };
    let head = &path[0];
    if !declared.contains(head)
        && let Some(global) = program.globals[module].get(head)
    {
        let mut full = global.clone();
        full.extend(path[1..].iter().cloned());
        if full[0] == "data" {
            return Callee::Rule(full[1..].to_vec());
        }
        return Callee::Unknown(written);
    }
    match caps.builtin(&path.join(".")) {
        Some(b) => Callee::Builtin(b),
        None => Callee::Unknown(written),
    }
}

/// Every call in a rule, and the variables the rule's queries declare.
pub fn calls(rule: &Rule) -> (BTreeSet<String>, Vec<&Expr>) {
    let mut out = Vec::new();
    let mut declared = BTreeSet::new();
    for q in queries(rule) {
        declared.extend(declared_in(q));
    }
    walk_rule(rule, &mut |e| {
        if let Expr::Call { .. } = e {
            out.push(e);
        }
    });
    (declared, out)
}

/// `RewriteWithValues`: `with` replaces `input`, `data` or a function, nothing else.
pub fn with_targets(program: &Program, caps: &Capabilities, errors: &mut Vec<CompileError>) {
    for def in program.own_rules() {
        for query in queries(def.rule) {
            let declared = declared_in(query);
            for stmt in &query.stmts {
                for w in &stmt.with_mods {
                    let target = path_of(&w.refr).map(|p| p.join(".")).unwrap_or_default();
                    let refused = if target == "eq" || target.starts_with("rego.metadata.") {
                        Some(format!("replacement of {target:?} invalid"))
                    } else if target.starts_with("internal.") {
                        Some(format!("replacement of internal function {target:?} invalid"))
                    } else if target == "print" {
                        Some("target must not be a void function".to_string())
                    } else {
                        None
                    };
                    if let Some(why) = refused {
                        errors.push(error(
                            program,
                            def.module,
                            w.refr.span(),
                            ErrorCode::Compile,
                            format!("with keyword replacing built-in function: {why}"),
                        ));
                        continue;
                    }
                    let ok = match path_of(&w.refr) {
                        Some(path)
                            if matches!(path[0].as_str(), "input" | "data")
                                && !declared.contains(&path[0]) =>
                        {
                            true
                        }
                        Some(_) => !matches!(
                            callee(program, def.module, caps, &w.refr, &declared),
                            Callee::Unknown(_)
                        ),
                        None => false,
                    };
                    if !ok {
                        errors.push(error(
                            program,
                            def.module,
                            w.refr.span(),
                            ErrorCode::Type,
                            "with keyword target must reference existing input, data, or a function"
                                .to_string(),
                        ));
                    }
                }
            }
        }
    }
}

/// `CheckRuleConflicts`: rules at one path agree on their kind, a value rule has nothing below
/// it, there is at most one default, and no rule has the path of a package.
pub fn rule_conflicts(program: &Program, errors: &mut Vec<CompileError>) {
    for (path, found) in &program.by_path {
        if found[0] >= program.checked {
            continue;
        }
        let first = &program.rules[found[0]];
        let name = dotted(path);
        let kinds: BTreeSet<_> = found
            .iter()
            .map(|&i| match program.rules[i].kind {
                RuleKind::Function(_) => "function",
                RuleKind::Value => "value",
                RuleKind::Set => "set",
                RuleKind::Object => "object",
            })
            .collect();
        let arities: BTreeSet<usize> = found
            .iter()
            .map(|&i| match program.rules[i].kind {
                RuleKind::Function(n) => n,
                _ => 0,
            })
            .collect();
        let below: Vec<&Vec<String>> = program
            .by_path
            .range(path.clone()..)
            .skip(1)
            .take_while(|(p, _)| p.starts_with(path))
            .map(|(p, _)| p)
            .collect();
        let extent_conflict = found.iter().any(|&i| {
            matches!(program.rules[i].kind, RuleKind::Value | RuleKind::Set | RuleKind::Function(_))
        }) && !below.is_empty();
        if extent_conflict {
            let others: Vec<String> = below.iter().map(|p| dotted(p)).collect();
            errors.push(error(
                program,
                first.module,
                first.span(),
                ErrorCode::Type,
                format!("rule {name} conflicts with [{}]", others.join(" ")),
            ));
        } else if kinds.len() > 1 || arities.len() > 1 {
            errors.push(error(
                program,
                first.module,
                first.span(),
                ErrorCode::Type,
                format!("conflicting rules {name} found"),
            ));
        } else if found.iter().filter(|&&i| program.rules[i].default).count() > 1 {
            let package = &program.modules[first.module].module.package.span;
            errors.push(error(
                program,
                first.module,
                package,
                ErrorCode::Type,
                format!("multiple default rules {name} found"),
            ));
        }
    }
    for parsed in program.own_modules() {
        if let Some(found) = program.by_path.get(&parsed.package) {
            let rule = &program.rules[found[0]];
            let (line, _) = at(rule.span());
            errors.push(error(
                program,
                rule.module,
                &program.modules[rule.module].module.package.span,
                ErrorCode::Type,
                format!(
                    "package {} conflicts with rule {} defined at {}:{line}",
                    dotted(&parsed.package),
                    rule.path.last().map(String::as_str).unwrap_or_default(),
                    program.modules[rule.module].label
                ),
            ));
        }
    }
}

/// `CheckUndefinedFuncs`: every call names a builtin or a rule.
pub fn undefined_functions(program: &Program, caps: &Capabilities, errors: &mut Vec<CompileError>) {
    for def in program.own_rules() {
        let (declared, found) = calls(def.rule);
        for call in found {
            let Expr::Call { fcn, .. } = call else { continue };
            let missing = match callee(program, def.module, caps, fcn, &declared) {
                Callee::Builtin(b) => {
                    // A builtin's arity is checked here, before safety; one argument more is
                    // the output form (`count(xs, n)`), judged with types.
                    let Expr::Call { params, .. } = call else { continue };
                    if !b.variadic && params.len() != b.args.len() && params.len() != b.args.len() + 1 {
                        errors.push(error_at(
                            program,
                            def.module,
                            super::model::start(call),
                            ErrorCode::Type,
                            format!("{}: arity mismatch", b.name),
                        ));
                    }
                    None
                }
                Callee::Rule(path) => program.functions_at(&path).is_empty().then(|| dotted(&path)),
                Callee::Unknown(name) => Some(name),
            };
            if let Some(name) = missing {
                errors.push(error_at(
                    program,
                    def.module,
                    super::model::start(call),
                    ErrorCode::Type,
                    format!("undefined function {name}"),
                ));
            }
        }
    }
}

/// `CheckDeprecatedBuiltins`: Rego v1 modules may not call deprecated builtins.
pub fn deprecated(program: &Program, caps: &Capabilities, errors: &mut Vec<CompileError>) {
    for def in program.own_rules() {
        let (declared, found) = calls(def.rule);
        for call in found {
            let Expr::Call { fcn, .. } = call else { continue };
            if let Callee::Builtin(b) = callee(program, def.module, caps, fcn, &declared)
                && b.deprecated
            {
                let (line, col) = super::model::start(call);
                errors.push(CompileError {
                    file: program.modules[def.module].label.clone(),
                    line,
                    col,
                    code: ErrorCode::Type,
                    message: format!("deprecated built-in function calls in expression: {}", b.name),
                });
            }
        }
    }
}
