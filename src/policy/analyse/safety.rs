//! Safety, as OPA's compiler checks it: every variable of a rule must be bound by some
//! expression of its body, whatever the order the expressions are written in.
//!
//! Like OPA, edict orders a body for safety: an expression can be placed once every variable
//! it reads is bound; placing it binds its outputs (the target of `:=` and `=`, the variables
//! that index a reference, the last argument of a call given one argument too many). What can
//! never be placed is unsafe. Comprehension and `every` bodies are checked the same way, with
//! the variables bound outside them.

use std::collections::{BTreeMap, BTreeSet};

use regorus::unstable::{AssignOp, Expr, Literal, LiteralStmt, Query, Rule, RuleHead};

use super::model::{Program, at, ref_parts, walk_expr};
use super::{CompileError, ErrorCode};
use crate::policy::Capabilities;

/// Variable names.
pub type Vars = BTreeSet<String>;

/// Unsafe variables, each with the (line, column) of the first expression that reads it.
pub type Unsafe = BTreeMap<String, (usize, usize)>;

fn note(unsafe_vars: &mut Unsafe, found: Unsafe) {
    for (v, place) in found {
        unsafe_vars.entry(v).or_insert(place);
    }
}

/// Names in one module: which are rules, imports or `input`, unless a body declares them.
pub struct Names<'p> {
    pub program: &'p Program<'p>,
    pub module: usize,
    pub caps: &'p Capabilities,
}

impl Names<'_> {
    fn is_global(&self, name: &str, declared: &Vars) -> bool {
        !declared.contains(name) && self.program.globals[self.module].contains_key(name)
    }

    /// Whether an expression names a builtin (`concat`, `strings.replace_n`), not shadowed.
    pub fn is_builtin(&self, expr: &Expr, declared: &Vars) -> bool {
        super::model::path_of(expr).is_some_and(|path| {
            !declared.contains(&path[0])
                && !self.program.globals[self.module].contains_key(&path[0])
                && self.caps.builtin(&path.join(".")).is_some()
        })
    }

    /// The arity of the function a call names, when known.
    pub fn arity(&self, fcn: &Expr, declared: &Vars) -> Option<usize> {
        let (head, parts) = ref_parts(fcn)?;
        let mut path: Vec<String> = vec![head.text().to_string()];
        for p in &parts {
            match p {
                super::model::Part::Key(k) => path.push(k.clone()),
                super::model::Part::Expr(_) => return None,
            }
        }
        if self.is_global(&path[0], declared) {
            let mut full = self.program.globals[self.module][&path[0]].clone();
            full.extend(path[1..].iter().cloned());
            let found = self.program.functions_at(&full[1..]);
            return found.first().and_then(|&i| match self.program.rules[i].kind {
                super::model::RuleKind::Function(n) => Some(n),
                _ => None,
            });
        }
        self.caps.builtin(&path.join(".")).filter(|b| !b.variadic && b.result.is_some()).map(|b| b.args.len())
    }
}

