//! The Helm chart (`charts/edict`), the kustomize manifests (`config/`) and the GitOps examples
//! (`examples/gitops/`): they render with the project's pinned helm and kubectl, every object is
//! the Kubernetes type it claims to be (no unknown kind, no field its type does not know), and
//! they say what the operator's contract says. The admission policy's CEL is evaluated against
//! users, groups and edits.
//!
//! helm and kubectl come from `.cache/bin`, installed by `scripts/setup.sh`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Namespace, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

const RELEASE: &str = "edict";
const NAMESPACE: &str = "edict-system";
const CHART: &str = "charts/edict";
const OPERATOR_USER: &str = "system:serviceaccount:edict-system:edict";
const ARGOCD_USER: &str = "system:serviceaccount:argocd:argocd-application-controller";

// ---------------------------------------------------------------------------------------------
// Running the pinned tools.

/// A tool from `.cache/bin`; a missing one fails the test with the command that installs it.
fn tool(name: &str) -> PathBuf {
    let path = common::root().join(".cache/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run `scripts/setup.sh` (or `scripts/test.sh`, which runs it) first",
        path.display()
    );
    path
}

/// Runs `scripts/helm.sh ARGS` in the project root.
fn helm_sh(args: &[&str]) -> std::process::Output {
    tool("helm");
    tool("kubectl");
    Command::new(common::root().join("scripts/helm.sh"))
        .args(args)
        .current_dir(common::root())
        .output()
        .expect("run scripts/helm.sh")
}

/// Runs `scripts/helm.sh ARGS`, which must succeed, and returns its stdout.
fn helm_ok(args: &[&str]) -> String {
    let out = helm_sh(args);
    assert!(
        out.status.success(),
        "scripts/helm.sh {} failed ({}):\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// `helm template` of the chart as release `edict` in `edict-system`, CRDs included.
fn render(extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["template", RELEASE, CHART, "--namespace", NAMESPACE, "--include-crds"];
    args.extend_from_slice(extra);
    parse_documents(&helm_ok(&args))
}

/// `kubectl kustomize DIR` with the pinned kubectl.
fn kustomize(dir: &str) -> Vec<Value> {
    parse_documents(&helm_ok(&["kubectl", "kustomize", dir]))
}

/// Every non-empty document of a YAML stream.
fn parse_documents(yaml: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(yaml)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("invalid YAML: {e}\n{yaml}")))
        .filter(|doc| !doc.is_null())
        .collect()
}

fn read(path: &str) -> String {
    let full = common::root().join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("read {}: {e}", full.display()))
}

fn read_yaml(path: &str) -> Vec<Value> {
    parse_documents(&read(path))
}

// ---------------------------------------------------------------------------------------------
// Typing what was rendered.

fn kind_of(doc: &Value) -> (&str, &str) {
    (doc["apiVersion"].as_str().unwrap_or(""), doc["kind"].as_str().unwrap_or(""))
}

fn name_of(doc: &Value) -> String {
    let name = doc["metadata"]["name"].as_str().unwrap_or("?");
    match doc["metadata"]["namespace"].as_str() {
        Some(ns) => format!("{}/{ns}/{name}", doc["kind"].as_str().unwrap_or("?")),
        None => format!("{}/{name}", doc["kind"].as_str().unwrap_or("?")),
    }
}

/// The first place where two JSON values differ, as a JSON pointer, or None.
fn first_difference(a: &Value, b: &Value, at: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| match (x.get(k), y.get(k)) {
                (Some(p), Some(q)) => first_difference(p, q, &format!("{at}/{k}")),
                (Some(p), None) => Some(format!("{at}/{k}: {p} is lost")),
                (None, Some(q)) => Some(format!("{at}/{k}: {q} appears")),
                (None, None) => None,
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            x.iter().zip(y).enumerate().find_map(|(i, (p, q))| first_difference(p, q, &format!("{at}/{i}")))
        }
        // YAML's 0 and the type's 0.0 are the same number.
        (Value::Number(x), Value::Number(y)) if x.as_f64() == y.as_f64() => None,
        _ if a == b => None,
        _ => Some(format!("{at}: {a} != {b}")),
    }
}

/// Deserializes `doc` as `T` and serializes it back: a field that `T` does not know (a typo, a
/// wrong indentation) is lost on the way, and fails the test.
fn strict<T: DeserializeOwned + serde::Serialize>(doc: &Value) -> T {
    let typed: T = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{} is not a valid {}: {e}", name_of(doc), std::any::type_name::<T>()));
    let back = serde_json::to_value(&typed).expect("serialize");
    if let Some(diff) = first_difference(doc, &back, "") {
        panic!("{} has a field its type does not know: {diff}", name_of(doc));
    }
    typed
}

/// Checks that `doc` is one of the kinds edict's manifests may hold, as its Kubernetes type.
/// Any other kind fails the test.
fn check_typed(doc: &Value) {
    match kind_of(doc) {
        ("v1", "Namespace") => drop(strict::<Namespace>(doc)),
        ("v1", "ServiceAccount") => drop(strict::<ServiceAccount>(doc)),
        ("v1", "Service") => drop(strict::<Service>(doc)),
        ("v1", "ConfigMap") => drop(strict::<ConfigMap>(doc)),
        ("apps/v1", "Deployment") => drop(strict::<Deployment>(doc)),
        ("policy/v1", "PodDisruptionBudget") => drop(strict::<PodDisruptionBudget>(doc)),
        ("networking.k8s.io/v1", "NetworkPolicy") => drop(strict::<NetworkPolicy>(doc)),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => drop(strict::<ClusterRole>(doc)),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => drop(strict::<ClusterRoleBinding>(doc)),
        ("rbac.authorization.k8s.io/v1", "Role") => drop(strict::<Role>(doc)),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => drop(strict::<RoleBinding>(doc)),
        ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy") => {
            drop(strict::<ValidatingAdmissionPolicy>(doc))
        }
        ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding") => {
            drop(strict::<ValidatingAdmissionPolicyBinding>(doc))
        }
        ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration") => {
            drop(strict::<ValidatingWebhookConfiguration>(doc))
        }
        ("cert-manager.io/v1", "Certificate" | "Issuer") => check_cert_manager(doc),
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => {
            drop(strict::<CustomResourceDefinition>(doc))
        }
        ("monitoring.coreos.com/v1", "ServiceMonitor") => check_service_monitor(doc),
        ("edict.dev/v1alpha1", kind) => check_edict_object(kind, doc),
        (api, kind) => panic!("unexpected object {api} {kind}: {}", name_of(doc)),
    }
}

/// ServiceMonitor has no Rust type: check the fields Prometheus Operator needs.
fn check_service_monitor(doc: &Value) {
    let allowed: BTreeSet<&str> = ["apiVersion", "kind", "metadata", "spec"].into();
    assert!(doc.as_object().unwrap().keys().all(|k| allowed.contains(k.as_str())), "{doc}");
    let spec = &doc["spec"];
    assert!(spec["selector"]["matchLabels"].is_object(), "ServiceMonitor selects a Service: {doc}");
    let endpoints = spec["endpoints"].as_array().expect("ServiceMonitor endpoints");
    assert_eq!(endpoints.len(), 1);
    assert_eq!(endpoints[0]["port"], "metrics");
    assert_eq!(endpoints[0]["path"], "/metrics");
}

/// cert-manager's kinds have no Rust type: check the fields cert-manager needs.
fn check_cert_manager(doc: &Value) {
    let allowed: BTreeSet<&str> = ["apiVersion", "kind", "metadata", "spec"].into();
    assert!(doc.as_object().unwrap().keys().all(|k| allowed.contains(k.as_str())), "{doc}");
    let spec = doc["spec"].as_object().unwrap_or_else(|| panic!("{} has a spec", name_of(doc)));
    let known: BTreeSet<&str> = match doc["kind"].as_str() {
        Some("Issuer") => ["selfSigned", "ca", "acme", "vault", "venafi"].into(),
        _ => [
            "secretName",
            "duration",
            "renewBefore",
            "commonName",
            "dnsNames",
            "privateKey",
            "usages",
            "issuerRef",
            "isCA",
        ]
        .into(),
    };
    for key in spec.keys() {
        assert!(known.contains(key.as_str()), "{}: unknown field spec.{key}", name_of(doc));
    }
    if doc["kind"] == "Certificate" {
        assert!(spec["secretName"].is_string() && spec["dnsNames"].is_array(), "{doc}");
        assert!(spec["issuerRef"]["name"].is_string(), "{doc}");
    }
}

