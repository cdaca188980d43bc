//! `CheckTypes`: builtin calls get the number and the types of arguments OPA's declarations
//! ask for.
//!
//! Types flow as in OPA's checker: from literals, builtin results and the values of other rules
//! (checked first, in dependency order), through the variables a body binds, in the order
//! safety allows. What cannot be known (`input`, a reference into unknown data) is `any`, which
//! fits everything, so edict refuses a call only when OPA would too.

mod infer;

use std::collections::{BTreeSet, HashMap};

use regorus::unstable::{AssignOp, Expr, Literal, Query, Rule, RuleHead};

use super::model::{self, Program, RuleKind};
use super::recursion::dependencies;
use super::safety::{Names, Vars, declared_in, order};
use super::structure::{Callee, callee};
use super::types::Ty;
use super::{CompileError, ErrorCode};
use crate::policy::Capabilities;
use crate::policy::capabilities::Builtin;

struct Checker<'p> {
    program: &'p Program<'p>,
    caps: &'p Capabilities,
    /// Value types of the rules checked so far, by path.
    rules: HashMap<Vec<String>, Ty>,
    /// The keys of rules whose value is one object literal with constant keys (`cfg := {"a": 1}`):
    /// a reference to another key can never be defined.
    keys: HashMap<Vec<String>, BTreeSet<String>>,
    errors: Vec<CompileError>,
}

struct Scope<'s> {
    module: usize,
    declared: Vars,
    env: HashMap<String, Ty>,
    names: &'s Names<'s>,
}

/// The value types of rules, by path.
pub type RuleTypes = HashMap<Vec<String>, Ty>;

/// Check the types of every rule of the checked modules, given the types of the rules of the
/// modules they read (checked before); return the types of the checked rules.
pub fn check_types(
    program: &Program,
    caps: &Capabilities,
    context: RuleTypes,
    errors: &mut Vec<CompileError>,
) -> RuleTypes {
    let mut checker =
        Checker { program, caps, rules: context, keys: constant_keys(program), errors: Vec::new() };
    let order = dependency_order(program);
    for &i in &order {
        let ty = checker.rule(i);
        let path = program.rules[i].path.clone();
        let merged = match checker.rules.remove(&path) {
            Some(before) => Ty::union(vec![before, ty]),
            None => ty,
        };
        checker.rules.insert(path, merged);
    }
    errors.extend(checker.errors);
    let mut own = RuleTypes::new();
    for i in order {
        let path = &program.rules[i].path;
        if let Some(t) = checker.rules.get(path) {
            own.insert(path.clone(), t.clone());
        }
    }
    own
}

/// The keys of rules defined once, without a body, as an object literal with string keys.
fn constant_keys(program: &Program) -> HashMap<Vec<String>, BTreeSet<String>> {
    let mut out = HashMap::new();
    for (path, found) in &program.by_path {
        let [only] = found.as_slice() else { continue };
        let Rule::Spec { head: RuleHead::Compr { assign: Some(a), .. }, bodies, .. } =
            program.rules[*only].rule
        else {
            continue;
        };
        let Expr::Object { fields, .. } = a.value.as_ref() else { continue };
        if !bodies.is_empty() || program.rules[*only].kind != RuleKind::Value {
            continue;
        }
        let keys: Option<BTreeSet<String>> = fields
            .iter()
            .map(|(_, k, _)| match k.as_ref() {
                Expr::String { value, .. } | Expr::RawString { value, .. } => {
                    value.as_string().ok().map(|s| s.to_string())
                }
                _ => None,
            })
            .collect();
        if let Some(keys) = keys {
            out.insert(path.clone(), keys);
        }
    }
    out
}