/// The variables an expression reads or binds, outside comprehensions and call names, with
/// the comprehension and `every` bodies it holds.
fn vars_of<'e>(expr: &'e Expr, names: &Names, declared: &Vars, out: &mut Vars, closures: &mut Vec<&'e Expr>) {
    match expr {
        Expr::Var { span, .. } => {
            let name = span.text();
            if name != "_" && !names.is_global(name, declared) {
                out.insert(name.to_string());
            }
        }
        Expr::ArrayCompr { .. } | Expr::SetCompr { .. } | Expr::ObjectCompr { .. } => closures.push(expr),
        Expr::Call { fcn, params, .. } => {
            // The function's name is not a variable, but a local in an index of it is.
            if let Some((_, parts)) = ref_parts(fcn) {
                for p in parts {
                    if let super::model::Part::Expr(e) = p {
                        vars_of(e, names, declared, out, closures);
                    }
                }
            }
            params.iter().for_each(|p| vars_of(p, names, declared, out, closures));
        }
        Expr::Array { items, .. } | Expr::Set { items, .. } => {
            items.iter().for_each(|i| vars_of(i, names, declared, out, closures))
        }
        Expr::Object { fields, .. } => {
            for (_, k, v) in fields {
                vars_of(k, names, declared, out, closures);
                vars_of(v, names, declared, out, closures);
            }
        }
        Expr::UnaryExpr { expr, .. } => vars_of(expr, names, declared, out, closures),
        Expr::RefDot { refr, .. } => vars_of(refr, names, declared, out, closures),
        Expr::RefBrack { refr, index, .. } => {
            vars_of(refr, names, declared, out, closures);
            vars_of(index, names, declared, out, closures);
        }
        Expr::BinExpr { lhs, rhs, .. }
        | Expr::BoolExpr { lhs, rhs, .. }
        | Expr::ArithExpr { lhs, rhs, .. }
        | Expr::AssignExpr { lhs, rhs, .. } => {
            vars_of(lhs, names, declared, out, closures);
            vars_of(rhs, names, declared, out, closures);
        }
        Expr::Membership { key, value, collection, .. } => {
            if let Some(k) = key {
                vars_of(k, names, declared, out, closures);
            }
            vars_of(value, names, declared, out, closures);
            vars_of(collection, names, declared, out, closures);
        }
        _ => {}
    }
}

fn vars(expr: &Expr, names: &Names, declared: &Vars) -> Vars {
    let mut out = Vars::new();
    vars_of(expr, names, declared, &mut out, &mut Vec::new());
    out
}

/// Variables that index a reference whose head is bound: `input.a[i]` binds `i`.
fn ref_outputs(expr: &Expr, names: &Names, declared: &Vars, safe: &Vars, out: &mut Vars) {
    let mut visit = |e: &Expr| {
        if let Some((head, parts)) = ref_parts(e) {
            let h = head.text();
            if !(names.is_global(h, declared) || safe.contains(h)) {
                return;
            }
            for p in parts {
                if let super::model::Part::Expr(Expr::Var { span, .. }) = p {
                    let v = span.text();
                    if v != "_" && !names.is_global(v, declared) {
                        out.insert(v.to_string());
                    }
                }
            }
        }
    };
    walk_shallow(expr, &mut visit);
}

/// Like `walk_expr`, without entering comprehensions.
fn walk_shallow(expr: &Expr, f: &mut dyn FnMut(&Expr)) {
    match expr {
        Expr::ArrayCompr { .. } | Expr::SetCompr { .. } | Expr::ObjectCompr { .. } => {}
        Expr::Array { items, .. } | Expr::Set { items, .. } => items.iter().for_each(|i| walk_shallow(i, f)),
        Expr::Object { fields, .. } => {
            for (_, k, v) in fields {
                walk_shallow(k, f);
                walk_shallow(v, f);
            }
        }
        Expr::Call { params, .. } => params.iter().for_each(|p| walk_shallow(p, f)),
        Expr::UnaryExpr { expr, .. } => walk_shallow(expr, f),
        Expr::RefDot { .. } | Expr::RefBrack { .. } => {
            f(expr);
            if let Some((_, parts)) = ref_parts(expr) {
                for p in parts {
                    if let super::model::Part::Expr(e) = p {
                        walk_shallow(e, f);
                    }
                }
            }
        }
        Expr::BinExpr { lhs, rhs, .. }
        | Expr::BoolExpr { lhs, rhs, .. }
        | Expr::ArithExpr { lhs, rhs, .. }
        | Expr::AssignExpr { lhs, rhs, .. } => {
            walk_shallow(lhs, f);
            walk_shallow(rhs, f);
        }
        Expr::Membership { key, value, collection, .. } => {
            if let Some(k) = key {
                walk_shallow(k, f);
            }
            walk_shallow(value, f);
            walk_shallow(collection, f);
        }
        _ => {}
    }
}