/// edict's own kinds parse as edict's types.
fn check_edict_object(kind: &str, doc: &Value) {
    let parsed = match kind {
        "Tenant" => serde_json::from_value::<edict::api::Tenant>(doc.clone()).map(drop),
        "Stack" => serde_json::from_value::<edict::api::Stack>(doc.clone()).map(drop),
        "System" => serde_json::from_value::<edict::api::System>(doc.clone()).map(drop),
        "Policy" => serde_json::from_value::<edict::api::Policy>(doc.clone()).map(drop),
        other => panic!("edict.dev has no kind {other}"),
    };
    parsed.unwrap_or_else(|e| panic!("{} is not a valid {kind}: {e}", name_of(doc)));
}

/// The objects of type `T` among `docs`, each checked strictly.
fn all<T: k8s_openapi::Resource + DeserializeOwned + serde::Serialize>(docs: &[Value]) -> Vec<T> {
    docs.iter().filter(|d| kind_of(d) == (T::API_VERSION, T::KIND)).map(strict).collect()
}

/// The one object of type `T` among `docs`.
fn one<T: k8s_openapi::Resource + DeserializeOwned + serde::Serialize>(docs: &[Value]) -> T {
    let mut found = all::<T>(docs);
    assert_eq!(found.len(), 1, "exactly one {}", T::KIND);
    found.remove(0)
}

fn kinds(docs: &[Value]) -> BTreeMap<String, usize> {
    let mut count = BTreeMap::new();
    for doc in docs {
        *count.entry(doc["kind"].as_str().unwrap_or("?").to_string()).or_default() += 1;
    }
    count
}

fn without_labels(doc: &Value) -> Value {
    let mut doc = doc.clone();
    if let Some(meta) = doc.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("labels");
    }
    doc
}

/// Namespaced objects are in edict's namespace; cluster-scoped ones name none.
fn assert_namespaces(docs: &[Value]) {
    for doc in docs {
        let cluster_scoped = matches!(
            doc["kind"].as_str().unwrap_or(""),
            "Namespace"
                | "CustomResourceDefinition"
                | "ClusterRole"
                | "ClusterRoleBinding"
                | "ValidatingAdmissionPolicy"
                | "ValidatingAdmissionPolicyBinding"
        );
        let namespace = doc["metadata"]["namespace"].as_str();
        assert_eq!(namespace, (!cluster_scoped).then_some(NAMESPACE), "{}", name_of(doc));
    }
}

fn container(deployment: &Deployment) -> Container {
    let pod = deployment.spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.containers.len(), 1, "one container");
    pod.containers[0].clone()
}

// ---------------------------------------------------------------------------------------------
// The operator's contract, as the chart states it.

/// Every RBAC rule edict gets, as (apiGroups, resources, verbs, resourceNames).
fn rules(rules: &[PolicyRule]) -> Vec<String> {
    rules
        .iter()
        .map(|r| {
            let groups = r.api_groups.clone().unwrap_or_default().join(",");
            let resources = r.resources.clone().unwrap_or_default().join(",");
            let names = r.resource_names.clone().unwrap_or_default().join(",");
            format!("{groups}|{resources}|{}|{names}", r.verbs.join(","))
        })
        .collect()
}

const KINDS: &str = "tenants,stacks,systems,policies";

fn operator_cluster_rules() -> Vec<String> {
    // Exactly the calls the operator makes: watches of its kinds and of namespace metadata,
    // server-side applies of System finalizers and of every kind's status, ServiceAccount
    // get + apply (src/controller/wiring.rs), ConfigMap get, apply (create on first write) and
    // delete, and events through kube-runtime's recorder.
    vec![
        format!("edict.dev|{KINDS}|get,list,watch|"),
        "edict.dev|systems|patch|".into(),
        "edict.dev|tenants/status,stacks/status,systems/status,policies/status|patch|".into(),
        "|namespaces|list,watch|".into(),
        "|serviceaccounts|get,patch|".into(),
        "|configmaps|get,list,watch,create,patch,delete|".into(),
        "authentication.k8s.io|tokenreviews|create|".into(),
        "events.k8s.io|events|create,patch|".into(),
    ]
}

fn operator_namespace_rules() -> Vec<String> {
    vec![
        "coordination.k8s.io|leases|create|".into(),
        "coordination.k8s.io|leases|get,update|edict-leader".into(),
    ]
}

/// The chart's and the kustomize manifests' operator: what `edict run` is started with.
fn assert_operator_contract(docs: &[Value]) {
    let deployment =
        all::<Deployment>(docs).into_iter().find(|d| d.metadata.name.as_deref() == Some("edict"));
    let deployment = deployment.expect("Deployment edict");
    assert_eq!(deployment.metadata.namespace.as_deref(), Some(NAMESPACE));
    let spec = &deployment.spec;
    assert_eq!(spec.replicas, Some(2), "two replicas: one leader, one standby");
    let selector = spec.selector.match_labels.clone().expect("selector");
    let pod_labels = spec.template.metadata.as_ref().unwrap().labels.clone().unwrap();
    assert!(selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)), "the selector selects the pods");

    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("edict"));
    assert_eq!(pod.termination_grace_period_seconds, Some(30));
    let psc = pod.security_context.as_ref().expect("pod securityContext");
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(psc.seccomp_profile.as_ref().map(|s| s.type_.as_str()), Some("RuntimeDefault"));
    let anti = pod.affinity.as_ref().and_then(|a| a.pod_anti_affinity.as_ref()).expect("podAntiAffinity");
    let preferred = anti.preferred_during_scheduling_ignored_during_execution.as_ref().expect("preferred");
    assert_eq!(preferred[0].pod_affinity_term.topology_key, "kubernetes.io/hostname");
    assert_eq!(
        preferred[0].pod_affinity_term.label_selector.as_ref().and_then(|s| s.match_labels.clone()),
        Some(selector.clone()),
        "anti-affinity against the other replicas"
    );
    let spread = pod.topology_spread_constraints.as_ref().expect("topologySpreadConstraints");
    assert_eq!(spread[0].topology_key, "topology.kubernetes.io/zone");

    let c = container(&deployment);
    assert_eq!(
        c.image.as_deref(),
        Some(format!("ghcr.io/edict-dev/edict:{}", env!("CARGO_PKG_VERSION")).as_str())
    );
    assert_eq!(
        c.args.clone().unwrap()[..4],
        ["run", "--addr=0.0.0.0:8181", "--metrics-addr=0.0.0.0:8080", "--cluster=$(EDICT_CLUSTER)"]
    );
    let env: BTreeMap<String, String> = c
        .env
        .clone()
        .unwrap()
        .into_iter()
        .map(|e| {
            let field = e.value_from.and_then(|v| v.field_ref).map(|f| format!("fieldRef:{}", f.field_path));
            (e.name, e.value.or(field).unwrap_or_default())
        })
        .collect();
    assert!(env.contains_key("EDICT_CLUSTER"), "{env:?}");
    assert_eq!(env["EDICT_NAMESPACE"], "fieldRef:metadata.namespace");
    assert_eq!(env["EDICT_POD_NAME"], "fieldRef:metadata.name");
    assert!(env.contains_key("RUST_LOG"));

    let ports: BTreeMap<String, i32> = c
        .ports
        .clone()
        .unwrap()
        .into_iter()
        .map(|p| (p.name.unwrap_or_default(), p.container_port))
        .collect();
    assert_eq!(ports, BTreeMap::from([("metrics".into(), 8080), ("bundles".into(), 8181)]));
    for (probe, path) in [(&c.liveness_probe, "/healthz"), (&c.readiness_probe, "/readyz")] {
        let get = probe.as_ref().and_then(|p| p.http_get.as_ref()).unwrap_or_else(|| panic!("{path} probe"));
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(get.port, IntOrString::String("metrics".into()), "{path} is served on 8080");
    }

    let sc = c.security_context.as_ref().expect("container securityContext");
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.capabilities.as_ref().and_then(|c| c.drop.clone()), Some(vec!["ALL".to_string()]));
    assert_eq!(sc.seccomp_profile.as_ref().map(|s| s.type_.as_str()), Some("RuntimeDefault"));
    assert_eq!(sc.privileged, None, "never privileged");
    let resources = c.resources.as_ref().expect("resources");
    for set in [&resources.requests, &resources.limits] {
        let set = set.as_ref().expect("requests and limits");
        assert!(set.contains_key("cpu") && set.contains_key("memory"), "{set:?}");
    }
    let mounts = c.volume_mounts.clone().unwrap();
    assert!(mounts.iter().any(|m| m.mount_path == "/tmp"), "a writable /tmp beside the read-only root");

    let service = one::<Service>(docs);
    let service_spec = service.spec.unwrap();
    assert_eq!(service_spec.selector, Some(selector.clone()));
    let service_ports: BTreeMap<String, i32> =
        service_spec.ports.unwrap().into_iter().map(|p| (p.name.unwrap_or_default(), p.port)).collect();
    assert_eq!(service_ports, ports, "the Service exposes metrics and bundles");

    let pdb = one::<PodDisruptionBudget>(docs).spec.unwrap();
    assert_eq!(pdb.min_available, Some(IntOrString::Int(1)));
    assert_eq!(pdb.selector.and_then(|s| s.match_labels), Some(selector));

    // RBAC: exactly these rules, for edict's ServiceAccount, and nothing broader.
    let cluster_role =
        all::<ClusterRole>(docs).into_iter().find(|r| r.metadata.name.as_deref() == Some("edict"));
    assert_eq!(rules(&cluster_role.expect("ClusterRole edict").rules.unwrap()), operator_cluster_rules());
    let role = one::<Role>(docs);
    assert_eq!(role.metadata.namespace.as_deref(), Some(NAMESPACE), "leases in edict's own namespace only");
    assert_eq!(rules(&role.rules.unwrap()), operator_namespace_rules());
    for role in all::<ClusterRole>(docs) {
        for rule in role.rules.unwrap_or_default() {
            let all_of = [rule.api_groups, rule.resources, Some(rule.verbs)];
            assert!(
                !all_of.iter().flatten().flatten().any(|s| s == "*"),
                "no wildcard in {:?}",
                role.metadata.name
            );
            assert!(!all_of[1].iter().flatten().any(|s| s == "secrets"), "edict reads no Secret");
        }
    }
    let crb = one::<ClusterRoleBinding>(docs);
    let rb = one::<RoleBinding>(docs);
    for (subjects, role_ref) in [(crb.subjects, crb.role_ref), (rb.subjects, rb.role_ref)] {
        let subjects = subjects.unwrap();
        assert_eq!(subjects.len(), 1);
        assert_eq!(
            (subjects[0].kind.as_str(), subjects[0].name.as_str(), subjects[0].namespace.as_deref()),
            ("ServiceAccount", "edict", Some(NAMESPACE))
        );
        assert!(role_ref.name.starts_with("edict"));
    }
    assert_eq!(one::<ServiceAccount>(docs).metadata.name.as_deref(), Some("edict"));

    // The admission policy for creating, deleting and relabelling Systems (evaluated in
    // admission_policy_keeps_creating_deleting_and_relabelling_systems_for_admins).
    let vap = one::<ValidatingAdmissionPolicy>(docs);
    let vap_name = vap.metadata.name.clone().unwrap();
    let vap_spec = vap.spec.unwrap();
    assert_eq!(vap_spec.failure_policy.as_deref(), Some("Fail"));
    let rule = &vap_spec.match_constraints.unwrap().resource_rules.unwrap()[0];
    assert_eq!(rule.api_groups.as_deref(), Some(&["edict.dev".to_string()][..]));
    assert_eq!(
        rule.resources.as_deref(),
        Some(&["systems".to_string()][..]),
        "the System kind, not its status"
    );
    assert_eq!(rule.operations.clone().unwrap(), ["CREATE", "UPDATE", "DELETE"], "delete and re-create too");
    let variables: BTreeMap<String, String> =
        vap_spec.variables.unwrap().into_iter().map(|v| (v.name, v.expression)).collect();
    assert!(variables["labels"].contains("object.metadata.labels"));
    assert!(variables["oldLabels"].contains("oldObject.metadata.labels"));
    assert!(variables["features"].contains("object.spec.features"));
    assert!(variables["oldFeatures"].contains("oldObject.spec.features"));
    assert!(variables["isTenantAdmin"].contains("request.userInfo.groups"));
    assert!(variables["isTenantAdmin"].contains("\"edict:tenant-admins\""));
    assert!(variables["isTenantAdmin"].contains(&format!("\"{OPERATOR_USER}\"")), "edict itself is exempt");
    let validations = vap_spec.validations.unwrap();
    assert_eq!(validations.len(), VALIDATIONS.len());
    for (v, guards) in validations.iter().zip(VALIDATIONS) {
        let (operation, word) = match guards {
            "create" => ("CREATE", "create Systems"),
            "delete" => ("DELETE", "delete Systems"),
            field => ("UPDATE", field),
        };
        assert!(v.expression.contains(&format!("request.operation != '{operation}'")), "{}", v.expression);
        assert_eq!(v.reason.as_deref(), Some("Forbidden"));
        assert!(v.message.as_deref().unwrap_or("").contains(word), "{guards}: {:?}", v.message);
    }
    let binding = one::<ValidatingAdmissionPolicyBinding>(docs).spec;
    assert_eq!(binding.policy_name, vap_name);
    assert_eq!(binding.validation_actions, ["Deny"]);
}

