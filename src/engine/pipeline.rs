//! Reconcile one System without I/O: resolve what it references, validate it, build its
//! bundle, and check that the bundle compiles and its Policies' tests pass.
//!
//! The result either carries a bundle that may be published, or the problems that stop it,
//! each attributed to the object that must change (and repeated on the System as
//! `DependencyFailed`, so `kubectl describe system` says what and where).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::api::{TargetKind, TestSummary};
use crate::bundle::{self, Bundle, BundleInput, PolicyModule, StackInput};
use crate::engine::catalog::{Catalog, PolicyEntry, tenancy_problem};
use crate::engine::problem::{ObjectRef, Problem, Reason};
use crate::model::ObjectKey;
use crate::policy::rego;
use crate::policy::{Capabilities, CompileError, Gate};

/// The entrypoint every bundle is compiled against.
pub const ENTRYPOINT: &str = "data.main.main";

/// What building one System produced.
#[derive(Clone, Debug)]
pub struct SystemBuild {
    /// The System.
    pub key: ObjectKey,
    /// Its Tenant, when it has exactly one.
    pub tenant: Option<String>,
    /// The input the bundle was built from (when resolution succeeded).
    pub input: Option<BundleInput>,
    /// The bundle, only when every check passed.
    pub bundle: Option<Bundle>,
    /// Everything that stopped it, attributed to the objects that must change.
    pub problems: Vec<Problem>,
    /// Rego test counts of every Policy whose tests ran, by Policy.
    pub tests: BTreeMap<ObjectKey, TestSummary>,
    /// `metadata.generation` of every object the bundle is built from (`System/ns/name`,
    /// `Stack/ns/name`, `Policy/ns/name`), where known. Not part of the bundle: publishing uses
    /// it so that a writer with older inputs never replaces a revision built from newer ones.
    pub generations: BTreeMap<String, i64>,
}

impl SystemBuild {
    /// The bound Stacks.
    pub fn stacks(&self) -> Vec<ObjectKey> {
        self.input.as_ref().map(|i| i.stacks.iter().map(|s| s.key.clone()).collect()).unwrap_or_default()
    }

    /// Number of the System's own Policies.
    pub fn policy_count(&self) -> usize {
        self.input.as_ref().map(|i| i.policies.len()).unwrap_or_default()
    }
}

/// What the compile gate said of one set of modules.
type GateResult = Result<(), Vec<CompileError>>;

/// The results of one test module, or why it could not run.
type TestRun = Result<Vec<rego::TestResult>, rego::RegoError>;

/// The checks a bundle must pass, with caches keyed by the content they depend on, shared
/// across builds.
#[derive(Debug)]
pub struct Checks {
    compiled: Mutex<HashMap<[u8; 32], GateResult>>,
    tested: Mutex<HashMap<[u8; 32], TestRun>>,
    gate: Gate,
    opa: &'static Capabilities,
}

impl Default for Checks {
    fn default() -> Self {
        Self::for_opa(Capabilities::default_release())
    }
}

impl Checks {
    /// Fresh, empty caches, checking against the process's OPA release (`--opa-version`, else
    /// the newest edict knows).
    pub fn new() -> Self {
        Self::default()
    }

    /// Fresh, empty caches, checking against the builtins of one OPA release.
    pub fn for_opa(opa: &'static Capabilities) -> Self {
        Checks { compiled: Mutex::default(), tested: Mutex::default(), gate: Gate::new(), opa }
    }

