//! `CheckRecursion`, and the dependency graph between rules that it and the type checker read.

use std::collections::{BTreeMap, BTreeSet};

use super::model::{Program, arg_names, ref_parts, with_keys};
use super::safety::declared_in;
use super::structure::{error, queries};
use super::{CompileError, ErrorCode};

/// The rules each rule reads: through names of its package, imports, `data` references and
/// calls (computed once per program).
pub fn dependencies<'p>(program: &'p Program) -> &'p [BTreeSet<usize>] {
    program.dependencies.get_or_init(|| compute_dependencies(program))
}

/// Rules of modules that are only context read nothing: they were checked before.
fn compute_dependencies(program: &Program) -> Vec<BTreeSet<usize>> {
    program
        .rules
        .iter()
        .enumerate()
        .map(|(i, def)| {
            if i >= program.checked {
                return BTreeSet::new();
            }
            let mut declared = arg_names(def.rule);
            for q in queries(def.rule) {
                declared.extend(declared_in(q));
            }
            let mut deps = BTreeSet::new();
            super::model::walk_refs(def.rule, &mut |e| {
                let Some((head, parts)) = ref_parts(e) else { return };
                let name = head.text();
                if declared.contains(name) {
                    return;
                }
                let Some(global) = program.globals[def.module].get(name) else { return };
                if global[0] != "data" {
                    return;
                }
                deps.extend(program.rules_for(&with_keys(global[1..].to_vec(), parts)));
            });
            deps
        })
        .collect()
}

/// `CheckRecursion`: no rule depends on itself.
pub fn recursion(program: &Program, errors: &mut Vec<CompileError>) {
    let deps = dependencies(program);
    let cyclic = on_cycles(deps);
    for (start, def) in program.own_rules().iter().enumerate() {
        if !cyclic[start] {
            continue;
        }
        if let Some(cycle) = path_to(deps, start) {
            let mut names: Vec<String> = vec![def.name()];
            names.extend(cycle.iter().map(|&i| program.rules[i].name()));
            errors.push(error(
                program,
                def.module,
                def.span(),
                ErrorCode::Recursion,
                format!("rule {} is recursive: {}", def.name(), names.join(" -> ")),
            ));
        }
    }
}

/// Which rules lie on a cycle: those in a strongly connected component of more than one rule,
/// or that read themselves.
fn on_cycles(deps: &[BTreeSet<usize>]) -> Vec<bool> {
    let mut cyclic = vec![false; deps.len()];
    for component in components(deps) {
        let cycle = component.len() > 1 || deps[component[0]].contains(&component[0]);
        for w in component {
            cyclic[w] = cycle;
        }
    }
    cyclic
}

/// The strongly connected components of a graph (Tarjan's algorithm), each after every
/// component it reaches: what a node reads comes first.
pub(super) fn components(deps: &[BTreeSet<usize>]) -> Vec<Vec<usize>> {
    struct Tarjan<'d> {
        deps: &'d [BTreeSet<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        found: Vec<Vec<usize>>,
    }
    impl Tarjan<'_> {
        fn visit(&mut self, v: usize) {
            self.index[v] = Some(self.next);
            self.low[v] = self.next;
            self.next += 1;
            self.stack.push(v);
            self.on_stack[v] = true;
            for &w in &self.deps[v] {
                match self.index[w] {
                    None => {
                        self.visit(w);
                        self.low[v] = self.low[v].min(self.low[w]);
                    }
                    Some(iw) if self.on_stack[w] => self.low[v] = self.low[v].min(iw),
                    Some(_) => {}
                }
            }
            if Some(self.low[v]) == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                component.sort_unstable();
                self.found.push(component);
            }
        }
    }
    let n = deps.len();
    let mut t = Tarjan {
        deps,
        index: vec![None; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        next: 0,
        found: Vec::new(),
    };
    for v in 0..n {
        if t.index[v].is_none() {
            t.visit(v);
        }
    }
    t.found
}

/// A path of dependencies from `start` back to itself, if there is one (breadth first, so the
/// shortest).
fn path_to(deps: &[BTreeSet<usize>], start: usize) -> Option<Vec<usize>> {
    let mut previous: BTreeMap<usize, usize> = BTreeMap::new();
    let mut queue: std::collections::VecDeque<usize> = deps[start].iter().copied().collect();
    for &d in &deps[start] {
        previous.entry(d).or_insert(start);
    }
    while let Some(node) = queue.pop_front() {
        if node == start {
            let mut path = vec![start];
            let mut cur = previous[&start];
            while cur != start {
                path.push(cur);
                cur = previous[&cur];
            }
            path.reverse();
            return Some(path);
        }
        for &next in &deps[node] {
            if let std::collections::btree_map::Entry::Vacant(e) = previous.entry(next) {
                e.insert(node);
                queue.push_back(next);
            }
        }
    }
    None
}
