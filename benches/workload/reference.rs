//! The reference System of the benches (issue 8's and the bundle bench's): 20 Policies of its
//! own and 5 bound Stacks of 3 Policies each (one with decision masks), as a bundle input, and
//! the admission requests it is measured on.

use std::collections::BTreeMap;

use edict::api::{DefaultDecision, Enforcement, SystemType};
use edict::bundle::{self, BundleInput, PolicyModule, StackInput};
use edict::model::ObjectKey;

/// Kubernetes admission policies for a System's own packages (`{pkg}`, `{tag}`, `{n}` filled in).
pub const SYSTEM_TEMPLATES: [&str; 4] = [
    r#"package {pkg}

# Containers must not run privileged or add dangerous capabilities.
dangerous_caps := {"SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE", "SYS_MODULE"}

containers contains c if {
	input.request.kind.kind == "Pod"
	some c in input.request.object.spec.containers
}

containers contains c if {
	input.request.kind.kind == "Pod"
	some c in input.request.object.spec.initContainers
}

deny contains msg if {
	some c in containers
	c.securityContext.privileged == true
	msg := sprintf("{tag}: container %q must not be privileged", [c.name])
}

deny contains msg if {
	some c in containers
	some cap in c.securityContext.capabilities.add
	cap in dangerous_caps
	msg := sprintf("{tag}: container %q adds capability %s", [c.name, cap])
}

monitor contains msg if {
	some c in containers
	not c.securityContext.runAsNonRoot
	msg := sprintf("{tag}: container %q may run as root", [c.name])
}
"#,
    r#"package {pkg}

# Images come from the company's registries and are pinned.
allowed_registries := ["registry.acme.example/", "ghcr.io/acme/", "mirror-{n}.acme.example/"]

trusted(image) if {
	some prefix in allowed_registries
	startswith(image, prefix)
}

images contains img if {
	input.request.kind.kind in {"Pod", "Deployment"}
	some c in object.get(input.request.object.spec, "containers", [])
	img := c.image
}

deny contains msg if {
	some img in images
	not trusted(img)
	msg := sprintf("{tag}: image %q is not from a trusted registry", [img])
}

deny contains msg if {
	some img in images
	endswith(img, ":latest")
	msg := sprintf("{tag}: image %q uses the latest tag", [img])
}

enforce contains {"allowed": true, "message": "{tag}: replica sets in system namespaces"} if {
	input.request.namespace in {"kube-system", "kube-public"}
	input.request.userInfo.username == "system:serviceaccount:kube-system:replicaset-controller"
}
"#,
    r#"package {pkg}

# Workloads carry the labels cost reports and on-call routing need.
required_labels := {"app", "team", "cost-center-{n}"}

labels := object.get(input.request.object.metadata, "labels", {})

missing contains l if {
	some l in required_labels
	not labels[l]
}

deny contains msg if {
	input.request.operation in {"CREATE", "UPDATE"}
	input.request.kind.kind in {"Deployment", "StatefulSet", "DaemonSet"}
	count(missing) > 0
	msg := sprintf("{tag}: %s %q lacks labels %v", [input.request.kind.kind, input.request.object.metadata.name, sort(missing)])
}

monitor contains msg if {
	input.request.kind.kind == "Namespace"
	not labels.owner
	msg := sprintf("{tag}: namespace %q has no owner label", [input.request.object.metadata.name])
}

monitor contains msg if {
	input.request.kind.kind == "Pod"
	count(missing) > 1
	msg := sprintf("{tag}: pod %q lacks %d labels", [input.request.object.metadata.name, count(missing)])
}
"#,
    r#"package {pkg}

# Every container has a CPU limit, and no more than the System allows.
max_cpu_millis := {limit}

cpu_millis(q) := to_number(trim_suffix(q, "m")) if endswith(q, "m")
else := to_number(q) * 1000

deny contains msg if {
	input.request.kind.kind == "Pod"
	some c in input.request.object.spec.containers
	not c.resources.limits.cpu
	msg := sprintf("{tag}: container %q has no cpu limit", [c.name])
}

deny contains msg if {
	input.request.kind.kind == "Pod"
	some c in input.request.object.spec.containers
	cpu_millis(c.resources.limits.cpu) > max_cpu_millis
	msg := sprintf("{tag}: container %q asks for more than %dm cpu", [c.name, max_cpu_millis])
}

enforce contains {"allowed": true, "message": msg} if {
	input.request.userInfo.username in {"ci-bot-{n}", "release-bot"}
	input.request.kind.kind == "ConfigMap"
	msg := sprintf("{tag}: %s may change config maps", [input.request.userInfo.username])
}
"#,
];

