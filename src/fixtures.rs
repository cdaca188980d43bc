//! Test fixtures: builders on the API types, so that a test states exactly the objects its
//! scenario needs instead of copying `examples/`.
//!
//! For tests only (unit and integration); not part of edict's interface.
//!
//! ```ignore
//! let objects = [
//!     Tenant::test("acme").located(),
//!     Stack::test("acme-platform", "baseline").selects("tier", "prod").located(),
//!     System::test("acme-payments", "payments").labels([("tier", "prod")]).uid("u1").finalized().located(),
//!     Policy::test("acme-payments", "no-privileged").for_system("payments").located(),
//! ];
//! ```
//!
//! Every builder starts from an object that is valid on its own: `Tenant::test("acme")` governs
//! `acme-*` with its Stacks in `acme-platform`; Stacks and Systems are of type `kubernetes`; a
//! Policy gets a Rego module whose package fits its target, until `.rego(..)` says otherwise.
//! `.build()` gives the object; `.located()` gives it as the API server would hand it to the
//! engine (a [`Located`] with an empty [`Origin`](crate::sources::manifest::Origin)).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Map, Value};

use crate::api::{
    DefaultDecision, Enforcement, Policy, PolicySpec, PolicyStatus, PolicyTarget, Retention, Stack,
    StackSpec, StackStatus, Storage, System, SystemSpec, SystemStatus, SystemType, TargetKind, Tenant,
    TenantSpec, TenantStatus,
};
use crate::sources::manifest::{Located, Object};

/// The finalizer the operator puts on every System (`operator::wiring::FINALIZER`).
pub const FINALIZER: &str = "edict.dev/cleanup";

/// An object as the engine consumes it from a watch: no file to point at.
pub fn located(object: impl Into<Object>) -> Located {
    Located { object: object.into(), origin: Default::default() }
}

impl From<Tenant> for Object {
    fn from(o: Tenant) -> Self {
        Object::Tenant(o)
    }
}

impl From<Stack> for Object {
    fn from(o: Stack) -> Self {
        Object::Stack(o)
    }
}

impl From<System> for Object {
    fn from(o: System) -> Self {
        Object::System(o)
    }
}

impl From<Policy> for Object {
    fn from(o: Policy) -> Self {
        Object::Policy(o)
    }
}

fn object_of(value: Value, what: &str) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("{what} must be a JSON object, not {other}"),
    }
}

fn terms<'a>(patterns: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    patterns.into_iter().map(str::to_string).collect()
}

/// Methods every fixture builder shares: the object, and the object as the engine consumes it.
macro_rules! fixture {
    ($builder:ident, $kind:ident, $status:ident) => {
        impl $builder {
            /// The status the object shows (as edict wrote it before).
            pub fn status(mut self, status: $status) -> Self {
                self.0.status = Some(status);
                self
            }

            /// The object.
            pub fn build(self) -> $kind {
                self.0
            }

            /// The object as the API server hands it to the engine (no origin).
            pub fn located(self) -> Located {
                located(self.build())
            }

            /// `metadata.generation`, as the API server counts spec changes.
            pub fn generation(mut self, generation: i64) -> Self {
                self.0.metadata.generation = Some(generation);
                self
            }

            /// `metadata.uid`.
            pub fn uid(mut self, uid: &str) -> Self {
                self.0.metadata.uid = Some(uid.to_string());
                self
            }

            /// Add `metadata.labels`.
            pub fn labels<'a>(mut self, labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
                let map = self.0.metadata.labels.get_or_insert_with(BTreeMap::new);
                map.extend(labels.into_iter().map(|(k, v)| (k.to_string(), v.to_string())));
                self
            }
        }

        impl From<$builder> for $kind {
            fn from(b: $builder) -> Self {
                b.build()
            }
        }

        impl From<$builder> for Object {
            fn from(b: $builder) -> Self {
                b.build().into()
            }
        }

        impl From<$builder> for Located {
            fn from(b: $builder) -> Self {
                b.located()
            }
        }
    };
}

/// A Tenant under construction: see [`Tenant::test`].
#[derive(Clone, Debug)]
pub struct TestTenant(Tenant);
fixture!(TestTenant, Tenant, TenantStatus);

impl Tenant {
    /// A Tenant `name` that governs the namespaces `<name>-*` and keeps its Stacks in
    /// `<name>-platform`, with the embedded store.
    pub fn test(name: &str) -> TestTenant {
        TestTenant(Tenant::new(
            name,
            TenantSpec {
                namespaces: vec![format!("{name}-*")],
                namespace_selector: BTreeMap::new(),
                admin_namespace: format!("{name}-platform"),
                retention: None,
                storage: None,
                identity: None,
                opa_version: None,
            },
        ))
    }
}