// ---------------------------------------------------------------------------------------------
// The chart.

#[test]
fn chart_lints_with_default_values_and_every_option() {
    let out = helm_ok(&["lint", "--strict", CHART]);
    assert!(out.contains("0 chart(s) failed"), "{out}");
    let out = helm_ok(&["lint", "--strict", CHART, "--set", &all_options().join(",")]);
    assert!(out.contains("0 chart(s) failed"), "{out}");
}

#[test]
fn chart_renders_typed_objects_that_follow_the_contract() {
    let docs = render(&[]);
    docs.iter().for_each(check_typed);
    let expected: BTreeMap<String, usize> = [
        ("CustomResourceDefinition", 4),
        ("ServiceAccount", 1),
        ("ClusterRole", 4),
        ("ClusterRoleBinding", 1),
        ("Role", 1),
        ("RoleBinding", 1),
        ("Service", 1),
        ("Deployment", 1),
        ("PodDisruptionBudget", 1),
        ("ValidatingAdmissionPolicy", 1),
        ("ValidatingAdmissionPolicyBinding", 1),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_string(), n))
    .collect();
    assert_eq!(kinds(&docs), expected, "no ServiceMonitor or NetworkPolicy unless asked for");
    assert_operator_contract(&docs);
    assert_namespaces(&docs);

    // The chart's CRDs are exactly the repository's.
    let rendered: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "CustomResourceDefinition").collect();
    let generated: Vec<Value> =
        crd_files("crds").iter().flat_map(|(_, text)| parse_documents(text)).collect();
    assert_eq!(rendered.len(), generated.len());
    for crd in &generated {
        assert!(rendered.contains(&crd), "{} is not rendered as generated", name_of(crd));
    }

    // The chart's appVersion is the crate's version: the image the chart runs is this build.
    let chart = &read_yaml(&format!("{CHART}/Chart.yaml"))[0];
    assert_eq!(chart["appVersion"], env!("CARGO_PKG_VERSION"), "Chart.yaml appVersion follows Cargo.toml");
}