/// Platform-team policies for Stack packages.
pub const STACK_TEMPLATES: [&str; 3] = [
    r#"package {pkg}

# Superusers may always act; anonymous users never.
superuser_groups := {"system:masters", "acme:oncall-{n}"}

break_glass if {
	some v in object.get(input.request.userInfo, ["extra", "acme.example/break-glass"], [])
	v == "true"
}

enforce contains {"allowed": true, "priority": "maximum", "message": msg} if {
	some group in input.request.userInfo.groups
	group in superuser_groups
	msg := sprintf("{tag}: superuser %s (group %s)", [input.request.userInfo.username, group])
}

enforce contains {"allowed": true, "priority": "maximum", "message": "{tag}: break glass"} if break_glass

enforce contains {"allowed": false, "priority": "maximum", "message": msg} if {
	input.request.userInfo.username in {"system:anonymous", "system:unauthenticated"}
	msg := sprintf("{tag}: anonymous %s is never allowed", [input.request.operation])
}
"#,
    r#"package {pkg}

# Pods stay off the host's namespaces and file system.
pod_spec := input.request.object.spec if input.request.kind.kind == "Pod"

deny contains msg if {
	pod_spec.hostNetwork == true
	msg := sprintf("{tag}: pod %q must not use the host network", [input.request.object.metadata.name])
}

deny contains "{tag}: the host PID namespace is not allowed" if pod_spec.hostPID == true

deny contains msg if {
	some v in pod_spec.volumes
	v.hostPath
	not startswith(v.hostPath.path, "/var/log")
	msg := sprintf("{tag}: volume %q mounts host path %s", [v.name, v.hostPath.path])
}

monitor contains msg if {
	some c in pod_spec.containers
	some p in c.ports
	p.hostPort
	msg := sprintf("{tag}: container %q binds host port %d", [c.name, p.hostPort])
}
"#,
    r#"package {pkg}

# Ingresses use company domains with TLS; public load balancers are declared.
allowed_domains := [".acme.example", ".acme-{n}.internal"]

host_ok(host) if {
	some d in allowed_domains
	endswith(host, d)
}

deny contains msg if {
	input.request.kind.kind == "Ingress"
	some rule in input.request.object.spec.rules
	not host_ok(rule.host)
	msg := sprintf("{tag}: ingress host %q is outside the allowed domains", [rule.host])
}

deny contains msg if {
	input.request.kind.kind == "Ingress"
	not input.request.object.spec.tls
	msg := sprintf("{tag}: ingress %q has no TLS", [input.request.object.metadata.name])
}

enforce contains {"allowed": false, "message": "{tag}: public load balancers need an acme.example/public annotation"} if {
	input.request.kind.kind == "Service"
	input.request.object.spec.type == "LoadBalancer"
	not input.request.object.metadata.annotations["acme.example/public"]
}
"#,
];

pub const MASK_TEMPLATE: &str = r#"package {pkg}

# Keep Secret payloads and tokens out of decision logs.
mask contains "/input/request/object/stringData" if input.input.request.kind.kind == "Secret"

mask contains "/input/request/oldObject/stringData" if input.input.request.kind.kind == "Secret"

mask contains {"op": "upsert", "path": "/input/request/userInfo/extra", "value": "redacted"} if {
	input.input.request.userInfo.extra
}
"#;

pub fn fill(template: &str, package: &[String], tag: &str, n: usize) -> String {
    template
        .replace("{pkg}", &package.join("."))
        .replace("{tag}", tag)
        .replace("{n}", &n.to_string())
        .replace("{limit}", &(1000 + 250 * (n % 8)).to_string())
}