/// The checked rules, ordered so that each comes after the checked rules it reads.
fn dependency_order(program: &Program) -> Vec<usize> {
    let deps = dependencies(program);
    let mut done = vec![false; deps.len()];
    let mut out = Vec::new();
    fn visit(i: usize, deps: &[BTreeSet<usize>], done: &mut [bool], out: &mut Vec<usize>) {
        if done[i] {
            return;
        }
        done[i] = true;
        for &d in &deps[i] {
            visit(d, deps, done, out);
        }
        out.push(i);
    }
    // Rules of context modules read nothing here: their types are given.
    for d in done.iter_mut().skip(program.checked) {
        *d = true;
    }
    for i in 0..program.checked {
        visit(i, deps, &mut done, &mut out);
    }
    out
}

impl Checker<'_> {
    fn error(&mut self, module: usize, expr: &Expr, message: String) {
        let (line, col) = super::model::start(expr);
        self.errors.push(CompileError {
            file: self.program.modules[module].label.clone(),
            line,
            col,
            code: ErrorCode::Type,
            message,
        });
    }

    /// Check one rule and return the type of the value it defines.
    fn rule(&mut self, i: usize) -> Ty {
        let def = &self.program.rules[i];
        let names = Names { program: self.program, module: def.module, caps: self.caps };
        let args_declared = super::model::arg_names(def.rule);
        let mut scope = Scope {
            module: def.module,
            declared: args_declared.clone(),
            env: args_declared.iter().map(|a| (a.clone(), Ty::Any)).collect(),
            names: &names,
        };
        match def.rule {
            Rule::Default { value, .. } => self.infer(value, &mut scope),
            Rule::Spec { head, bodies, .. } => {
                let mut values = Vec::new();
                for body in bodies {
                    let mut inner = Scope {
                        module: scope.module,
                        declared: scope.declared.clone(),
                        env: scope.env.clone(),
                        names: &names,
                    };
                    self.query(&body.query, &mut inner);
                    if let Some(a) = &body.assign {
                        values.push(self.infer(&a.value, &mut inner));
                    }
                    let head_value = match head {
                        _ if body.is_else => None,
                        RuleHead::Compr { assign: Some(a), .. } | RuleHead::Func { assign: Some(a), .. } => {
                            Some(self.infer(&a.value, &mut inner))
                        }
                        RuleHead::Set { key: Some(k), .. } => {
                            Some(Ty::Set(Box::new(self.infer(k, &mut inner))))
                        }
                        _ => None,
                    };
                    values.extend(head_value);
                }
                if bodies.is_empty() {
                    // `p := value` with no body.
                    match head {
                        RuleHead::Compr { assign: Some(a), .. } | RuleHead::Func { assign: Some(a), .. } => {
                            values.push(self.infer(&a.value, &mut scope))
                        }
                        RuleHead::Set { key: Some(k), .. } => {
                            values.push(Ty::Set(Box::new(self.infer(k, &mut scope))))
                        }
                        _ => {}
                    }
                }
                if values.is_empty() {
                    values.push(Ty::Bool);
                }
                let value = Ty::union(values);
                if def.kind == RuleKind::Object { Ty::Obj(Box::new(value)) } else { value }
            }
        }
    }

    /// Check a query's literals in the order safety allows, binding the types of its variables.
    fn query(&mut self, query: &Query, scope: &mut Scope) {
        let outer = scope.declared.clone();
        scope.declared.extend(declared_in(query));
        let bound: Vars = scope.env.keys().cloned().collect();
        let (placed, _) = order(query, scope.names, &outer, &bound);
        for i in placed {
            let stmt = &query.stmts[i];
            for w in &stmt.with_mods {
                self.infer(&w.r#as, scope);
                self.replacement_arity(&w.refr, &w.r#as, scope);
            }
            match &stmt.literal {
                Literal::SomeVars { .. } => {}
                Literal::SomeIn { key, value, collection, .. } => {
                    let coll = self.infer(collection, scope);
                    if matches!(coll, Ty::Num | Ty::Bool | Ty::Null) {
                        // Nothing is in a number, a boolean or null: OPA's checker says the
                        // iteration refers to nothing.
                        let what = collection.span().text().to_string();
                        self.error(scope.module, collection, format!("undefined ref: {what}[_]"));
                    }
                    if let Some(k) = key {
                        self.bind(k, Ty::Any, scope);
                    }
                    self.bind(value, coll.element(), scope);
                }
                Literal::NotExpr { expr, .. } => {
                    self.infer(expr, scope);
                }
                Literal::Every { key, value, domain, query, .. } => {
                    let dom = self.infer(domain, scope);
                    let mut inner = Scope {
                        module: scope.module,
                        declared: scope.declared.clone(),
                        env: scope.env.clone(),
                        names: scope.names,
                    };
                    if let Some(k) = key {
                        inner.env.insert(k.text().to_string(), Ty::Any);
                        inner.declared.insert(k.text().to_string());
                    }
                    inner.env.insert(value.text().to_string(), dom.element());
                    inner.declared.insert(value.text().to_string());
                    self.query(query, &mut inner);
                }
                Literal::Expr { expr, .. } => self.literal(expr, scope),
            }
        }
    }

    fn literal(&mut self, expr: &Expr, scope: &mut Scope) {
        match expr {
            Expr::AssignExpr { op, lhs, rhs, .. } => {
                let program = self.program;
                let unbound = |e: &Expr, scope: &Scope| {
                    matches!(e, Expr::Var { span, .. } if !scope.env.contains_key(span.text())
                        && (scope.declared.contains(span.text()) || !program.globals[scope.module].contains_key(span.text())))
                };
                if *op == AssignOp::Eq && unbound(rhs, scope) && !unbound(lhs, scope) {
                    let t = self.infer(lhs, scope);
                    self.bind(rhs, t, scope);
                    return;
                }
                let right = self.infer(rhs, scope);
                let composite = |e: &Expr| match e {
                    Expr::Array { .. } => Some(Ty::Arr(Box::new(Ty::Any))),
                    Expr::Object { .. } => Some(Ty::Obj(Box::new(Ty::Any))),
                    _ => None,
                };
                if let Some(left) = composite(lhs)
                    && right.is_known()
                    && !right.fits(&left)
                {
                    self.error(
                        scope.module,
                        expr,
                        format!("match error\n\tleft  : {left}\n\tright : {right}"),
                    );
                    return;
                }
                if *op == AssignOp::Eq
                    && !unbound(lhs, scope)
                    && !matches!(lhs.as_ref(), Expr::Array { .. } | Expr::Object { .. })
                {
                    let left = self.infer(lhs, scope);
                    if left.is_known() && right.is_known() && !left.fits(&right) {
                        self.error(
                            scope.module,
                            expr,
                            format!("match error\n\tleft  : {left}\n\tright : {right}"),
                        );
                    }
                    return;
                }
                self.bind(lhs, right, scope);
            }
            Expr::Call { fcn, params, .. } => {
                // A call given one argument more than it takes binds its result to the last.
                let resolved = callee(self.program, scope.module, self.caps, fcn, &scope.declared);
                if let Callee::Builtin(b) = resolved
                    && !b.variadic
                    && params.len() == b.args.len() + 1
                    && let Some(last) = params.last()
                {
                    let result = self.builtin(b, expr, &params[..b.args.len()], scope);
                    self.bind(last, result, scope);
                    return;
                }
                if let Callee::Rule(path) = &resolved
                    && let Some(n) = self.arity(path)
                    && params.len() == n + 1
                    && let Some(last) = params.last()
                {
                    for p in &params[..n] {
                        self.infer(p, scope);
                    }
                    let result = self.rules.get(path).cloned().unwrap_or(Ty::Any);
                    self.bind(last, result, scope);
                    return;
                }
                self.infer(expr, scope);
            }
            _ => {
                self.infer(expr, scope);
            }
        }
    }

    /// `with f as g`: a function replaced by another function must keep its arity.
    fn replacement_arity(&mut self, target: &Expr, value: &Expr, scope: &Scope) {
        let arity = |c: &Callee, me: &Self| match c {
            Callee::Builtin(b) if !b.variadic => Some((b.name.clone(), b.args.len())),
            Callee::Rule(path) => me.arity(path).map(|n| (super::model::dotted(path), n)),
            _ => None,
        };
        let replaced = callee(self.program, scope.module, self.caps, target, &scope.declared);
        let by = callee(self.program, scope.module, self.caps, value, &scope.declared);
        if let (Some((name, want)), Some((_, have))) = (arity(&replaced, self), arity(&by, self))
            && want != have
        {
            self.error(scope.module, target, format!("{name}: arity mismatch"));
        }
    }

    /// The arity of the function at `path`, if a function is there.
    fn arity(&self, path: &[String]) -> Option<usize> {
        self.program.functions_at(path).first().and_then(|&i| match self.program.rules[i].kind {
            RuleKind::Function(n) => Some(n),
            _ => None,
        })
    }

    fn is_global(&self, name: &str, scope: &Scope) -> bool {
        !scope.declared.contains(name) && self.program.globals[scope.module].contains_key(name)
    }

    /// Give the variables of a pattern the type of what it is unified with.
    fn bind(&mut self, pattern: &Expr, ty: Ty, scope: &mut Scope) {
        match pattern {
            Expr::Var { span, .. } => {
                let name = span.text();
                if name == "_" || self.is_global(name, scope) {
                    return;
                }
                scope.env.entry(name.to_string()).or_insert(ty);
            }
            Expr::Array { items, .. } => {
                let elem = ty.element();
                for i in items {
                    self.bind(i, elem.clone(), scope);
                }
            }
            Expr::Object { fields, .. } => {
                let elem = ty.element();
                for (_, _, v) in fields {
                    self.bind(v, elem.clone(), scope);
                }
            }
            other => {
                self.infer(other, scope);
            }
        }
    }

    /// Check a builtin call's arguments and return its result type.
    fn builtin(
        &mut self,
        b: &Builtin,
        call: &Expr,
        params: &[regorus::unstable::ExprRef],
        scope: &mut Scope,
    ) -> Ty {
        let have: Vec<Ty> = params.iter().map(|p| self.infer(p, scope)).collect();
        if b.variadic {
            return b.result.clone().unwrap_or(Ty::Any);
        }
        // The types as OPA prints them, written only when there is an error to say.
        let join = |t: &[Ty]| t.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        if have.len() != b.args.len() {
            let (have_text, want_text) = (join(&have), join(&b.args));
            self.error(
                scope.module,
                call,
                format!("{}: arity mismatch\n\thave: ({have_text})\n\twant: ({want_text})", b.name),
            );
            return Ty::Any;
        }
        if have.iter().zip(&b.args).any(|(h, w)| !h.fits(w)) {
            let (have_text, want_text) = (join(&have), join(&b.args));
            self.error(
                scope.module,
                call,
                format!("{}: invalid argument(s)\n\thave: ({have_text})\n\twant: ({want_text})", b.name),
            );
            return Ty::Any;
        }
        b.result.clone().unwrap_or(Ty::Any)
    }

    fn operator(&mut self, name: &str, call: &Expr, lhs: &Expr, rhs: &Expr, scope: &mut Scope) -> Ty {
        match self.caps.builtin(name) {
            Some(b) => {
                let have = [self.infer(lhs, scope), self.infer(rhs, scope)];
                if have.iter().zip(&b.args).any(|(h, w)| !h.fits(w)) {
                    let have_text = have.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
                    let want_text = b.args.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
                    self.error(
                        scope.module,
                        call,
                        format!(
                            "{}: invalid argument(s)\n\thave: ({have_text})\n\twant: ({want_text})",
                            b.name
                        ),
                    );
                    return Ty::Any;
                }
                b.result.clone().unwrap_or(Ty::Any)
            }
            None => Ty::Any,
        }
    }
}