/// Every optional feature on: ServiceMonitor, NetworkPolicy, the IRSA annotation, more admins.
fn all_options() -> Vec<String> {
    [
        "serviceMonitor.enabled=true",
        "serviceMonitor.labels.release=prometheus",
        "networkPolicy.enabled=true",
        "networkPolicy.ingress.bundleNamespaces={acme-payments,acme-shop}",
        "serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn=arn:aws:iam::123456789012:role/edict",
        &format!("tenantAdmins.users={{{ARGOCD_USER}}}"),
        "cluster=prod-eu-1",
        "extraArgs={--log-format=json}",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

#[test]
fn chart_with_every_option_renders_typed_objects() {
    let sets = all_options();
    let args: Vec<&str> = sets.iter().flat_map(|s| ["--set", s.as_str()]).collect();
    let docs = render(&args);
    docs.iter().for_each(check_typed);
    assert_operator_contract(&docs);

    let sa = one::<ServiceAccount>(&docs);
    assert_eq!(
        sa.metadata.annotations.unwrap()["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::123456789012:role/edict",
        "IRSA for edict's own AWS access"
    );
    let c = container(&one::<Deployment>(&docs));
    assert_eq!(c.args.unwrap().last().map(String::as_str), Some("--log-format=json"), "extraArgs come last");
    let cluster = c.env.unwrap().into_iter().find(|e| e.name == "EDICT_CLUSTER").and_then(|e| e.value);
    assert_eq!(cluster.as_deref(), Some("prod-eu-1"));

    let monitor = docs.iter().find(|d| d["kind"] == "ServiceMonitor").expect("ServiceMonitor");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    let service = one::<Service>(&docs);
    let service_labels = service.metadata.labels.unwrap();
    let monitor_selector = monitor["spec"]["selector"]["matchLabels"].as_object().unwrap();
    assert!(monitor_selector.iter().all(|(k, v)| service_labels.get(k).map(String::as_str) == v.as_str()));

    let policy = one::<NetworkPolicy>(&docs).spec.unwrap();
    assert_eq!(policy.policy_types, Some(vec!["Ingress".to_string(), "Egress".to_string()]));
    let ingress = policy.ingress.unwrap();
    let ingress_ports: Vec<Vec<IntOrString>> =
        ingress.iter().map(|r| r.ports.iter().flatten().filter_map(|p| p.port.clone()).collect()).collect();
    assert_eq!(ingress_ports, [vec![IntOrString::Int(8080)], vec![IntOrString::Int(8181)]]);
    let bundle_from = serde_json::to_string(&ingress[1].from).unwrap();
    assert!(bundle_from.contains("acme-payments") && bundle_from.contains("acme-shop"), "{bundle_from}");
    let egress_ports: Vec<Vec<(i32, String)>> = policy
        .egress
        .unwrap()
        .iter()
        .map(|r| {
            r.ports
                .iter()
                .flatten()
                .map(|p| match (&p.port, &p.protocol) {
                    (Some(IntOrString::Int(n)), Some(proto)) => (*n, proto.clone()),
                    other => panic!("egress port {other:?}"),
                })
                .collect()
        })
        .collect();
    let tcp = |n| (n, "TCP".to_string());
    assert_eq!(
        egress_ports,
        [vec![(53, "UDP".to_string()), tcp(53)], vec![tcp(443), tcp(6443)], vec![tcp(443)]],
        "DNS, the API server, AWS over HTTPS"
    );

    let vap = one::<ValidatingAdmissionPolicy>(&docs).spec.unwrap();
    let is_admin = &vap.variables.unwrap()[0];
    assert!(is_admin.expression.contains(ARGOCD_USER), "{}", is_admin.expression);
}

#[test]
fn values_schema_rejects_bad_values() {
    for (set, complaint) in [
        ("replicaCount=two", "replicaCount"),
        ("replicaCont=3", "replicaCont"),
        ("admissionPolicy.validationActions={Block}", "validationActions"),
        ("image.pullPolicy=Sometimes", "pullPolicy"),
        ("cluster=Prod_EU", "cluster"),
        ("networkPolicy.egress.apiServer.ports={https}", "ports"),
    ] {
        let out = helm_sh(&["template", RELEASE, CHART, "--set", set]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "--set {set} renders, but values.schema.json should reject it");
        assert!(stderr.contains(complaint), "--set {set}: the error names {complaint}: {stderr}");
    }
    let out = helm_sh(&["lint", CHART, "--set", "replicaCount=two"]);
    assert!(!out.status.success(), "helm lint applies the schema too");
}

/// Every RBAC rule in the templates (and so in config/) is preceded by a comment saying why.
#[test]
fn every_rbac_rule_says_why() {
    let mut rules_in_source = 0;
    for file in [
        "charts/edict/templates/clusterrole.yaml",
        "charts/edict/templates/role.yaml",
        "charts/edict/templates/user-roles.yaml",
        "config/rbac/clusterrole.yaml",
        "config/rbac/role.yaml",
        "config/rbac/user-roles.yaml",
    ] {
        let text = read(file);
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if line.trim_start().starts_with("- apiGroups:") {
                let previous = lines[..i].iter().rev().find(|l| !l.trim().is_empty()).unwrap_or(&"");
                assert!(
                    previous.trim_start().starts_with('#'),
                    "{file}:{}: this RBAC rule has no comment saying why it exists",
                    i + 1
                );
                if file.starts_with("charts/") {
                    rules_in_source += 1;
                }
            }
        }
    }
    let docs = render(&[]);
    let rendered =
        all::<ClusterRole>(&docs).iter().map(|r| r.rules.as_ref().map_or(0, Vec::len)).sum::<usize>()
            + all::<Role>(&docs).iter().map(|r| r.rules.as_ref().map_or(0, Vec::len)).sum::<usize>();
    assert_eq!(rendered, rules_in_source, "every rendered rule is a commented rule of the templates");
}

// ---------------------------------------------------------------------------------------------
// Copies: the chart's CRDs, config/crd and config/samples.

fn crd_files(dir: &str) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(common::root().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "yaml") && p.file_name().unwrap() != "kustomization.yaml"
        })
        .map(|p| {
            (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    files.sort();
    files
}

#[test]
fn copies_match_their_sources() {
    let crds = crd_files("crds");
    assert_eq!(crds.len(), 4, "crds/ holds the four CRDs");
    for copy in ["charts/edict/crds", "config/crd"] {
        assert_eq!(
            crd_files(copy),
            crds,
            "{copy} differs from crds/: run `scripts/helm.sh sync` (after `cargo run -- crds --out crds`)"
        );
    }
    for (name, text) in crd_files("examples/acme") {
        assert_eq!(
            read(&format!("config/samples/{name}")),
            text,
            "config/samples/{name}: run `scripts/helm.sh sync`"
        );
    }
    // Also what sync renders from the chart into config/rbac, config/manager, config/admission.
    let out = helm_sh(&["sync", "--check"]);
    assert!(
        out.status.success(),
        "config/ is stale: run `scripts/helm.sh sync`\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// kustomize.

#[test]
fn kustomize_default_renders_the_chart_defaults() {
    let docs = kustomize("config/default");
    docs.iter().for_each(check_typed);
    assert_operator_contract(&docs);
    let namespace = one::<Namespace>(&docs);
    assert_eq!(namespace.metadata.name.as_deref(), Some(NAMESPACE));
    assert_namespaces(&docs);
    // The same objects as `helm template` with default values, but for Helm's labels.
    let chart: Vec<Value> = render(&[]).iter().map(without_labels).collect();
    let ours: Vec<Value> = docs.iter().filter(|d| d["kind"] != "Namespace").map(without_labels).collect();
    assert_eq!(ours.len(), chart.len());
    for doc in &ours {
        let twin = chart.iter().find(|c| name_of(c) == name_of(doc) && kind_of(c) == kind_of(doc));
        let twin = twin.unwrap_or_else(|| panic!("{} is not in the chart", name_of(doc)));
        if let Some(diff) = first_difference(twin, doc, "") {
            panic!("{} differs from the chart: {diff}", name_of(doc));
        }
    }
}

#[test]
fn kustomize_samples_hold_the_acme_example_and_its_namespaces() {
    let docs = kustomize("config/samples");
    docs.iter().for_each(check_typed);
    let namespaces: BTreeSet<String> =
        all::<Namespace>(&docs).into_iter().map(|n| n.metadata.name.unwrap()).collect();
    let mut edict_objects = 0;
    for doc in docs.iter().filter(|d| d["apiVersion"] == "edict.dev/v1alpha1") {
        edict_objects += 1;
        if let Some(ns) = doc["metadata"]["namespace"].as_str() {
            assert!(namespaces.contains(ns), "{} lives in a namespace config/samples creates", name_of(doc));
        }
    }
    let example: usize = crd_files("examples/acme").iter().map(|(_, text)| parse_documents(text).len()).sum();
    assert_eq!(edict_objects, example, "every object of examples/acme");
}

// ---------------------------------------------------------------------------------------------
// The admission policy, evaluated.

/// Evaluates a ValidatingAdmissionPolicy's variables and validations with cel-python, the way
/// the API server does, for each request; prints, per request, each validation's outcome.
const CEL_EVALUATOR: &str = r#"
import json, sys
import celpy
from celpy import celtypes

data = json.load(sys.stdin)
spec = data["policy"]
env = celpy.Environment()
def program(expr):
    return env.program(env.compile(expr))
variables = [(v["name"], program(v["expression"])) for v in spec.get("variables", [])]
validations = [(program(v["expression"]), program(v["messageExpression"])) for v in spec["validations"]]
results = []
for case in data["cases"]:
    activation = {name: celpy.json_to_cel(case[name]) for name in ("request", "object", "oldObject")}
    values = {}
    def bind():
        activation["variables"] = celtypes.MapType({celtypes.StringType(k): v for k, v in values.items()})
    for name, prg in variables:
        bind()
        values[name] = prg.evaluate(activation)
    bind()
    outcome = []
    for check, message in validations:
        try:
            allowed = bool(check.evaluate(activation))
            outcome.append({"allowed": allowed, "message": None if allowed else str(message.evaluate(activation))})
        except Exception as e:
            outcome.append({"allowed": False, "message": None, "error": repr(e)})
    results.append(outcome)
json.dump(results, sys.stdout)
"#;

/// A System as a request carries it.
fn system(labels: Value, features: Option<Value>) -> Value {
    let mut spec = json!({"type": "kubernetes", "description": "admission control"});
    if let Some(f) = features {
        spec["features"] = f;
    }
    let mut meta = json!({"name": "payments-cluster", "namespace": "acme-payments"});
    if !labels.is_null() {
        meta["labels"] = labels;
    }
    json!({"apiVersion": "edict.dev/v1alpha1", "kind": "System", "metadata": meta, "spec": spec})
}

/// Who sends a request: a username and its groups.
type Who = (&'static str, &'static [&'static str]);

/// The roles of the chart README's table, as the API server names them.
const PLATFORM_ADMIN: Who = ("kubernetes-admin", &["kubeadm:cluster-admins", "system:authenticated"]);
const SUPER_USER: Who = ("root", &["system:masters", "system:authenticated"]);
const TENANT_ADMIN: Who = ("bob", &["edict:tenant-admins", "system:authenticated"]);
const OWNER: Who = ("alice", &["acme:payments-team", "system:authenticated"]);
const VIEWER: Who = ("victor", &["system:authenticated"]);
const EDICT: Who = (OPERATOR_USER, &["system:serviceaccounts", "system:serviceaccounts:edict-system"]);
const ARGOCD: Who = (ARGOCD_USER, &["system:serviceaccounts"]);
const NAMESPACE_CONTROLLER: Who =
    ("system:serviceaccount:kube-system:namespace-controller", &["system:serviceaccounts"]);
const OTHER_SERVICE_ACCOUNT: Who = (
    "system:serviceaccount:edict-system:default",
    &["system:serviceaccounts", "system:serviceaccounts:edict-system"],
);

/// The policy's validations, in order: what each one guards.
const VALIDATIONS: [&str; 4] = ["create", "delete", "labels", "features"];

/// One request to the API server, and which of the policy's validations should reject it.
struct Case {
    what: &'static str,
    who: Who,
    /// `CREATE` (`new` only), `UPDATE` (both) or `DELETE` (`old` only).
    old: Option<Value>,
    new: Option<Value>,
    denied_by: &'static [&'static str],
}

impl Case {
    fn operation(&self) -> &'static str {
        match (&self.old, &self.new) {
            (None, Some(_)) => "CREATE",
            (Some(_), Some(_)) => "UPDATE",
            (Some(_), None) => "DELETE",
            (None, None) => unreachable!("{}", self.what),
        }
    }
}

/// Each validation's outcome for each request, evaluated by cel-python.
fn evaluate(policy: &Value, cases: &[Case]) -> Vec<Vec<Value>> {
    let requests: Vec<Value> = cases
        .iter()
        .map(|c| {
            json!({
                "request": {
                    "operation": c.operation(),
                    "userInfo": {"username": c.who.0, "groups": c.who.1},
                },
                "object": c.new,
                "oldObject": c.old,
            })
        })
        .collect();
    let input = json!({"policy": policy["spec"], "cases": requests});
    let mut child = Command::new(common::python())
        .args(["-c", CEL_EVALUATOR])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).expect("write");
    let out = child.wait_with_output().expect("python");
    assert!(
        out.status.success(),
        "the CEL evaluator failed (cel-python comes with `scripts/setup.sh`):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("results")
}

#[test]
fn admission_policy_keeps_creating_deleting_and_relabelling_systems_for_admins() {
    let prod = || json!({"env": "production", "team": "payments"});
    let proxies = || json!({"proxies": {"allowed": ["envoyproxy/envoy"]}});
    let labelled = || system(prod(), Some(proxies()));
    let bare = || system(Value::Null, Some(json!({})));
    let cases = vec![
        // A System's owner edits everything but its labels and features, and neither creates
        // nor deletes it.
        Case {
            what: "an owner creates a bare System",
            who: OWNER,
            old: None,
            new: Some(bare()),
            denied_by: &["create"],
        },
        Case {
            what: "an owner creates a labelled System",
            who: OWNER,
            old: None,
            new: Some(labelled()),
            denied_by: &["create"],
        },
        Case {
            what: "an owner edits the description",
            who: OWNER,
            old: Some(labelled()),
            new: Some({
                let mut s = labelled();
                s["spec"]["description"] = json!("new words");
                s
            }),
            denied_by: &[],
        },
        Case {
            what: "an owner changes a label",
            who: OWNER,
            old: Some(labelled()),
            new: Some(system(json!({"env": "dev", "team": "payments"}), Some(proxies()))),
            denied_by: &["labels"],
        },
        Case {
            what: "an owner removes every label",
            who: OWNER,
            old: Some(labelled()),
            new: Some(system(Value::Null, Some(proxies()))),
            denied_by: &["labels"],
        },
        Case {
            what: "an owner changes the features",
            who: OWNER,
            old: Some(labelled()),
            new: Some(system(prod(), Some(json!({"proxies": {"allowed": ["nginx"]}})))),
            denied_by: &["features"],
        },
        Case {
            what: "features missing before and empty after are no change",
            who: OWNER,
            old: Some(system(prod(), None)),
            new: Some(system(prod(), Some(json!({})))),
            denied_by: &[],
        },
        // Delete and re-create: the way out of a Stack that relabelling no longer offers.
        Case {
            what: "an owner deletes a System (to re-create it without labels)",
            who: OWNER,
            old: Some(labelled()),
            new: None,
            denied_by: &["delete"],
        },
        Case {
            what: "an owner re-creates the deleted System without labels",
            who: OWNER,
            old: None,
            new: Some(system(Value::Null, Some(proxies()))),
            denied_by: &["create"],
        },
        // A viewer writes nothing (RBAC already says so; the policy agrees).
        Case {
            what: "a viewer creates a System",
            who: VIEWER,
            old: None,
            new: Some(bare()),
            denied_by: &["create"],
        },
        Case {
            what: "a viewer deletes a System",
            who: VIEWER,
            old: Some(labelled()),
            new: None,
            denied_by: &["delete"],
        },
        // Tenant admins do all of it.
        Case {
            what: "a tenant admin creates a labelled System",
            who: TENANT_ADMIN,
            old: None,
            new: Some(labelled()),
            denied_by: &[],
        },
        Case {
            what: "a tenant admin relabels and changes features",
            who: TENANT_ADMIN,
            old: Some(labelled()),
            new: Some(system(json!({"env": "staging"}), Some(json!({})))),
            denied_by: &[],
        },
        Case {
            what: "a tenant admin deletes a System",
            who: TENANT_ADMIN,
            old: Some(labelled()),
            new: None,
            denied_by: &[],
        },
        Case {
            what: "a tenant admin re-creates it without labels",
            who: TENANT_ADMIN,
            old: None,
            new: Some(bare()),
            denied_by: &[],
        },
        // Platform admins may do everything.
        Case {
            what: "a platform admin (kubeadm's admin.conf) creates a labelled System",
            who: PLATFORM_ADMIN,
            old: None,
            new: Some(labelled()),
            denied_by: &[],
        },
        Case {
            what: "a platform admin relabels a System",
            who: PLATFORM_ADMIN,
            old: Some(labelled()),
            new: Some(system(json!({"env": "staging"}), Some(proxies()))),
            denied_by: &[],
        },
        Case {
            what: "a platform admin deletes a System",
            who: PLATFORM_ADMIN,
            old: Some(labelled()),
            new: None,
            denied_by: &[],
        },
        Case {
            what: "a system:masters user creates a System",
            who: SUPER_USER,
            old: None,
            new: Some(labelled()),
            denied_by: &[],
        },
        // Machines.
        Case {
            what: "edict itself patches a System",
            who: EDICT,
            old: Some(labelled()),
            new: Some(system(json!({"env": "staging"}), Some(json!({})))),
            denied_by: &[],
        },
        Case {
            what: "a user named in tenantAdmins.users creates a System",
            who: ARGOCD,
            old: None,
            new: Some(labelled()),
            denied_by: &[],
        },
        Case {
            what: "another ServiceAccount of edict's namespace relabels a System",
            who: OTHER_SERVICE_ACCOUNT,
            old: Some(labelled()),
            new: Some(system(json!({"env": "staging"}), Some(proxies()))),
            denied_by: &["labels"],
        },
        Case {
            what: "another ServiceAccount of edict's namespace deletes a System",
            who: OTHER_SERVICE_ACCOUNT,
            old: Some(labelled()),
            new: None,
            denied_by: &["delete"],
        },
        Case {
            what: "the namespace controller empties a namespace being deleted",
            who: NAMESPACE_CONTROLLER,
            old: Some(labelled()),
            new: None,
            denied_by: &[],
        },
        Case {
            what: "the namespace controller creates a System",
            who: NAMESPACE_CONTROLLER,
            old: None,
            new: Some(labelled()),
            denied_by: &["create"],
        },
        Case {
            what: "the namespace controller relabels a System",
            who: NAMESPACE_CONTROLLER,
            old: Some(labelled()),
            new: Some(bare()),
            denied_by: &["labels", "features"],
        },
    ];

    let users = format!("tenantAdmins.users={{{ARGOCD_USER}}}");
    let docs = render(&["--set", &users]);
    let policy = docs.iter().find(|d| d["kind"] == "ValidatingAdmissionPolicy").expect("the policy");
    let results = evaluate(policy, &cases);
    assert_eq!(results.len(), cases.len());
    for (case, outcome) in cases.iter().zip(&results) {
        assert_eq!(outcome.len(), VALIDATIONS.len(), "one outcome per validation");
        let mut denied = Vec::new();
        for (result, name) in outcome.iter().zip(VALIDATIONS) {
            assert!(
                result.get("error").is_none(),
                "{}: the {name} check fails to evaluate: {result}",
                case.what
            );
            if result["allowed"] == false {
                denied.push(name);
                let message = result["message"].as_str().unwrap();
                assert!(message.contains(case.who.0), "{}: the message names the user: {message}", case.what);
                assert!(message.contains("edict:tenant-admins"), "and who may: {message}");
            }
        }
        assert_eq!(denied, case.denied_by, "{} ({}): denied by", case.what, case.operation());
    }
}

/// The verbs on `resource` that the ClusterRoles aggregated into `role` (`view`, `edit`,
/// `admin`) grant, as Kubernetes' aggregation controller adds them up.
fn aggregated_verbs(docs: &[Value], role: &str, resource: &str) -> BTreeSet<String> {
    let label = format!("rbac.authorization.k8s.io/aggregate-to-{role}");
    all::<ClusterRole>(docs)
        .into_iter()
        .filter(|r| {
            r.metadata.labels.as_ref().is_some_and(|l| l.get(&label).map(String::as_str) == Some("true"))
        })
        .flat_map(|r| r.rules.unwrap_or_default())
        .filter(|rule| rule.resources.iter().flatten().any(|r| r == resource))
        .flat_map(|rule| rule.verbs)
        .collect()
}

/// The verbs on `resource` that the ClusterRole `name` grants.
fn role_verbs(docs: &[Value], name: &str, resource: &str) -> BTreeSet<String> {
    let role = all::<ClusterRole>(docs).into_iter().find(|r| r.metadata.name.as_deref() == Some(name));
    role.unwrap_or_else(|| panic!("ClusterRole {name}"))
        .rules
        .unwrap_or_default()
        .into_iter()
        .filter(|rule| rule.resources.iter().flatten().any(|r| r == resource))
        .flat_map(|rule| rule.verbs)
        .collect()
}

fn verbs(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|v| v.to_string()).collect()
}

#[test]
fn rbac_gives_each_role_of_the_readme_what_it_may_do() {
    let docs = render(&[]);
    let read = ["get", "list", "watch"];
    let write = ["create", "update", "patch", "delete", "deletecollection"];
    let read_write: Vec<&str> = read.iter().chain(&write).copied().collect();
    // Viewer: reads, nothing else.
    for resource in ["stacks", "systems", "policies"] {
        assert_eq!(aggregated_verbs(&docs, "view", resource), verbs(&read), "view on {resource}");
    }
    // System owner (edit, admin): its Policies and a System's other fields, but neither creates
    // nor deletes a System (delete and re-create would drop its labels).
    for role in ["edit", "admin"] {
        assert_eq!(aggregated_verbs(&docs, role, "policies"), verbs(&read_write), "{role} on policies");
        assert_eq!(
            aggregated_verbs(&docs, role, "systems"),
            verbs(&["get", "list", "watch", "update", "patch"]),
            "{role} on systems: no create, delete or deletecollection"
        );
    }
    // Tenant admin: everything on the three namespaced kinds, bound per namespace.
    for resource in ["stacks", "systems", "policies"] {
        assert_eq!(role_verbs(&docs, "edict-tenant-admin", resource), verbs(&read_write), "{resource}");
    }
    let tenant_admin = all::<ClusterRole>(&docs)
        .into_iter()
        .find(|r| r.metadata.name.as_deref() == Some("edict-tenant-admin"))
        .unwrap();
    let labels = tenant_admin.metadata.labels.unwrap_or_default();
    assert!(
        !labels.keys().any(|k| k.starts_with("rbac.authorization.k8s.io/aggregate-to")),
        "the tenant-admin role is aggregated into no default role"
    );
    // Tenants: platform admins only (nothing aggregated names them).
    for role in ["view", "edit", "admin"] {
        assert!(aggregated_verbs(&docs, role, "tenants").is_empty(), "{role} on tenants");
    }
}

// ---------------------------------------------------------------------------------------------
// The OPA side: charts/edict-opa.

const OPA_CHART: &str = "charts/edict-opa";

/// `helm template` of charts/edict-opa as release `payments-opa` (or `storefront-opa`) in
/// `namespace`, with one of its `ci/*-values.yaml` files.
fn render_opa(release: &str, namespace: &str, values: &str, extra: &[&str]) -> Vec<Value> {
    let values = format!("{OPA_CHART}/ci/{values}-values.yaml");
    let mut args = vec!["template", release, OPA_CHART, "--namespace", namespace, "-f", &values];
    args.extend_from_slice(extra);
    let docs = parse_documents(&helm_ok(&args));
    docs.iter().for_each(check_typed);
    for doc in &docs {
        let cluster_scoped = doc["kind"] == "ValidatingWebhookConfiguration";
        let ns = doc["metadata"]["namespace"].as_str();
        assert_eq!(ns, (!cluster_scoped).then_some(namespace), "{}", name_of(doc));
        let labels = &doc["metadata"]["labels"];
        assert!(labels["edict.dev/system"].is_string(), "{} names its System", name_of(doc));
    }
    docs
}

/// The OPA container and its pod, after the checks every mode shares: the System's ConfigMap
/// as the configuration, its ServiceAccount, the diagnostic port's probes, a restricted and
/// read-only container, and a Service and PodDisruptionBudget that select the pods.
fn assert_opa_pod(docs: &[Value], system: &str, readiness: &str) -> (Container, Vec<String>) {
    let deployment = one::<Deployment>(docs);
    let spec = &deployment.spec;
    assert_eq!(spec.replicas, Some(2), "two OPAs: one per node, through drains");
    let selector = spec.selector.match_labels.clone().unwrap();
    let pod_labels = spec.template.metadata.as_ref().unwrap().labels.clone().unwrap();
    assert!(selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)), "the selector selects the pods");
    let pod = spec.template.spec.clone().unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("opa"), "the System's ServiceAccount");
    assert_eq!(pod.automount_service_account_token, Some(false), "OPA never calls the API server");
    assert_eq!(pod.security_context.as_ref().and_then(|s| s.run_as_non_root), Some(true));

    let volumes = pod.volumes.clone().unwrap();
    let config = volumes.iter().find(|v| v.name == "config").and_then(|v| v.config_map.clone());
    let config = config.expect("the config volume is a ConfigMap");
    assert_eq!(config.name, format!("{system}-opa-config"), "the ConfigMap edict writes for the System");
    assert_eq!(config.items.unwrap()[0].key, "config.yaml");

    assert_eq!(pod.containers.len(), 1);
    let c = pod.containers[0].clone();
    let args = c.args.clone().unwrap();
    for arg in ["run", "--server", "--config-file=/config/config.yaml", "--diagnostic-addr=0.0.0.0:8282"] {
        assert!(args.iter().any(|a| a == arg), "opa {arg}: {args:?}");
    }
    let mounts = c.volume_mounts.clone().unwrap();
    let at = |path: &str| mounts.iter().find(|m| m.mount_path == path).map(|m| m.name.clone());
    assert_eq!(at("/config").as_deref(), Some("config"));
    let persist =
        args.iter().find_map(|a| a.strip_prefix("--set=persistence_directory=")).expect("persistence");
    let persist_volume = at(persist).expect("the persistence directory is a volume");
    assert!(volumes.iter().any(|v| v.name == persist_volume && v.empty_dir.is_some()), "an emptyDir");

    let sc = c.security_context.as_ref().expect("securityContext");
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.capabilities.as_ref().and_then(|c| c.drop.clone()), Some(vec!["ALL".to_string()]));
    for (probe, path) in [(&c.readiness_probe, readiness), (&c.liveness_probe, "/health")] {
        let get = probe.as_ref().and_then(|p| p.http_get.as_ref()).expect("an HTTP probe");
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(get.port, IntOrString::String("diagnostics".into()));
    }
    let ports: BTreeMap<String, i32> = c
        .ports
        .clone()
        .unwrap()
        .into_iter()
        .map(|p| (p.name.unwrap_or_default(), p.container_port))
        .collect();
    assert_eq!(ports.get("diagnostics"), Some(&8282));

    let service = one::<Service>(docs).spec.unwrap();
    assert_eq!(service.selector, Some(selector.clone()));
    let pdb = one::<PodDisruptionBudget>(docs).spec.unwrap();
    assert_eq!(pdb.min_available, Some(IntOrString::Int(1)));
    assert_eq!(pdb.selector.and_then(|s| s.match_labels), Some(selector));
    (c, args)
}