pub fn module(name: &str, package: &str, template: &str, n: usize) -> PolicyModule {
    let package: Vec<String> = package.split('.').map(String::from).collect();
    PolicyModule { name: name.to_string(), rego: fill(template, &package, name, n).into(), package }
}

/// The reference System: 20 own Policies, 5 Stacks × 3 Policies (+ one mask module).
pub fn reference_input() -> BundleInput {
    let policies: Vec<PolicyModule> = (0..20)
        .map(|i| {
            let name = format!("rule-{i:02}");
            module(&name, &format!("admission.p{i:02}"), SYSTEM_TEMPLATES[i % SYSTEM_TEMPLATES.len()], i)
        })
        .collect();
    let stacks: Vec<StackInput> = (0..5)
        .map(|s| {
            let key = ObjectKey::new("acme-platform", format!("baseline-{s}"));
            let id = bundle::stack_id(&key.name);
            let mut policies: Vec<PolicyModule> = (0..3)
                .map(|j| {
                    let name = format!("guard-{s}-{j}");
                    module(&name, &format!("stacks.{id}.g{j}"), STACK_TEMPLATES[j], s * 10 + j)
                })
                .collect();
            if s == 0 {
                policies.push(module("masks", &format!("stacks.{id}.system.log"), MASK_TEMPLATE, 0));
            }
            policies.sort_by(|a, b| a.name.cmp(&b.name));
            StackInput {
                key,
                generation: Some(3),
                enforcement: Enforcement::Enforce,
                default_masks: true,
                policies,
            }
        })
        .collect();
    BundleInput {
        tenant: "acme".into(),
        cluster: "bench".into(),
        system: ObjectKey::new("acme-payments", "payments-cluster"),
        system_type: SystemType::Kubernetes,
        enforcement: Enforcement::Enforce,
        default_decision: DefaultDecision::Allow,
        labels: [("env", "prod"), ("team", "payments"), ("tier", "backend")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        features: serde_json::json!({"proxies": {"allowed": ["envoyproxy/envoy"]}})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        options: Default::default(),
        policies,
        stacks,
    }
}

/// The smallest realistic System: one Policy of its own, one Stack with one Policy.
pub fn small_input() -> BundleInput {
    let mut input = reference_input();
    input.policies.truncate(1);
    input.stacks.truncate(1);
    input.stacks[0].policies.retain(|p| p.name == "guard-0-0");
    input.system = ObjectKey::new("acme-payments", "small");
    input
}

/// A Pod admission request that several system rules deny (and no stack rule decides).
pub fn violating_pod() -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "7f3e-bench",
            "operation": "CREATE",
            "namespace": "payments",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "userInfo": {"username": "dev@acme.example", "groups": ["acme:developers", "system:authenticated"]},
            "object": {
                "metadata": {"name": "web-5d8f", "labels": {"app": "web", "team": "payments"}},
                "spec": {
                    "containers": [
                        {"name": "app", "image": "registry.acme.example/web:1.4",
                         "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}},
                         "securityContext": {"runAsNonRoot": true},
                         "ports": [{"containerPort": 8080}]},
                        {"name": "proxy", "image": "nginx:latest",
                         "securityContext": {"privileged": true, "capabilities": {"add": ["NET_ADMIN"]}},
                         "ports": [{"containerPort": 443, "hostPort": 443}]}
                    ],
                    "volumes": [{"name": "logs", "hostPath": {"path": "/var/log/web"}}]
                }
            }
        }
    })
}

/// The common case: a request no rule objects to (a ConfigMap update by a developer).
pub fn benign_request() -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "91ac-bench",
            "operation": "UPDATE",
            "namespace": "payments",
            "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
            "userInfo": {"username": "dev@acme.example", "groups": ["acme:developers", "system:authenticated"]},
            "object": {
                "metadata": {"name": "web-config", "labels": {"app": "web", "team": "payments"}},
                "data": {"LOG_LEVEL": "info", "FEATURE_X": "on"}
            }
        }
    })
}
