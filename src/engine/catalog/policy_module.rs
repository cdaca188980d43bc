//! A Policy checked alone: its Rego parses, its package is inside its target's root and clear of
//! the reserved roots, its mask pointers are allowed and its tests parse.

use crate::api::{Policy, TargetKind};
use crate::bundle::{DECISION_RULES, PolicyModule, stack_id};
use crate::engine::problem::{ObjectRef, Problem, Reason};
use crate::model::ObjectKey;
use crate::policy::rego::{self, RegoError};
use crate::sources::manifest::Origin;

/// Package roots a System's policies may not use.
pub const RESERVED_ROOTS: [&str; 5] = ["stacks", "main", "system", "context", "metadata"];

/// The label regorus sees for a Policy's module: the path it has in a bundle.
pub fn module_label(package: &[String], policy: &str) -> String {
    format!("{}/{}.rego", package.join("/"), policy)
}

/// Check a Policy alone: its Rego parses, its package is inside its target's root, its mask
/// pointers are allowed, and its tests parse. Pure.
pub fn analyse_policy(
    key: &ObjectKey,
    policy: &Policy,
    origin: &Origin,
) -> Result<PolicyModule, Vec<Problem>> {
    let me = ObjectRef::namespaced("Policy", key);
    let located = |tests: bool, e: &RegoError| {
        if e.line > 0 {
            format!("{}: {}", origin.locate(tests, e.line, e.col), e.message)
        } else {
            format!("{}{}", origin.prefix(), e.message)
        }
    };
    let info = rego::parse_module(&format!("{key}.rego"), &policy.spec.rego)
        .map_err(|e| vec![Problem::new(me.clone(), Reason::InvalidRego, located(false, &e))])?;
    let mut problems = Vec::new();
    let package = info.package.join(".");
    let (line, col) = info.package_at;
    if let Some(bad) = info.package.iter().find(|c| c.contains('/') || c.is_empty()) {
        problems.push(Problem::new(
            me.clone(),
            Reason::InvalidRego,
            format!(
                "{}: package component {bad:?} cannot be a bundle path segment",
                origin.locate(false, line, col)
            ),
        ));
    }
    match policy.spec.target.kind {
        TargetKind::Stack => {
            let root = ["stacks".to_string(), stack_id(&policy.spec.target.name)];
            if !info.package.starts_with(&root) {
                problems.push(Problem::new(
                    me.clone(),
                    Reason::PackageOutsideRoot,
                    format!(
                        "{}: package {package} is outside stacks.{}, the root for policies of Stack {}",
                        origin.locate(false, line, col),
                        root[1],
                        policy.spec.target.name
                    ),
                ));
            }
        }
        TargetKind::System => {
            if let Some(first) = info.package.first().filter(|f| RESERVED_ROOTS.contains(&f.as_str())) {
                problems.push(Problem::new(
                    me.clone(),
                    Reason::PackageOutsideRoot,
                    format!(
                        "{}: package {package} is under the reserved root {first}; System policies may use any package not under {}",
                        origin.locate(false, line, col),
                        RESERVED_ROOTS.join(", ")
                    ),
                ));
            }
        }
    }
    // The generated entrypoint iterates these rules as sets; anything else OPA refuses to load.
    for rule in info.rules.iter().filter(|r| DECISION_RULES.contains(&r.name.as_str()) && !r.set) {
        problems.push(Problem::new(
            me.clone(),
            Reason::InvalidRego,
            format!(
                "{}: rule {} must be a partial set rule: write `{} contains decision if {{ ... }}`",
                origin.locate(false, rule.line, rule.col),
                rule.name,
                rule.name
            ),
        ));
    }
    // A decision whose `allowed` is written as a literal that cannot mean what it says: the
    // entrypoint would fail closed on it (see `bundle::entrypoint`), so say so at build time.
    for rule in info.rules.iter().filter(|r| r.set) {
        let Some((literal, l, c)) = &rule.allowed else { continue };
        let why = match (rule.name.as_str(), literal.as_str()) {
            ("enforce", "true" | "false") | ("deny", "false") => continue,
            ("enforce", _) => format!("an enforce decision's allowed must be true or false, not {literal}"),
            ("deny", "true") => {
                "a deny decision cannot say allowed: true (use enforce for an allow)".to_string()
            }
            ("deny", _) => format!("a deny decision's allowed, when given, must be false, not {literal}"),
            _ => continue,
        };
        problems.push(Problem::new(
            me.clone(),
            Reason::InvalidRego,
            format!("{}: {why}", origin.locate(false, *l, *c)),
        ));
    }
    let is_log = info.package.ends_with(&["system".to_string(), "log".to_string()]);
    for mask in info.masks.iter().filter(|_| is_log) {
        if !crate::bundle::masks::pointer_allowed(&mask.pointer) {
            problems.push(Problem::new(
                me.clone(),
                Reason::InvalidMask,
                format!(
                    "{}: mask pointer {:?} must start with /input, /result or /nd_builtin_cache",
                    origin.locate(false, mask.line, mask.col),
                    mask.pointer
                ),
            ));
        }
    }
    if let Some(tests) = &policy.spec.tests
        && let Err(e) = rego::parse_module(&format!("{key}_test.rego"), tests)
    {
        problems.push(Problem::new(me.clone(), Reason::InvalidRego, located(true, &e)));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let name = key.name.clone();
    Ok(PolicyModule { name, package: info.package, rego: policy.spec.rego.as_str().into() })
}