#[test]
fn opa_chart_lints_in_both_modes_and_needs_a_system() {
    for values in ["admission", "envoy", "secret"] {
        let file = format!("{OPA_CHART}/ci/{values}-values.yaml");
        let out = helm_ok(&["lint", "--strict", OPA_CHART, "-f", &file]);
        assert!(out.contains("0 chart(s) failed"), "{values}: {out}");
    }
    for (set, complaint) in [
        ("serviceAccount.name=opa", "system must name the edict System"),
        ("system=payments-cluster", "serviceAccount.name must be the System's spec.serviceAccountName"),
        ("system=payments-cluster,serviceAccount.name=opa,mode=sidecar", "mode"),
        ("system=payments-cluster,serviceAccount.name=opa,webhook.failurePolicy=Maybe", "failurePolicy"),
        ("system=payments-cluster,serviceAccount.name=opa,tls.certManager.enabled=false", "tls.caBundle"),
        ("system=payments-cluster,serviceAccount.name=opa,replicas=3", "replicas"),
    ] {
        let out = helm_sh(&["template", "payments-opa", OPA_CHART, "--set", set]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "--set {set} renders, but should not");
        assert!(stderr.contains(complaint), "--set {set}: the error names {complaint}: {stderr}");
    }
}

#[test]
fn opa_chart_admission_mode_is_a_webhook_with_cert_manager_tls() {
    let docs = render_opa("payments-opa", "acme-payments", "admission", &[]);
    let expected: BTreeMap<String, usize> = [
        ("ServiceAccount", 1),
        ("Service", 1),
        ("Deployment", 1),
        ("PodDisruptionBudget", 1),
        ("ValidatingWebhookConfiguration", 1),
        ("Certificate", 1),
        ("Issuer", 1),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_string(), n))
    .collect();
    assert_eq!(kinds(&docs), expected);
    let (c, args) = assert_opa_pod(&docs, "payments-cluster", "/health?bundles");

    // The official image, pinned to the chart's appVersion, an OPA 1.x release.
    let chart = &read_yaml(&format!("{OPA_CHART}/Chart.yaml"))[0];
    let version = chart["appVersion"].as_str().unwrap();
    assert!(version.starts_with("1.") && version.split('.').count() == 3, "pinned to a 1.x.y release");
    assert_eq!(c.image.as_deref(), Some(format!("openpolicyagent/opa:{version}").as_str()));
    for arg in
        ["--addr=0.0.0.0:8443", "--tls-cert-file=/certs/tls.crt", "--tls-private-key-file=/certs/tls.key"]
    {
        assert!(args.iter().any(|a| a == arg), "{arg}: {args:?}");
    }

    // The Service the webhook calls, and its TLS.
    let service = one::<Service>(&docs);
    let service_name = service.metadata.name.clone().unwrap();
    let port = &service.spec.unwrap().ports.unwrap()[0];
    assert_eq!((port.port, port.target_port.clone()), (443, Some(IntOrString::String("https".into()))));
    let webhook_config = one::<ValidatingWebhookConfiguration>(&docs);
    let annotations = webhook_config.metadata.annotations.clone().unwrap();
    let certificate = docs.iter().find(|d| d["kind"] == "Certificate").unwrap();
    let certificate_name = certificate["metadata"]["name"].as_str().unwrap();
    assert_eq!(
        annotations["cert-manager.io/inject-ca-from"],
        format!("acme-payments/{certificate_name}"),
        "cert-manager injects the certificate's CA"
    );
    let dns: Vec<&str> =
        certificate["spec"]["dnsNames"].as_array().unwrap().iter().map(|d| d.as_str().unwrap()).collect();
    assert!(dns.contains(&format!("{service_name}.acme-payments.svc").as_str()), "{dns:?}");
    let issuer = docs.iter().find(|d| d["kind"] == "Issuer").unwrap();
    assert_eq!(certificate["spec"]["issuerRef"]["name"], issuer["metadata"]["name"]);
    assert!(issuer["spec"]["selfSigned"].is_object());
    let pod = one::<Deployment>(&docs).spec.template.spec.unwrap();
    let certs = pod.volumes.unwrap().into_iter().find(|v| v.name == "certs").and_then(|v| v.secret);
    assert_eq!(certs.and_then(|s| s.secret_name).as_deref(), certificate["spec"]["secretName"].as_str());

    let webhooks = webhook_config.webhooks.unwrap();
    assert_eq!(webhooks.len(), 1);
    let webhook = &webhooks[0];
    assert_eq!(webhook.failure_policy.as_deref(), Some("Ignore"), "fail open by default, as documented");
    assert_eq!(webhook.side_effects, "None");
    assert_eq!(webhook.admission_review_versions, ["v1"]);
    let target = webhook.client_config.service.as_ref().expect("a Service");
    assert_eq!((target.name.as_str(), target.namespace.as_str()), (service_name.as_str(), "acme-payments"));
    assert_eq!(
        (target.port, target.path.as_deref()),
        (Some(443), Some("/")),
        "POST / is the default decision"
    );
    assert!(webhook.client_config.ca_bundle.is_none(), "injected by cert-manager");
    let excluded = webhook.namespace_selector.as_ref().and_then(|s| s.match_expressions.clone()).unwrap();
    assert_eq!(
        (excluded[0].key.as_str(), excluded[0].operator.as_str()),
        ("kubernetes.io/metadata.name", "NotIn")
    );
    let excluded = excluded[0].values.clone().unwrap();
    for ns in ["acme-payments", "kube-system", "edict-system"] {
        assert!(excluded.iter().any(|e| e == ns), "{ns} is excluded: {excluded:?}");
    }
}