    /// The OPA release bundles are checked against.
    pub fn opa(&self) -> &'static Capabilities {
        self.opa
    }

    /// The compile gate: what the compiler of OPA release `opa` refuses, edict refuses.
    fn compile(&self, bundle: &Bundle, opa: &'static Capabilities) -> Result<(), Vec<CompileError>> {
        let modules = bundle.modules();
        let release = ("opa", opa.version);
        let key =
            digest(modules.iter().map(|(p, t)| (p.as_str(), t.as_str())).chain(std::iter::once(release)));
        if let Some(hit) = self.compiled.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return hit;
        }
        // Compilation depends on the modules only, so the data document is not part of the key.
        let errors = self.gate.check(&modules, opa);
        let result = if errors.is_empty() { Ok(()) } else { Err(errors) };
        if let Ok(mut c) = self.compiled.lock() {
            bound(&mut c);
            c.insert(key, result.clone());
        }
        result
    }

    fn test(
        &self,
        modules: &[(String, String)],
        tests: &(String, String),
    ) -> Result<Vec<rego::TestResult>, rego::RegoError> {
        let key = digest(modules.iter().chain(std::iter::once(tests)).map(|(p, t)| (p.as_str(), t.as_str())));
        if let Some(hit) = self.tested.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return hit;
        }
        let result = rego::run_tests(modules, tests);
        if let Ok(mut c) = self.tested.lock() {
            bound(&mut c);
            c.insert(key, result.clone());
        }
        result
    }
}

/// Entries a cache may hold before it starts over, so a long `run --local` does not grow without end.
const CACHE_LIMIT: usize = 50_000;

fn bound<V>(cache: &mut HashMap<[u8; 32], V>) {
    if cache.len() >= CACHE_LIMIT {
        cache.clear();
    }
}

fn digest<'a>(parts: impl Iterator<Item = (&'a str, &'a str)>) -> [u8; 32] {
    let mut h = Sha256::new();
    for (a, b) in parts {
        h.update(a.as_bytes());
        h.update([0]);
        h.update(Sha256::digest(b.as_bytes()));
    }
    h.finalize().into()
}

/// Build one System's bundle. Pure apart from the caches.
pub fn build_system(catalog: &Catalog, key: &ObjectKey, cluster: &str, checks: &Checks) -> SystemBuild {
    let mut out = SystemBuild {
        key: key.clone(),
        tenant: None,
        input: None,
        bundle: None,
        problems: Vec::new(),
        tests: BTreeMap::new(),
        generations: BTreeMap::new(),
    };
    let me = ObjectRef::namespaced("System", key);
    let Some(entry) = catalog.systems().get(key) else {
        out.problems.push(Problem::new(me, Reason::MissingTarget, format!("System {key} does not exist")));
        return out;
    };
    let tenant = match catalog.tenant_of(&key.namespace) {
        Ok(t) => t.to_string(),
        Err((reason, owners)) => {
            out.problems.push(tenancy_problem(me, reason, &owners, &entry.origin, &key.namespace));
            return out;
        }
    };
    out.tenant = Some(tenant.clone());
    // The OPA release the Tenant's OPAs run, else the process's.
    let opa = match catalog.tenants().get(&tenant).map(|t| &t.opa) {
        Some(Err(p)) => {
            out.problems.push(Problem::new(
                me,
                Reason::DependencyFailed,
                format!("{}Tenant {tenant}: {}", entry.origin.prefix(), p.message),
            ));
            return out;
        }
        Some(Ok(Some(named))) => *named,
        _ => checks.opa,
    };

    // Resolve: the System's own Policies and every bound Stack with its Policies.
    let own = catalog.policies_of(TargetKind::System, key);
    let policies = modules_of(&own, &me, &mut out.problems);
    let mut stacks = Vec::new();
    let mut tests = vec![own];
    for stack_key in catalog.index().stacks_of(key) {
        let Some(stack) = catalog.stacks().get(&stack_key) else { continue };
        let attached = catalog.policies_of(TargetKind::Stack, &stack_key);
        let modules = modules_of(&attached, &me, &mut out.problems);
        tests.push(attached);
        stacks.push(StackInput {
            key: stack_key,
            generation: stack.stack.metadata.generation,
            enforcement: stack.stack.spec.enforcement,
            default_masks: stack.stack.spec.default_masks,
            policies: modules,
        });
    }
    let system = &entry.system;
    let input = BundleInput {
        tenant,
        cluster: cluster.to_string(),
        system: key.clone(),
        system_type: system.spec.type_,
        enforcement: system.spec.enforcement,
        default_decision: system.spec.default_decision,
        labels: system.metadata.labels.clone().unwrap_or_default(),
        features: system.spec.features.clone(),
        options: system.spec.options.clone(),
        policies,
        stacks,
    };
    out.generations = generations(catalog, key);
    out.input = Some(input.clone());
    if !out.problems.is_empty() {
        return out;
    }

    // Check: the whole bundle compiles as OPA compiles it, then every attached test passes
    // (as `opa test` does, tests run only on modules that compile).
    let bundle = bundle::build(&input);
    if let Err(errors) = checks.compile(&bundle, opa) {
        for e in &errors {
            out.problems.extend(compile_problems(catalog, &input, &me, e));
        }
        out.problems.dedup();
        return out;
    }
    for attached in &tests {
        run_tests(attached, checks, &me, &mut out);
    }
    if !out.problems.is_empty() {
        return out;
    }
    out.bundle = Some(bundle);
    out
}