impl TestTenant {
    /// The namespaces the Tenant governs, as glob patterns (replacing the default `<name>-*`).
    pub fn namespaces<'a>(mut self, patterns: impl IntoIterator<Item = &'a str>) -> Self {
        self.0.spec.namespaces = terms(patterns);
        self
    }

    /// Namespaces whose label `key` matches `pattern` belong to the Tenant too.
    pub fn namespaces_labelled(mut self, key: &str, pattern: &str) -> Self {
        self.0.spec.namespace_selector.entry(key.to_string()).or_default().push(pattern.to_string());
        self
    }

    /// The namespace holding the Tenant's Stacks.
    pub fn admin_namespace(mut self, namespace: &str) -> Self {
        self.0.spec.admin_namespace = namespace.to_string();
        self
    }

    /// Bundle revisions kept per System.
    pub fn retention(mut self, revisions: u32) -> Self {
        self.0.spec.retention = Some(Retention { revisions, decision_days: None });
        self
    }

    /// The Tenant's AWS storage.
    pub fn storage(mut self, storage: Storage) -> Self {
        self.0.spec.storage = Some(storage);
        self
    }

    /// The OPA release the Tenant's OPAs run.
    pub fn opa_version(mut self, version: &str) -> Self {
        self.0.spec.opa_version = Some(version.to_string());
        self
    }
}

/// A Stack under construction: see [`Stack::test`].
#[derive(Clone, Debug)]
pub struct TestStack(Stack);
fixture!(TestStack, Stack, StackStatus);

impl Stack {
    /// A `kubernetes` Stack `name` in `namespace` (its Tenant's admin namespace) with an empty
    /// selector: it selects every System of its Tenant and type.
    pub fn test(namespace: &str, name: &str) -> TestStack {
        let mut stack = Stack::new(
            name,
            StackSpec {
                type_: SystemType::Kubernetes,
                description: None,
                selector: BTreeMap::new(),
                exclude: BTreeMap::new(),
                enforcement: Enforcement::Enforce,
                default_masks: true,
            },
        );
        stack.metadata.namespace = Some(namespace.to_string());
        TestStack(stack)
    }
}

impl TestStack {
    /// Select Systems whose label `key` matches the glob `pattern` (patterns of one key are
    /// alternatives; every key must match).
    pub fn selects(mut self, key: &str, pattern: &str) -> Self {
        self.0.spec.selector.entry(key.to_string()).or_default().push(pattern.to_string());
        self
    }

    /// Select Systems that have the label `key`, whatever its value.
    pub fn selects_label(mut self, key: &str) -> Self {
        self.0.spec.selector.entry(key.to_string()).or_default();
        self
    }

    /// Leave out Systems whose label `key` matches the glob `pattern`.
    pub fn excludes(mut self, key: &str, pattern: &str) -> Self {
        self.0.spec.exclude.entry(key.to_string()).or_default().push(pattern.to_string());
        self
    }

    /// The type of System the Stack applies to.
    pub fn system_type(mut self, type_: SystemType) -> Self {
        self.0.spec.type_ = type_;
        self
    }

    /// Dry run: the Stack's decisions are only reported.
    pub fn monitor(mut self) -> Self {
        self.0.spec.enforcement = Enforcement::Monitor;
        self
    }

    /// Without the default decision-log masks.
    pub fn without_default_masks(mut self) -> Self {
        self.0.spec.default_masks = false;
        self
    }
}

/// A System under construction: see [`System::test`].
#[derive(Clone, Debug)]
pub struct TestSystem(System);
fixture!(TestSystem, System, SystemStatus);

impl System {
    /// A `kubernetes` System `name` in `namespace`, enforcing, failing closed, without labels.
    pub fn test(namespace: &str, name: &str) -> TestSystem {
        let mut system = System::new(
            name,
            SystemSpec {
                type_: SystemType::Kubernetes,
                description: None,
                enforcement: Enforcement::Enforce,
                default_decision: DefaultDecision::Deny,
                features: Map::new(),
                options: Map::new(),
                service_account_name: None,
            },
        );
        system.metadata.namespace = Some(namespace.to_string());
        TestSystem(system)
    }
}

impl TestSystem {
    /// What kind of software the System is.
    pub fn system_type(mut self, type_: SystemType) -> Self {
        self.0.spec.type_ = type_;
        self
    }

    /// Dry run: the System's decisions are only reported.
    pub fn monitor(mut self) -> Self {
        self.0.spec.enforcement = Enforcement::Monitor;
        self
    }