#[test]
fn opa_chart_admission_mode_takes_a_secret_of_your_own() {
    let docs = render_opa("payments-opa", "acme-payments", "secret", &[]);
    assert!(!docs.iter().any(|d| d["apiVersion"] == "cert-manager.io/v1"), "no cert-manager objects");
    assert!(!docs.iter().any(|d| d["kind"] == "ServiceAccount"), "serviceAccount.create is off by default");
    let (_, args) = assert_opa_pod(&docs, "payments-cluster", "/health?bundles");
    assert_eq!(args.last().map(String::as_str), Some("--log-level=debug"), "extraArgs come last");
    let webhook_config = one::<ValidatingWebhookConfiguration>(&docs);
    assert!(webhook_config.metadata.annotations.is_none(), "no CA injection");
    let webhook = &webhook_config.webhooks.unwrap()[0];
    assert!(webhook.client_config.ca_bundle.is_some(), "the caBundle given");
    assert_eq!(webhook.failure_policy.as_deref(), Some("Fail"));
    let pod = one::<Deployment>(&docs).spec.template.spec.unwrap();
    assert_eq!(pod.priority_class_name.as_deref(), Some("system-cluster-critical"));
    let certs = pod.volumes.unwrap().into_iter().find(|v| v.name == "certs").and_then(|v| v.secret);
    assert_eq!(certs.and_then(|s| s.secret_name).as_deref(), Some("payments-opa-tls"));
}

