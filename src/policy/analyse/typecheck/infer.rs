//! Type inference: the type of an expression (checking the calls inside it) and of a variable
//! or reference into rules, data or input.

use regorus::unstable::{ArithOp, BinOp, BoolOp, Expr};

use super::{Checker, Scope};
use crate::policy::analyse::model::{Part, ref_parts};
use crate::policy::analyse::structure::{Callee, callee};
use crate::policy::analyse::types::Ty;

impl Checker<'_> {
    /// The type of an expression; checks the calls inside it.
    pub(super) fn infer(&mut self, expr: &Expr, scope: &mut Scope) -> Ty {
        match expr {
            Expr::String { .. } | Expr::RawString { .. } => Ty::Str,
            Expr::Number { .. } => Ty::Num,
            Expr::Bool { .. } => Ty::Bool,
            Expr::Null { .. } => Ty::Null,
            Expr::Var { .. } | Expr::RefDot { .. } | Expr::RefBrack { .. } => self.reference(expr, scope),
            Expr::Array { items, .. } => {
                let t: Vec<Ty> = items.iter().map(|i| self.infer(i, scope)).collect();
                Ty::Arr(Box::new(if t.is_empty() { Ty::Any } else { Ty::union(t) }))
            }
            Expr::Set { items, .. } => {
                let t: Vec<Ty> = items.iter().map(|i| self.infer(i, scope)).collect();
                Ty::Set(Box::new(if t.is_empty() { Ty::Any } else { Ty::union(t) }))
            }
            Expr::Object { fields, .. } => {
                let mut values = Vec::new();
                for (_, k, v) in fields {
                    self.infer(k, scope);
                    values.push(self.infer(v, scope));
                }
                Ty::Obj(Box::new(if values.is_empty() { Ty::Any } else { Ty::union(values) }))
            }
            Expr::ArrayCompr { term, query, .. } | Expr::SetCompr { term, query, .. } => {
                let mut inner = Scope {
                    module: scope.module,
                    declared: scope.declared.clone(),
                    env: scope.env.clone(),
                    names: scope.names,
                };
                self.query(query, &mut inner);
                let t = self.infer(term, &mut inner);
                if matches!(expr, Expr::ArrayCompr { .. }) {
                    Ty::Arr(Box::new(t))
                } else {
                    Ty::Set(Box::new(t))
                }
            }
            Expr::ObjectCompr { key, value, query, .. } => {
                let mut inner = Scope {
                    module: scope.module,
                    declared: scope.declared.clone(),
                    env: scope.env.clone(),
                    names: scope.names,
                };
                self.query(query, &mut inner);
                self.infer(key, &mut inner);
                Ty::Obj(Box::new(self.infer(value, &mut inner)))
            }
            Expr::Call { fcn, params, .. } => {
                match callee(self.program, scope.module, self.caps, fcn, &scope.declared) {
                    Callee::Builtin(b) => self.builtin(b, expr, params, scope),
                    Callee::Rule(path) => {
                        for p in params {
                            self.infer(p, scope);
                        }
                        if let Some(n) = self.arity(&path)
                            && params.len() != n
                        {
                            let name = super::model::dotted(&path);
                            self.error(
                                scope.module,
                                expr,
                                format!("function {name} has arity {n}, got {} arguments", params.len()),
                            );
                        }
                        self.rules.get(&path).cloned().unwrap_or(Ty::Any)
                    }
                    Callee::Unknown(_) => Ty::Any,
                }
            }
            Expr::UnaryExpr { expr: inner, .. } => {
                let t = self.infer(inner, scope);
                if !t.fits(&Ty::Num) {
                    self.error(
                        scope.module,
                        expr,
                        format!("minus: invalid argument(s)\n\thave: ({t})\n\twant: (number)"),
                    );
                }
                Ty::Num
            }
            Expr::BinExpr { op, lhs, rhs, .. } => {
                let name = match op {
                    BinOp::Union => "or",
                    BinOp::Intersection => "and",
                };
                self.operator(name, expr, lhs, rhs, scope)
            }
            Expr::ArithExpr { op, lhs, rhs, .. } => {
                let name = match op {
                    ArithOp::Add => "plus",
                    ArithOp::Sub => "minus",
                    ArithOp::Mul => "mul",
                    ArithOp::Div => "div",
                    ArithOp::Mod => "rem",
                };
                self.operator(name, expr, lhs, rhs, scope)
            }
            Expr::BoolExpr { op, lhs, rhs, .. } => {
                let name = match op {
                    BoolOp::Lt => "lt",
                    BoolOp::Le => "lte",
                    BoolOp::Eq => "equal",
                    BoolOp::Ge => "gte",
                    BoolOp::Gt => "gt",
                    BoolOp::Ne => "neq",
                };
                let (left, right) = (self.infer(lhs, scope), self.infer(rhs, scope));
                if matches!(op, BoolOp::Eq | BoolOp::Ne) {
                    // OPA unifies the operands of `==` and `!=`: values of types that
                    // cannot be equal are a type error, not a comparison that fails.
                    if left.is_known() && right.is_known() && !left.fits(&right) {
                        self.error(
                            scope.module,
                            expr,
                            format!("match error\n\tleft  : {left}\n\tright : {right}"),
                        );
                    }
                } else {
                    self.operator(name, expr, lhs, rhs, scope);
                }
                Ty::Bool
            }
            Expr::AssignExpr { .. } => {
                self.literal(expr, scope);
                Ty::Bool
            }
            Expr::Membership { key, value, collection, .. } => {
                if let Some(k) = key {
                    self.infer(k, scope);
                }
                self.infer(value, scope);
                self.infer(collection, scope);
                Ty::Bool
            }
            #[allow(unreachable_patterns)]
            _ => Ty::Any,
        }
    }

    /// The type of a variable or reference.
    pub(super) fn reference(&mut self, expr: &Expr, scope: &mut Scope) -> Ty {
        let Some((head, parts)) = ref_parts(expr) else { return Ty::Any };
        let name = head.text();
        for p in &parts {
            if let Part::Expr(e) = p {
                self.infer(e, scope);
            }
        }
        if let Some(t) = scope.env.get(name) {
            let mut t = t.clone();
            for _ in &parts {
                t = t.element();
            }
            return t;
        }
        if !self.is_global(name, scope) {
            return Ty::Any;
        }
        let global = &self.program.globals[scope.module][name];
        if global[0] != "data" {
            return Ty::Any;
        }
        let mut path = global[1..].to_vec();
        let mut rest = 0;
        for p in &parts {
            match p {
                Part::Key(k) if rest == 0 && !self.rules.contains_key(&path) => path.push(k.clone()),
                _ => rest += 1,
            }
        }
        if let Some(keys) = self.keys.get(&path)
            && let Some(Part::Key(k)) = parts.get(parts.len() - rest)
            && rest > 0
            && !keys.contains(k)
        {
            let mut full = path.clone();
            full.push(k.clone());
            self.error(scope.module, expr, format!("undefined ref: {}", super::model::dotted(&full)));
            return Ty::Any;
        }
        match self.rules.get(&path) {
            Some(t) => {
                let mut t = t.clone();
                let steps: Vec<&Part> = parts.iter().skip(parts.len() - rest).collect();
                for (n, step) in steps.iter().enumerate() {
                    // A key into a scalar, or a string key into an array, is a ref OPA knows
                    // can never be defined.
                    let impossible = matches!(t, Ty::Num | Ty::Str | Ty::Bool | Ty::Null)
                        || (matches!(t, Ty::Arr(_)) && matches!(step, Part::Key(_)));
                    if impossible {
                        let mut full = path.clone();
                        full.extend(steps[..=n].iter().map(|p| match p {
                            Part::Key(k) => k.clone(),
                            Part::Expr(e) => e.span().text().to_string(),
                        }));
                        self.error(
                            scope.module,
                            expr,
                            format!("undefined ref: {}", super::model::dotted(&full)),
                        );
                        return Ty::Any;
                    }
                    t = t.element();
                }
                t
            }
            None => Ty::Any,
        }
    }
}