    /// The answer when no rule decides.
    pub fn default_decision(mut self, decision: DefaultDecision) -> Self {
        self.0.spec.default_decision = decision;
        self
    }

    /// `spec.features` (a JSON object).
    pub fn features(mut self, features: Value) -> Self {
        self.0.spec.features = object_of(features, "spec.features");
        self
    }

    /// `spec.options` (a JSON object).
    pub fn options(mut self, options: Value) -> Self {
        self.0.spec.options = object_of(options, "spec.options");
        self
    }

    /// The ServiceAccount the System's OPA runs as.
    pub fn service_account(mut self, name: &str) -> Self {
        self.0.spec.service_account_name = Some(name.to_string());
        self
    }

    /// Carries edict's finalizer, as once the operator has applied it.
    pub fn finalized(mut self) -> Self {
        let finalizers = self.0.metadata.finalizers.get_or_insert_with(Vec::new);
        if !finalizers.iter().any(|f| f == FINALIZER) {
            finalizers.push(FINALIZER.to_string());
        }
        self
    }

    /// Being deleted: edict's finalizer holds it and the API server has set `deletionTimestamp`.
    pub fn deleting(self) -> Self {
        let mut this = self.finalized();
        this.0.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        this
    }
}

/// A Policy under construction: see [`Policy::test`].
#[derive(Clone, Debug)]
pub struct TestPolicy {
    policy: Policy,
    /// Whether `.rego(..)` was given; otherwise the module is made to fit the target.
    rego_given: bool,
}

impl Policy {
    /// A Policy `name` in `namespace`. Attach it with `.for_system(..)` or `.for_stack(..)`
    /// (until then it targets the System named like the Policy); without `.rego(..)` its module
    /// is a valid one in a package its target allows, whose one rule never decides.
    pub fn test(namespace: &str, name: &str) -> TestPolicy {
        let mut policy = Policy::new(
            name,
            PolicySpec {
                target: PolicyTarget { kind: TargetKind::System, name: name.to_string() },
                description: None,
                rego: String::new(),
                tests: None,
            },
        );
        policy.metadata.namespace = Some(namespace.to_string());
        TestPolicy { policy, rego_given: false }
    }
}

impl TestPolicy {
    /// Attach to the System `name` (in the Policy's namespace).
    pub fn for_system(mut self, name: &str) -> Self {
        self.policy.spec.target = PolicyTarget { kind: TargetKind::System, name: name.to_string() };
        self
    }

    /// Attach to the Stack `name` (in the Policy's namespace).
    pub fn for_stack(mut self, name: &str) -> Self {
        self.policy.spec.target = PolicyTarget { kind: TargetKind::Stack, name: name.to_string() };
        self
    }

    /// The Rego module.
    pub fn rego(mut self, rego: &str) -> Self {
        self.policy.spec.rego = rego.to_string();
        self.rego_given = true;
        self
    }

    /// The module's Rego tests.
    pub fn tests(mut self, tests: &str) -> Self {
        self.policy.spec.tests = Some(tests.to_string());
        self
    }

    /// `metadata.generation`, as the API server counts spec changes.
    pub fn generation(mut self, generation: i64) -> Self {
        self.policy.metadata.generation = Some(generation);
        self
    }

    /// `metadata.uid`.
    pub fn uid(mut self, uid: &str) -> Self {
        self.policy.metadata.uid = Some(uid.to_string());
        self
    }

    /// The status the object shows (as edict wrote it before).
    pub fn status(mut self, status: PolicyStatus) -> Self {
        self.policy.status = Some(status);
        self
    }

    /// The package the default module declares: under `stacks.<stack_id>` for a Stack's
    /// Policy, under `fixtures` for a System's.
    fn default_package(&self) -> String {
        let name = crate::bundle::stack_id(self.policy.metadata.name.as_deref().unwrap_or_default());
        match self.policy.spec.target.kind {
            TargetKind::Stack => {
                format!("stacks.{}.{name}", crate::bundle::stack_id(&self.policy.spec.target.name))
            }
            TargetKind::System => format!("fixtures.{name}"),
        }
    }

    /// The object.
    pub fn build(mut self) -> Policy {
        if !self.rego_given {
            self.policy.spec.rego = format!(
                "package {}\n\ndeny contains \"never\" if {{\n\tinput.fixture_never_set == true\n}}\n",
                self.default_package()
            );
        }
        self.policy
    }

    /// The object as the API server hands it to the engine (no origin).
    pub fn located(self) -> Located {
        located(self.build())
    }
}

impl From<TestPolicy> for Policy {
    fn from(b: TestPolicy) -> Self {
        b.build()
    }
}

impl From<TestPolicy> for Object {
    fn from(b: TestPolicy) -> Self {
        b.build().into()
    }
}