/// What unifying `a` with `b` binds, given what is bound already.
fn unify(a: &Expr, b: &Expr, names: &Names, declared: &Vars, safe: &Vars, out: &mut Vars) {
    let bound =
        |e: &Expr, out: &Vars| vars(e, names, declared).iter().all(|v| safe.contains(v) || out.contains(v));
    match (a, b) {
        (Expr::Array { items: x, .. }, Expr::Array { items: y, .. }) if x.len() == y.len() => {
            for (l, r) in x.iter().zip(y) {
                unify(l, r, names, declared, safe, out);
            }
        }
        (Expr::Object { fields: x, .. }, Expr::Object { fields: y, .. }) => {
            for (_, kx, vx) in x {
                for (_, ky, vy) in y {
                    if kx.span().text() == ky.span().text() {
                        unify(vx, vy, names, declared, safe, out);
                    }
                }
            }
        }
        _ => {
            if is_pattern(a) && bound(b, out) {
                out.extend(vars(a, names, declared));
            }
            if is_pattern(b) && bound(a, out) {
                out.extend(vars(b, names, declared));
            }
        }
    }
}

/// Whether a term needs evaluating (holds a call, a reference or a comprehension), as OPA's
/// `requiresEval` says.
fn needs_eval(e: &Expr) -> bool {
    let mut found = false;
    walk_expr(e, &mut |x| {
        found |= matches!(
            x,
            Expr::Call { .. }
                | Expr::RefDot { .. }
                | Expr::RefBrack { .. }
                | Expr::ArrayCompr { .. }
                | Expr::SetCompr { .. }
                | Expr::ObjectCompr { .. }
        )
    });
    found
}

/// Whether unification can bind the variables of `e` (a variable, or an array or object of them).
fn is_pattern(e: &Expr) -> bool {
    match e {
        Expr::Var { .. } => true,
        Expr::Array { items, .. } => items.iter().all(|i| is_pattern(i) || is_scalar(i)),
        Expr::Object { fields, .. } => {
            fields.iter().all(|(_, k, v)| is_scalar(k) && (is_pattern(v) || is_scalar(v)))
        }
        _ => false,
    }
}

fn is_scalar(e: &Expr) -> bool {
    matches!(
        e,
        Expr::String { .. }
            | Expr::RawString { .. }
            | Expr::Number { .. }
            | Expr::Bool { .. }
            | Expr::Null { .. }
    )
}

/// How one literal reads and binds variables.
struct Io<'e> {
    reads: Vars,
    closures: Vec<&'e Expr>,
}

fn io<'e>(stmt: &'e LiteralStmt, names: &Names, declared: &Vars) -> Io<'e> {
    let mut reads = Vars::new();
    let mut closures = Vec::new();
    match &stmt.literal {
        Literal::SomeVars { .. } => {}
        Literal::SomeIn { key, value, collection, .. } => {
            if let Some(k) = key {
                vars_of(k, names, declared, &mut reads, &mut closures);
            }
            vars_of(value, names, declared, &mut reads, &mut closures);
            vars_of(collection, names, declared, &mut reads, &mut closures);
        }
        Literal::Expr { expr, .. } | Literal::NotExpr { expr, .. } => {
            vars_of(expr, names, declared, &mut reads, &mut closures)
        }
        Literal::Every { domain, .. } => vars_of(domain, names, declared, &mut reads, &mut closures),
    }
    for w in &stmt.with_mods {
        // `with f as g` names a function, which is no variable.
        if names.arity(&w.r#as, declared).is_some() || names.is_builtin(&w.r#as, declared) {
            continue;
        }
        vars_of(&w.r#as, names, declared, &mut reads, &mut closures);
    }
    Io { reads, closures }
}