/// The generations of the System, its Policies, its bound Stacks and theirs.
fn generations(catalog: &Catalog, key: &ObjectKey) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    let mut note = |kind: &str, k: &ObjectKey, generation: Option<i64>| {
        if let Some(g) = generation {
            out.insert(format!("{kind}/{k}"), g);
        }
    };
    if let Some(s) = catalog.systems().get(key) {
        note("System", key, s.system.metadata.generation);
    }
    for p in catalog.policies_of(TargetKind::System, key) {
        note(
            "Policy",
            &ObjectKey::new(&key.namespace, p.policy.metadata.name.clone().unwrap_or_default()),
            p.policy.metadata.generation,
        );
    }
    for stack in catalog.index().stacks_of(key) {
        if let Some(s) = catalog.stacks().get(&stack) {
            note("Stack", &stack, s.stack.metadata.generation);
        }
        for p in catalog.policies_of(TargetKind::Stack, &stack) {
            let name = p.policy.metadata.name.clone().unwrap_or_default();
            note("Policy", &ObjectKey::new(&stack.namespace, name), p.policy.metadata.generation);
        }
    }
    out
}

/// The modules of attached Policies; broken ones add their problems and a `DependencyFailed` on the System.
fn modules_of(attached: &[&PolicyEntry], me: &ObjectRef, problems: &mut Vec<Problem>) -> Vec<PolicyModule> {
    let mut modules = Vec::new();
    for entry in attached {
        match &entry.module {
            Ok(m) => modules.push(m.clone()),
            Err(found) => {
                for p in found {
                    problems.push(p.clone());
                    problems.push(dependency(me, p));
                }
            }
        }
    }
    modules
}

fn dependency(me: &ObjectRef, cause: &Problem) -> Problem {
    Problem::new(
        me.clone(),
        Reason::DependencyFailed,
        format!("{}: {}: {}", cause.object, cause.reason, cause.message),
    )
}

fn run_tests(attached: &[&PolicyEntry], checks: &Checks, me: &ObjectRef, out: &mut SystemBuild) {
    for (key, result) in tests_of(attached, checks) {
        let found = match result {
            Ok(results) => {
                let failed = results.iter().filter(|r| r.failure.is_some()).count() as u32;
                let passed = results.len() as u32 - failed;
                out.tests.insert(key.clone(), TestSummary { passed, failed });
                let origin = attached.iter().find(|e| e.module.as_ref().is_ok_and(|m| m.name == key.name));
                results
                    .into_iter()
                    .filter_map(|r| {
                        let why = r.failure?;
                        let at = origin.map(|o| o.origin.locate(true, r.at.0, r.at.1)).unwrap_or_default();
                        Some(Problem::new(
                            ObjectRef::namespaced("Policy", &key),
                            Reason::TestFailed,
                            format!("{at}: {} failed: {why}", r.name),
                        ))
                    })
                    .collect::<Vec<_>>()
            }
            Err(p) => vec![p],
        };
        for p in found {
            out.problems.push(dependency(me, &p));
            out.problems.push(p);
        }
    }
}