#[test]
fn opa_chart_envoy_mode_is_an_ext_authz_service() {
    let docs = render_opa("storefront-opa", "acme-shop", "envoy", &[]);
    let expected: BTreeMap<String, usize> = [("Service", 1), ("Deployment", 1), ("PodDisruptionBudget", 1)]
        .into_iter()
        .map(|(k, n)| (k.to_string(), n))
        .collect();
    assert_eq!(kinds(&docs), expected, "no webhook and no certificate");
    let (c, args) = assert_opa_pod(&docs, "storefront-envoy", "/health?bundles&plugins");
    let chart = &read_yaml(&format!("{OPA_CHART}/Chart.yaml"))[0];
    let version = chart["appVersion"].as_str().unwrap();
    assert_eq!(
        c.image.as_deref(),
        Some(format!("openpolicyagent/opa:{version}-envoy").as_str()),
        "OPA-Envoy"
    );
    for arg in [
        "--set=plugins.envoy_ext_authz_grpc.addr=:9191",
        "--set=plugins.envoy_ext_authz_grpc.path=main/main",
        "--addr=localhost:8181",
    ] {
        assert!(args.iter().any(|a| a == arg), "{arg}: {args:?}");
    }
    assert!(!args.iter().any(|a| a.starts_with("--tls")), "{args:?}");
    let port = &one::<Service>(&docs).spec.unwrap().ports.unwrap()[0];
    assert_eq!((port.name.as_deref(), port.port), (Some("grpc"), 9191));
    assert_eq!(port.app_protocol.as_deref(), Some("grpc"));

    // The README's sidecar snippet is the same container, in YAML that parses.
    let readme = read(&format!("{OPA_CHART}/README.md"));
    let snippets: Vec<&str> =
        readme.split("```yaml\n").skip(1).map(|s| s.split("```").next().unwrap()).collect();
    let sidecar: Value = serde_norway::from_str(snippets[0]).expect("the sidecar snippet parses");
    let container: Container = serde_json::from_value(sidecar["containers"][0].clone()).expect("a Container");
    assert_eq!(container.image.as_deref(), Some(format!("openpolicyagent/opa:{version}-envoy").as_str()));
    for arg in ["--set=plugins.envoy_ext_authz_grpc.path=main/main", "--config-file=/config/config.yaml"] {
        assert!(container.args.iter().flatten().any(|a| a == arg), "the sidecar snippet has {arg}");
    }
    let filter: Value = serde_norway::from_str(snippets[1]).expect("the filter snippet parses");
    assert_eq!(filter["http_filters"][0]["name"], "envoy.filters.http.ext_authz");
    assert_eq!(
        filter["clusters"][0]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
            ["port_value"],
        9191
    );
}