fn outputs(stmt: &LiteralStmt, names: &Names, declared: &Vars, safe: &Vars) -> Vars {
    let mut out = Vars::new();
    match &stmt.literal {
        Literal::SomeIn { key, value, collection, .. } => {
            if vars(collection, names, declared).iter().all(|v| safe.contains(v)) {
                if let Some(k) = key {
                    out.extend(vars(k, names, declared));
                }
                out.extend(vars(value, names, declared));
            }
            ref_outputs(collection, names, declared, safe, &mut out);
        }
        Literal::Expr { expr, .. } => {
            ref_outputs(expr, names, declared, safe, &mut out);
            match expr.as_ref() {
                Expr::AssignExpr { lhs, rhs, .. } => {
                    // Bind what one side fixes in the other, until nothing changes.
                    loop {
                        let before = out.len();
                        let now: Vars = safe.union(&out).cloned().collect();
                        unify(lhs, rhs, names, declared, &now, &mut out);
                        if out.len() == before {
                            break;
                        }
                    }
                }
                Expr::Call { fcn, params, .. } => {
                    if let (Some(n), Some(last)) = (names.arity(fcn, declared), params.last())
                        && params.len() == n + 1
                        && params[..n]
                            .iter()
                            .all(|p| vars(p, names, declared).iter().all(|v| safe.contains(v)))
                    {
                        out.extend(vars(last, names, declared));
                    }
                }
                _ => {}
            }
        }
        Literal::SomeVars { .. } | Literal::NotExpr { .. } | Literal::Every { .. } => {}
    }
    out
}

/// Variables a body declares (`:=`, `some`, `every`), which shadow rules of the same name.
pub fn declared_in(query: &Query) -> Vars {
    let mut out = Vars::new();
    for stmt in &query.stmts {
        match &stmt.literal {
            Literal::SomeVars { vars, .. } => out.extend(vars.iter().map(|v| v.text().to_string())),
            Literal::SomeIn { key, value, .. } => {
                for e in key.iter().chain(std::iter::once(value)) {
                    walk_expr(e, &mut |x| {
                        if let Expr::Var { span, .. } = x {
                            out.insert(span.text().to_string());
                        }
                    });
                }
            }
            Literal::Expr { expr, .. } => {
                if let Expr::AssignExpr { op: AssignOp::ColEq, lhs, .. } = expr.as_ref() {
                    walk_expr(lhs, &mut |x| {
                        if let Expr::Var { span, .. } = x {
                            out.insert(span.text().to_string());
                        }
                    });
                }
            }
            _ => {}
        }
    }
    out
}

/// Order a query for safety. Returns the literal indexes in the order they can run and the
/// variables that no order binds.
pub fn order(query: &Query, names: &Names, outer: &Vars, safe: &Vars) -> (Vec<usize>, Unsafe) {
    let mut declared = outer.clone();
    declared.extend(declared_in(query));
    let mut safe = safe.clone();
    let ios: Vec<Io> = query.stmts.iter().map(|s| io(s, names, &declared)).collect();
    // Variables of the body outside its closures: a closure reading one needs it bound first.
    let body_vars: Vars = ios.iter().flat_map(|i| i.reads.iter().cloned()).collect();
    let mut placed = vec![false; query.stmts.len()];
    let mut placed_order = Vec::new();
    let mut unsafe_vars = Unsafe::new();
    loop {
        let mut progress = false;
        for (i, stmt) in query.stmts.iter().enumerate() {
            if placed[i] {
                continue;
            }
            let out = outputs(stmt, names, &declared, &safe);
            let mut needs: Vars = ios[i].reads.difference(&out).cloned().collect();
            for c in &ios[i].closures {
                needs.extend(closure_vars(c, names, &declared).intersection(&body_vars).cloned());
            }
            if needs.iter().all(|v| safe.contains(v)) {
                placed[i] = true;
                progress = true;
                placed_order.push(i);
                safe.extend(out);
                let place = at(&stmt.span);
                for c in &ios[i].closures {
                    note(&mut unsafe_vars, check_closure(c, names, &declared, &safe, place));
                }
                if let Literal::Every { key, value, query, .. } = &stmt.literal {
                    let mut inner = safe.clone();
                    inner.extend(key.iter().chain(std::iter::once(value)).map(|s| s.text().to_string()));
                    note(&mut unsafe_vars, order(query, names, &declared, &inner).1);
                }
            }
        }
        if !progress {
            break;
        }
    }
    for (i, stmt) in query.stmts.iter().enumerate() {
        if !placed[i] {
            let out = outputs(stmt, names, &declared, &safe);
            for v in ios[i].reads.iter().filter(|v| !safe.contains(*v) && !out.contains(*v)) {
                unsafe_vars.entry(v.clone()).or_insert(at(&stmt.span));
            }
        }
    }
    (placed_order, unsafe_vars)
}