impl From<TestPolicy> for Located {
    fn from(b: TestPolicy) -> Self {
        b.located()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::workspace::Workspace;
    use crate::model::ObjectKey;
    use serde_json::json;

    #[test]
    fn a_built_system_has_what_it_was_given() {
        let system = System::test("acme-payments", "payments")
            .labels([("tier", "prod"), ("team", "payments")])
            .features(json!({"proxies": {"allowed": ["envoyproxy/envoy"]}}))
            .uid("u1")
            .finalized()
            .finalized()
            .build();
        assert_eq!(system.metadata.namespace.as_deref(), Some("acme-payments"));
        assert_eq!(system.metadata.name.as_deref(), Some("payments"));
        let labels = system.metadata.labels.clone().expect("labels");
        assert_eq!(labels.get("tier").map(String::as_str), Some("prod"));
        assert_eq!(labels.get("team").map(String::as_str), Some("payments"));
        assert_eq!(system.spec.features["proxies"]["allowed"][0], "envoyproxy/envoy");
        assert_eq!(system.metadata.uid.as_deref(), Some("u1"));
        assert_eq!(system.metadata.finalizers, Some(vec![FINALIZER.to_string()]), "added once");
        assert!(system.metadata.deletion_timestamp.is_none());
        #[cfg(feature = "aws")]
        assert_eq!(FINALIZER, crate::operator::wiring::FINALIZER);
    }

    #[test]
    fn built_objects_read_as_their_manifests_do() {
        let yaml = r#"
apiVersion: edict.dev/v1alpha1
kind: Stack
metadata: {name: baseline, namespace: acme-platform}
spec:
  type: envoy
  selector: {tier: ["prod*", "staging"]}
  exclude: {baseline: [opt-out]}
"#;
        let parsed = crate::sources::manifest::parse("", yaml).objects.remove(0);
        let Object::Stack(parsed) = parsed.object else { panic!("a Stack") };
        let built = Stack::test("acme-platform", "baseline")
            .system_type(SystemType::Envoy)
            .selects("tier", "prod*")
            .selects("tier", "staging")
            .excludes("baseline", "opt-out")
            .build();
        assert_eq!((&built.metadata, &built.spec), (&parsed.metadata, &parsed.spec));

        let tenant =
            Tenant::test("beta").namespaces([]).namespaces_labelled("edict.dev/tenant", "beta").build();
        assert!(tenant.spec.namespaces.is_empty());
        assert_eq!(tenant.spec.admin_namespace, "beta-platform");
        assert_eq!(tenant.spec.namespace_selector["edict.dev/tenant"], ["beta"]);
    }

    #[test]
    fn objects_built_only_from_fixtures_build_a_bundle() {
        let mut ws = Workspace::empty("c1");
        for located in [
            Tenant::test("acme").located(),
            Stack::test("acme-platform", "baseline").selects("tier", "prod").located(),
            Policy::test("acme-platform", "stack-rules").for_stack("baseline").located(),
            System::test("acme-payments", "payments").labels([("tier", "prod")]).located(),
            Policy::test("acme-payments", "no-privileged").for_system("payments").located(),
            System::test("acme-shop", "storefront").labels([("tier", "dev")]).located(),
        ] {
            ws.apply(located);
        }
        let keys = [ObjectKey::new("acme-payments", "payments"), ObjectKey::new("acme-shop", "storefront")];
        ws.rebuild(&keys);
        assert_eq!(ws.problems(), vec![], "valid by default");
        let payments = &ws.builds[&keys[0]];
        assert!(payments.bundle.is_some(), "{:?}", payments.problems);
        assert_eq!(payments.tenant.as_deref(), Some("acme"));
        assert_eq!(payments.stacks(), vec![ObjectKey::new("acme-platform", "baseline")], "selected");
        assert_eq!(payments.policy_count(), 1);
        let storefront = &ws.builds[&keys[1]];
        assert!(storefront.bundle.is_some(), "{:?}", storefront.problems);
        assert!(storefront.stacks().is_empty(), "tier dev is not selected");
    }

    #[test]
    fn a_policy_with_rego_given_keeps_it() {
        let rego = "package stacks.baseline.x\n\ndeny contains \"no\" if input.bad\n";
        let policy =
            Policy::test("acme-platform", "x").for_stack("baseline").rego(rego).tests("package t").build();
        assert_eq!(policy.spec.rego, rego);
        assert_eq!(policy.spec.tests.as_deref(), Some("package t"));
        assert_eq!(policy.spec.target, PolicyTarget { kind: TargetKind::Stack, name: "baseline".into() });
    }
}