// ---------------------------------------------------------------------------------------------
// GitOps examples.

/// `path` relative to `from`, both absolute.
fn relative(from: &Path, path: &Path) -> PathBuf {
    let a: Vec<Component> = from.components().collect();
    let b: Vec<Component> = path.components().collect();
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out = PathBuf::new();
    for _ in common..a.len() {
        out.push("..");
    }
    b[common..].iter().for_each(|c| out.push(c));
    out
}

#[test]
fn flux_applies_crds_then_the_operator_then_healthy_edict_objects() {
    let docs = kustomize("examples/gitops/flux");
    let by_name: BTreeMap<String, &Value> = docs
        .iter()
        .filter(|d| d["kind"] == "Kustomization")
        .map(|d| (d["metadata"]["name"].as_str().unwrap().to_string(), d))
        .collect();
    assert_eq!(by_name.keys().collect::<Vec<_>>(), ["acme-policies", "edict", "edict-crds"]);
    for doc in &docs {
        let (api, kind) = kind_of(doc);
        assert!(
            matches!(
                (api, kind),
                ("kustomize.toolkit.fluxcd.io/v1", "Kustomization")
                    | ("source.toolkit.fluxcd.io/v1", "GitRepository")
            ),
            "unexpected {api} {kind}"
        );
    }
    let depends = |name: &str| by_name[name]["spec"]["dependsOn"][0]["name"].as_str().map(String::from);
    assert_eq!(depends("edict-crds"), None);
    assert_eq!(depends("edict").as_deref(), Some("edict-crds"));
    assert_eq!(depends("acme-policies").as_deref(), Some("edict"));
    let crds = &by_name["edict-crds"]["spec"];
    assert_eq!(crds["prune"], false, "never prune a CRD");
    assert_eq!(crds["wait"], true);
    assert_eq!(by_name["edict"]["spec"]["wait"], true);

    // Every path renders, and holds what its Kustomization is for.
    let path =
        |name: &str| by_name[name]["spec"]["path"].as_str().unwrap().trim_start_matches("./").to_string();
    let crd_docs = kustomize(&path("edict-crds"));
    assert!(crd_docs.iter().all(|d| d["kind"] == "CustomResourceDefinition") && crd_docs.len() == 4);
    let operator_docs = kustomize(&path("edict"));
    assert!(
        operator_docs.iter().all(|d| d["kind"] != "CustomResourceDefinition"),
        "CRDs come from edict-crds only"
    );
    let acme_docs = kustomize(&path("acme-policies"));

    // healthChecks cover every System it applies, and only edict kinds.
    let checks = by_name["acme-policies"]["spec"]["healthChecks"].as_array().expect("healthChecks");
    let checked: BTreeSet<String> = checks
        .iter()
        .map(|c| {
            assert_eq!(c["apiVersion"], "edict.dev/v1alpha1");
            format!("{}/{}", c["namespace"].as_str().unwrap_or(""), c["name"].as_str().unwrap())
        })
        .collect();
    for system in acme_docs.iter().filter(|d| d["kind"] == "System") {
        let id = format!(
            "{}/{}",
            system["metadata"]["namespace"].as_str().unwrap(),
            system["metadata"]["name"].as_str().unwrap()
        );
        assert!(checked.contains(&id), "healthChecks miss System {id}");
    }

    // The patch that makes kustomize-controller a tenant admin applies to config/operator.
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("chart-flux-operator");
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let overlay = json!({
        "resources": [relative(&dir, &common::root().join(path("edict"))).to_string_lossy()],
        "patches": by_name["edict"]["spec"]["patches"],
    });
    std::fs::write(dir.join("kustomization.yaml"), serde_norway::to_string(&overlay).unwrap())
        .expect("write");
    let patched = kustomize(dir.to_str().unwrap());
    let vap = one::<ValidatingAdmissionPolicy>(&patched).spec.unwrap();
    let is_admin = &vap.variables.unwrap()[0];
    assert_eq!(is_admin.name, "isTenantAdmin");
    assert!(is_admin.expression.contains("system:serviceaccount:flux-system:kustomize-controller"));
    assert!(is_admin.expression.contains(OPERATOR_USER), "edict stays exempt");
}

#[test]
fn argocd_syncs_edict_before_edict_objects_and_knows_their_health() {
    let wave = |doc: &Value| -> i64 {
        let w = &doc["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"];
        w.as_str().unwrap_or_else(|| panic!("{} has a sync wave", name_of(doc))).parse().unwrap()
    };
    let apps = kustomize("examples/gitops/argocd/apps");
    let app =
        |name: &str| apps.iter().find(|a| a["metadata"]["name"] == name).unwrap_or_else(|| panic!("{name}"));
    for a in &apps {
        assert_eq!(kind_of(a), ("argoproj.io/v1alpha1", "Application"));
    }
    let (edict_app, acme_app) = (app("edict"), app("acme-policies"));
    assert!(wave(edict_app) < wave(acme_app), "the chart (CRDs, operator) syncs before edict objects");
    assert_eq!(edict_app["spec"]["source"]["path"], CHART);
    let options = edict_app["spec"]["syncPolicy"]["syncOptions"].to_string();
    assert!(options.contains("ServerSideApply=true"), "CRDs need server-side apply: {options}");
    let options = acme_app["spec"]["syncPolicy"]["syncOptions"].to_string();
    assert!(options.contains("SkipDryRunOnMissingResource=true"), "{options}");

    // The chart accepts the Application's values (values.schema.json included).
    let values_file = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("chart-argocd-values.yaml");
    let values = &edict_app["spec"]["source"]["helm"]["valuesObject"];
    std::fs::write(&values_file, serde_norway::to_string(values).unwrap()).expect("write values");
    let docs = render(&["-f", values_file.to_str().unwrap()]);
    docs.iter().for_each(check_typed);
    let vap = one::<ValidatingAdmissionPolicy>(&docs).spec.unwrap();
    assert!(vap.variables.unwrap()[0].expression.contains(ARGOCD_USER), "Argo CD is a tenant admin");

    // The acme Application's path: config/samples with waves, the Tenant first.
    let acme = kustomize(acme_app["spec"]["source"]["path"].as_str().unwrap());
    acme.iter().for_each(check_typed);
    let tenant_wave = acme.iter().filter(|d| d["kind"] == "Tenant").map(wave).max().unwrap();
    for doc in acme.iter().filter(|d| d["apiVersion"] == "edict.dev/v1alpha1" && d["kind"] != "Tenant") {
        assert!(wave(doc) > tenant_wave, "{} syncs after the Tenant", name_of(doc));
    }
    let root = &read_yaml("examples/gitops/argocd/root.yaml")[0];
    assert_eq!(root["spec"]["source"]["path"], "examples/gitops/argocd/apps");

    // One health check per edict kind (ConfigMap keys hold no wildcard), the same kstatus Lua.
    let cm = &read_yaml("examples/gitops/argocd/argocd-cm.yaml")[0];
    check_typed(cm);
    let data = cm["data"].as_object().unwrap();
    let crd_kinds: Vec<String> = crd_files("crds")
        .iter()
        .map(|(_, text)| parse_documents(text)[0]["spec"]["names"]["kind"].as_str().unwrap().to_string())
        .collect();
    let scripts: BTreeSet<&str> = crd_kinds
        .iter()
        .map(|kind| {
            let key = format!("resource.customizations.health.edict.dev_{kind}");
            data.get(&key).and_then(Value::as_str).unwrap_or_else(|| panic!("argocd-cm has {key}"))
        })
        .collect();
    assert_eq!(scripts.len(), 1, "every edict kind has the same health check");
    let lua = scripts.into_iter().next().unwrap();
    for needle in
        ["\"Stalled\"", "\"Reconciling\"", "\"Ready\"", "observedGeneration", "\"Degraded\"", "\"Healthy\""]
    {
        assert!(lua.contains(needle), "the health check reads {needle}");
    }
    assert!(data.contains_key("resource.customizations.health.argoproj.io_Application"), "app of apps waits");
}