fn closure_vars(c: &Expr, names: &Names, declared: &Vars) -> Vars {
    let mut out = Vars::new();
    walk_expr(c, &mut |e| {
        if let Expr::Var { span, .. } = e {
            let n = span.text();
            if n != "_" && !names.is_global(n, declared) {
                out.insert(n.to_string());
            }
        }
    });
    out
}

/// Check a comprehension's body with `safe` bound outside it; the term must be bound after it.
/// A term's unsafe variable is reported at `place`, the expression holding the comprehension.
fn check_closure(c: &Expr, names: &Names, declared: &Vars, safe: &Vars, place: (usize, usize)) -> Unsafe {
    let (terms, query): (Vec<&Expr>, &Query) = match c {
        Expr::ArrayCompr { term, query, .. } | Expr::SetCompr { term, query, .. } => (vec![term], query),
        Expr::ObjectCompr { key, value, query, .. } => (vec![key, value], query),
        _ => return Unsafe::new(),
    };
    let (placed, mut unsafe_vars) = order(query, names, declared, safe);
    let mut inner_declared = declared.clone();
    inner_declared.extend(declared_in(query));
    let mut bound = safe.clone();
    for &i in &placed {
        let stmt = &query.stmts[i];
        bound.extend(io(stmt, names, &inner_declared).reads);
        bound.extend(outputs(stmt, names, &inner_declared, &bound));
    }
    for t in terms {
        let mut closures = Vec::new();
        let mut term_vars = Vars::new();
        vars_of(t, names, &inner_declared, &mut term_vars, &mut closures);
        for v in term_vars.into_iter().filter(|v| !bound.contains(v)) {
            unsafe_vars.entry(v).or_insert(place);
        }
        for inner in closures {
            note(&mut unsafe_vars, check_closure(inner, names, &inner_declared, &bound, place));
        }
    }
    unsafe_vars
}

/// The variables of a function's arguments, which its body may read.
pub fn arg_vars(rule: &Rule, names: &Names) -> Vars {
    let args: &[_] = match rule {
        Rule::Spec { head: RuleHead::Func { args, .. }, .. } => args,
        Rule::Default { args, .. } => args,
        _ => &[],
    };
    let mut out = Vars::new();
    for a in args {
        out.extend(vars(a, names, &Vars::new()));
    }
    out
}