/// Run the tests of every Policy attached to one Stack or System, with all of the target's modules loaded.
pub fn test_target(
    catalog: &Catalog,
    kind: TargetKind,
    target: &ObjectKey,
    checks: &Checks,
) -> Vec<(ObjectKey, Result<Vec<rego::TestResult>, Problem>)> {
    tests_of(&catalog.policies_of(kind, target), checks)
}

fn tests_of(
    attached: &[&PolicyEntry],
    checks: &Checks,
) -> Vec<(ObjectKey, Result<Vec<rego::TestResult>, Problem>)> {
    let modules: Vec<(String, String)> = attached
        .iter()
        .filter_map(|e| e.module.as_ref().ok())
        .map(|m| (m.path(), m.rego.to_string()))
        .collect();
    let mut out = Vec::new();
    for entry in attached {
        let (Some(tests), Ok(module)) = (&entry.policy.spec.tests, &entry.module) else { continue };
        let key =
            ObjectKey::new(entry.policy.metadata.namespace.clone().unwrap_or_default(), module.name.clone());
        let label = format!("{}_test.rego", module.path().trim_end_matches(".rego"));
        let result = checks.test(&modules, &(label, tests.clone())).map_err(|e| {
            Problem::new(
                ObjectRef::namespaced("Policy", &key),
                Reason::InvalidRego,
                format!("{}: {}", entry.origin.locate(true, e.line.max(1), e.col.max(1)), e.message),
            )
        });
        out.push((key, result));
    }
    out
}

/// Attribute a compile error to the Policy whose module it names, else to the System. The
/// message keeps OPA's error code and wording, on one line.
fn compile_problems(
    catalog: &Catalog,
    input: &BundleInput,
    me: &ObjectRef,
    e: &CompileError,
) -> Vec<Problem> {
    let what = format!("{}: {}", e.code, e.message.replace("\n\t", "; "));
    let owner = input
        .policies
        .iter()
        .map(|m| (m, input.system.namespace.as_str()))
        .chain(input.stacks.iter().flat_map(|s| s.policies.iter().map(|m| (m, s.key.namespace.as_str()))))
        .find(|(m, _)| m.path() == e.file);
    match owner {
        Some((module, ns)) => {
            let key = ObjectKey::new(ns, module.name.clone());
            let at = catalog
                .policies()
                .get(&key)
                .map(|p| p.origin.locate(false, e.line, e.col))
                .unwrap_or_else(|| format!("{}:{}:{}", e.file, e.line, e.col));
            let cause = Problem::new(
                ObjectRef::namespaced("Policy", &key),
                Reason::InvalidRego,
                format!("{at}: {what}"),
            );
            vec![dependency(me, &cause), cause]
        }
        // OPA's "error limit reached" has no place: the errors before it say where.
        None if e.line == 0 => vec![Problem::new(me.clone(), Reason::InvalidRego, what)],
        None => vec![Problem::new(
            me.clone(),
            Reason::InvalidRego,
            format!("generated bundle does not compile: {}:{}:{}: {what}", e.file, e.line, e.col),
        )],
    }
}

/// Build many Systems on all cores (rayon's pool: the compile gate inside each build shares it).
pub fn build_systems(
    catalog: &Catalog,
    keys: &[ObjectKey],
    cluster: &str,
    checks: &Checks,
) -> Vec<SystemBuild> {
    use rayon::prelude::*;
    keys.par_iter().map(|k| build_system(catalog, k, cluster, checks)).collect()
}