/// `CheckSafetyRuleHeads`: variables in a rule's head must occur in its body or arguments.
pub fn check_heads(program: &Program, caps: &Capabilities, errors: &mut Vec<CompileError>) {
    for def in program.own_rules() {
        let names = Names { program, module: def.module, caps };
        let Rule::Spec { head, bodies, .. } = def.rule else { continue };
        let mut head_exprs: Vec<&Expr> = Vec::new();
        let refr = match head {
            RuleHead::Compr { refr, assign, .. } | RuleHead::Func { refr, assign, .. } => {
                head_exprs.extend(assign.iter().map(|a| a.value.as_ref()));
                refr
            }
            RuleHead::Set { refr, key, .. } => {
                head_exprs.extend(key.iter().map(|k| k.as_ref()));
                refr
            }
        };
        let mut indexes: Vec<&Expr> = Vec::new();
        if let Some((_, parts)) = ref_parts(refr) {
            for p in parts {
                if let super::model::Part::Expr(e) = p {
                    indexes.push(e);
                }
            }
        }
        let args = arg_vars(def.rule, &names);
        // A rule without a body (`p := [x | …]`) is checked as one with an empty body.
        for n in 0..bodies.len().max(1) {
            let body = bodies.get(n);
            let declared = body.map(|b| declared_in(&b.query)).unwrap_or_default();
            let mut bound = args.clone();
            for stmt in body.iter().flat_map(|b| &b.query.stmts) {
                bound.extend(io(stmt, &names, &declared).reads);
                if let Literal::SomeVars { vars, .. } = &stmt.literal {
                    bound.extend(vars.iter().map(|v| v.text().to_string()));
                }
            }
            // An `else` branch has its own value; the head's value belongs to the first body.
            let mut exprs = indexes.clone();
            if !body.is_some_and(|b| b.is_else) {
                exprs.extend(head_exprs.iter().copied());
            }
            if let Some(a) = body.and_then(|b| b.assign.as_ref()) {
                exprs.push(&a.value);
            }
            let place = match body {
                Some(b) if n > 0 => at(&b.span),
                _ => at(def.span()),
            };
            let mut unsafe_vars = Unsafe::new();
            for e in exprs {
                let mut found = Vars::new();
                let mut closures = Vec::new();
                vars_of(e, &names, &declared, &mut found, &mut closures);
                for v in found.into_iter().filter(|v| !bound.contains(v)) {
                    unsafe_vars.entry(v).or_insert(place);
                }
                for c in closures {
                    note(&mut unsafe_vars, check_closure(c, &names, &declared, &bound, place));
                }
            }
            for v in unsafe_vars.into_keys() {
                errors.push(unsafe_var(program, def.module, place, &v));
            }
        }
    }
}

/// OPA's error for an unsafe variable, at `(line, col)` of a module.
fn unsafe_var(program: &Program, module: usize, (line, col): (usize, usize), var: &str) -> CompileError {
    CompileError {
        file: program.modules[module].label.clone(),
        line,
        col,
        code: ErrorCode::UnsafeVar,
        message: format!("var {var} is unsafe"),
    }
}

/// `CheckSafetyRuleBodies`: every variable of a body is bound in some order.
pub fn check_bodies(program: &Program, caps: &Capabilities, errors: &mut Vec<CompileError>) {
    for def in program.own_rules() {
        let names = Names { program, module: def.module, caps };
        let Rule::Spec { head, bodies, .. } = def.rule else { continue };
        let args = arg_vars(def.rule, &names);
        // OPA moves a head value that needs evaluating (a call, a reference) into the body as
        // an expression at the head's place; an unsafe variable it holds is reported there
        // when that comes first.
        let head_value = match head {
            RuleHead::Compr { assign: Some(a), .. } | RuleHead::Func { assign: Some(a), .. } => {
                Some(&a.value)
            }
            RuleHead::Set { key: Some(k), .. } => Some(k),
            _ => None,
        }
        .filter(|e| needs_eval(e));
        for (n, body) in bodies.iter().enumerate() {
            let (_, mut unsafe_vars) = order(&body.query, &names, &args, &args);
            if let Some(value) = head_value.filter(|_| n == 0) {
                let held = vars(value, &names, &declared_in(&body.query));
                let place = super::model::start(value);
                for (v, at) in unsafe_vars.iter_mut() {
                    if held.contains(v) && place < *at {
                        *at = place;
                    }
                }
            }
            for (v, place) in unsafe_vars {
                errors.push(unsafe_var(program, def.module, place, &v));
            }
        }
    }
}
