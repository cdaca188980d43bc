//! The workload the benches share, as YAML manifests: one Tenant (`acme`), Stacks with their
//! Policies in its admin namespace, and N Systems across tenant namespaces, each with one or
//! two small Policies of its own whose text differs per System (so every System's compile
//! check really runs: no cache hit across Systems).
//!
//! Stack 0 is `baseline`: it binds every System (`env: prod*`) and has three Policies, one with
//! Rego tests. Stacks 1.. each bind a share of the Systems through their labels, cycling
//! through five kinds: data residency in one region (1/6 of the Systems), one tier within a
//! region group, minus the regulated Systems (1/15), one team's namespace, one compliance
//! regime (1/10, with decision masks), and ingress rules for the web and api tiers of a region
//! group (1/6). With 1,000 Systems, 50 per namespace, and 50 Stacks, a System is bound by 2 to
//! 12 Stacks (6.4 on average) and a Stack binds 50 to 1,000 Systems (120 for the median one).
//!
//! System `i` lives in `team-{i / per_namespace:03}` as `sys-{i:05}`, with the labels `env`,
//! `team`, `region` (by `i % 6`), `tier` (by `(i / 6) % 4`, so every region has every tier)
//! and, for one block of 24 in five, `compliance`.
#![allow(dead_code)]

pub mod aws;
pub mod reference;

use std::path::PathBuf;

/// The regions Systems are spread over (`region` label), by `i % 6`.
pub const REGIONS: [&str; 6] =
    ["eu-west-1", "eu-central-1", "us-east-1", "us-west-2", "ap-south-1", "ap-northeast-1"];
/// Region groups, as `region` globs.
const REGION_GROUPS: [&str; 3] = ["eu-**", "us-**", "ap-**"];
/// The tiers Systems are spread over (`tier` label), by `(i / 6) % 4`: every region has every tier.
pub const TIERS: [&str; 4] = ["web", "api", "batch", "data"];

const TENANT: &str = r#"apiVersion: edict.dev/v1alpha1
kind: Tenant
metadata:
  name: acme
spec:
  adminNamespace: acme-platform
  namespaces: ["team-*"]
---
apiVersion: edict.dev/v1alpha1
kind: Stack
metadata:
  name: baseline
  namespace: acme-platform
spec:
  type: kubernetes
  description: Baseline for every production cluster.
  selector:
    env: ["prod*"]
---
apiVersion: edict.dev/v1alpha1
kind: Policy
metadata:
  name: superusers
  namespace: acme-platform
spec:
  target: {kind: Stack, name: baseline}
  rego: |
    package stacks.baseline.superusers

    superuser_groups := {"system:masters", "acme:oncall"}

    enforce contains {"allowed": true, "priority": "maximum", "message": msg} if {
    	some group in input.request.userInfo.groups
    	group in superuser_groups
    	msg := sprintf("superuser %s (group %s)", [input.request.userInfo.username, group])
    }

    enforce contains {"allowed": false, "priority": "maximum", "message": "anonymous requests are never allowed"} if {
    	input.request.userInfo.username in {"system:anonymous", "system:unauthenticated"}
    }
  tests: |
    package stacks.baseline.superusers_test

    import data.stacks.baseline.superusers

    test_masters if count(superusers.enforce) == 1 with input as {"request": {"userInfo": {"username": "a", "groups": ["system:masters"]}}}

    test_others if count(superusers.enforce) == 0 with input as {"request": {"userInfo": {"username": "a", "groups": ["devs"]}}}
---
apiVersion: edict.dev/v1alpha1
kind: Policy
metadata:
  name: registries
  namespace: acme-platform
spec:
  target: {kind: Stack, name: baseline}
  rego: |
    package stacks.baseline.registries

    allowed_registries := ["registry.acme.example/", "ghcr.io/acme/"]

    trusted(image) if {
    	some prefix in allowed_registries
    	startswith(image, prefix)
    }

    deny contains msg if {
    	input.request.kind.kind == "Pod"
    	some c in input.request.object.spec.containers
    	not trusted(c.image)
    	msg := sprintf("image %q is not from a trusted registry", [c.image])
    }
"#;

/// The baseline Policy the benches edit; `{extra}` is the change.
const HOST_ACCESS: &str = r#"apiVersion: edict.dev/v1alpha1
kind: Policy
metadata:
  name: host-access
  namespace: acme-platform
spec:
  target: {kind: Stack, name: baseline}
  rego: |
    package stacks.baseline.host

    allowed_host_paths := ["/var/log"{extra}]

    pod_spec := input.request.object.spec if input.request.kind.kind == "Pod"

    deny contains msg if {
    	pod_spec.hostNetwork == true
    	msg := sprintf("pod %q must not use the host network", [input.request.object.metadata.name])
    }

    deny contains msg if {
    	some v in pod_spec.volumes
    	v.hostPath
    	not path_allowed(v.hostPath.path)
    	msg := sprintf("volume %q mounts host path %s", [v.name, v.hostPath.path])
    }

    path_allowed(p) if {
    	some prefix in allowed_host_paths
    	startswith(p, prefix)
    }
"#;

/// How far a System's manifest has been edited: each edit of the System (its features) or of
/// its `-limits` Policy (its replica limit) adds one, and bumps that object's generation.
#[derive(Clone, Copy, Debug, Default)]
pub struct Revision {
    /// Edits of the System.
    pub system: usize,
    /// Edits of its `-limits` Policy.
    pub policy: usize,
}

/// N Systems in namespaces of `per_namespace`, bound by `stacks` Stacks.
#[derive(Clone, Copy, Debug)]
pub struct Workload {
    /// Systems.
    pub systems: usize,
    /// Systems per namespace.
    pub per_namespace: usize,
    /// Stacks, `baseline` included (at least 1).
    pub stacks: usize,
}

impl Workload {
    /// `systems` Systems, `per_namespace` to a namespace, and `stacks` Stacks.
    pub fn new(systems: usize, per_namespace: usize, stacks: usize) -> Self {
        Workload { systems, per_namespace: per_namespace.max(1), stacks: stacks.max(1) }
    }

    /// Namespaces the Systems occupy.
    pub fn namespaces(&self) -> usize {
        self.systems.div_ceil(self.per_namespace).max(1)
    }

    /// The namespace of System `i`.
    pub fn namespace(&self, i: usize) -> String {
        format!("team-{:03}", i / self.per_namespace)
    }

    /// The name of System `i`.
    pub fn name(&self, i: usize) -> String {
        format!("sys-{i:05}")
    }

    /// The manifest file of System `i`, relative to the manifest root.
    pub fn file(&self, i: usize) -> String {
        format!("systems/{}/{}.yaml", self.namespace(i), self.name(i))
    }

    /// The labels of System `i`, as (key, value).
    pub fn labels(&self, i: usize) -> Vec<(&'static str, String)> {
        let mut labels = vec![
            ("env", "prod".to_string()),
            ("team", format!("t{}", i / self.per_namespace)),
            ("region", REGIONS[i % REGIONS.len()].to_string()),
            ("tier", TIERS[(i / REGIONS.len()) % TIERS.len()].to_string()),
        ];
        // By blocks of 24 (every region and tier), so that regimes span regions and tiers.
        match (i / (REGIONS.len() * TIERS.len())) % 10 {
            0 => labels.push(("compliance", "pci".to_string())),
            5 => labels.push(("compliance", "sox".to_string())),
            _ => {}
        }
        labels
    }

    /// The Tenant, every Stack and every Stack Policy (the baseline's `host-access` unedited).
    pub fn platform(&self) -> String {
        let mut y = TENANT.to_string();
        y.push_str("---\n");
        y.push_str(&host_access(&[]));
        for j in 1..self.stacks {
            y.push_str("---\n");
            y.push_str(&self.stack(j));
        }
        y
    }

    /// Policies attached to Stacks in [`Workload::platform`].
    pub fn stack_policies(&self) -> usize {
        3 + (1..self.stacks)
            .map(|j| if StackKind::of(j) == StackKind::Compliance { 2 } else { 1 })
            .sum::<usize>()
    }

    /// The name of Stack `j` (0 is `baseline`).
    pub fn stack_name(&self, j: usize) -> String {
        if j == 0 { "baseline".to_string() } else { format!("{}-{j:03}", StackKind::of(j).prefix()) }
    }

    /// Stack `j` (from 1) with its Policies.
    fn stack(&self, j: usize) -> String {
        let name = self.stack_name(j);
        let id = name.replace('-', "_");
        let round = j / StackKind::ALL.len();
        let group = REGION_GROUPS[round % REGION_GROUPS.len()];
        let (description, selector, exclude) = match StackKind::of(j) {
            StackKind::Residency => {
                let region = REGIONS[round % REGIONS.len()];
                (format!("Data residency in {region}."), format!("region: [\"{region}\"]"), None)
            }
            StackKind::Tier => {
                let tier = TIERS[round % TIERS.len()];
                (
                    format!("Resource rules for the {tier} tier in {group}."),
                    format!("tier: [\"{tier}\"]\n    region: [\"{group}\"]"),
                    Some("compliance: []"),
                )
            }
            StackKind::Team => {
                let team = round % self.namespaces();
                (format!("Rules of team t{team}."), format!("team: [\"t{team}\"]"), None)
            }
            StackKind::Compliance => {
                let regime = ["pci", "sox"][round % 2];
                (format!("{regime} controls."), format!("compliance: [\"{regime}\"]"), None)
            }
            StackKind::Ingress => (
                format!("Ingress rules for web and api in {group}."),
                format!("tier: [\"web\", \"api\"]\n    region: [\"{group}\"]"),
                None,
            ),
        };
        let exclude = exclude.map(|e| format!("  exclude:\n    {e}\n")).unwrap_or_default();
        let mut y = format!(
            r#"apiVersion: edict.dev/v1alpha1
kind: Stack
metadata:
  name: {name}
  namespace: acme-platform
  generation: 1
spec:
  type: kubernetes
  description: {description}
  selector:
    {selector}
{exclude}"#
        );
        for (policy, rego, tests) in stack_policies(StackKind::of(j), &name, &id, j) {
            y.push_str(&format!(
                r#"---
apiVersion: edict.dev/v1alpha1
kind: Policy
metadata:
  name: {policy}
  namespace: acme-platform
  generation: 1
spec:
  target: {{kind: Stack, name: {name}}}
  rego: |
{rego}"#,
                rego = indent(&rego)
            ));
            if let Some(tests) = tests {
                y.push_str(&format!("  tests: |\n{}", indent(&tests)));
            }
        }
        y
    }

    /// System `i` at `rev`, with its Policies.
    pub fn system(&self, i: usize, rev: Revision) -> String {
        let (ns, name) = (self.namespace(i), self.name(i));
        let labels: String = self.labels(i).iter().map(|(k, v)| format!("\n    {k}: {v}")).collect();
        let mut y = format!(
            r#"apiVersion: edict.dev/v1alpha1
kind: System
metadata:
  name: {name}
  namespace: {ns}
  generation: {generation}
  labels:{labels}
spec:
  type: kubernetes
  defaultDecision: allow
  features:
    maxReplicas: {replicas}
    revision: {revision}
---
apiVersion: edict.dev/v1alpha1
kind: Policy
metadata:
  name: {name}-limits
  namespace: {ns}
  generation: {policy_generation}
spec:
  target: {{kind: System, name: {name}}}
  rego: |
    package admission.limits

    max_replicas := {max}

    deny contains msg if {{
    	input.request.kind.kind == "Deployment"
    	input.request.object.spec.replicas > max_replicas
    	msg := sprintf("{name}: at most %d replicas", [max_replicas])
    }}

    deny contains msg if {{
    	input.request.kind.kind == "Pod"
    	some c in input.request.object.spec.containers
    	not startswith(c.image, "registry.acme.example/{ns}/")
    	msg := sprintf("{name}: image %q is not from the {ns} repository", [c.image])
    }}
"#,
            generation = rev.system + 1,
            replicas = 5 + i % 50,
            revision = rev.system,
            policy_generation = rev.policy + 1,
            max = 10 + i % 20 + rev.policy,
        );
        if i.is_multiple_of(2) {
            y.push_str(&format!(
                r#"---
apiVersion: edict.dev/v1alpha1
kind: Policy
metadata:
  name: {name}-ci
  namespace: {ns}
  generation: 1
spec:
  target: {{kind: System, name: {name}}}
  rego: |
    package admission.ci

    enforce contains {{"allowed": true, "message": "{name}: ci may deploy"}} if input.request.userInfo.username == "ci-{i}"
"#
            ));
        }
        y
    }

    /// Policies attached to System `i`.
    pub fn system_policies(&self, i: usize) -> usize {
        if i.is_multiple_of(2) { 2 } else { 1 }
    }
}

/// The baseline's `host-access` Policy, allowing `/var/log` and `extra` host paths.
pub fn host_access(extra: &[&str]) -> String {
    let extra: String = extra.iter().map(|p| format!(", \"{p}\"")).collect();
    HOST_ACCESS.replace("{extra}", &extra)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StackKind {
    Residency,
    Tier,
    Team,
    Compliance,
    Ingress,
}

impl StackKind {
    const ALL: [StackKind; 5] =
        [StackKind::Ingress, StackKind::Residency, StackKind::Tier, StackKind::Team, StackKind::Compliance];

    fn of(j: usize) -> Self {
        Self::ALL[j % Self::ALL.len()]
    }

    fn prefix(self) -> &'static str {
        match self {
            StackKind::Residency => "residency",
            StackKind::Tier => "tier",
            StackKind::Team => "team",
            StackKind::Compliance => "compliance",
            StackKind::Ingress => "ingress",
        }
    }
}

/// The Policies of Stack `j`: (name, rego, tests).
fn stack_policies(kind: StackKind, name: &str, id: &str, j: usize) -> Vec<(String, String, Option<String>)> {
    match kind {
        StackKind::Residency => vec![(
            format!("{name}-registries"),
            format!(
                r#"package stacks.{id}.residency

allowed_registries := {{"registry-{j}.acme.example", "mirror-{j}.acme.example"}}

deny contains msg if {{
	input.request.kind.kind == "Pod"
	some c in input.request.object.spec.containers
	registry := split(c.image, "/")[0]
	not registry in allowed_registries
	msg := sprintf("{name}: image %q is not served from this region", [c.image])
}}
"#
            ),
            None,
        )],
        StackKind::Tier => vec![(
            format!("{name}-resources"),
            format!(
                r#"package stacks.{id}.resources

max_containers := {containers}

deny contains msg if {{
	input.request.kind.kind == "Pod"
	some c in input.request.object.spec.containers
	not c.resources.limits.cpu
	msg := sprintf("{name}: container %q has no CPU limit", [c.name])
}}

deny contains msg if {{
	input.request.kind.kind == "Pod"
	count(input.request.object.spec.containers) > max_containers
	msg := sprintf("{name}: at most %d containers per pod", [max_containers])
}}
"#,
                containers = 2 + j % 5
            ),
            Some(format!(
                r#"package stacks.{id}.resources_test

import data.stacks.{id}.resources

test_missing_limit if count(resources.deny) == 1 with input as {{"request": {{"kind": {{"kind": "Pod"}}, "object": {{"spec": {{"containers": [{{"name": "c"}}]}}}}}}}}

test_with_limit if count(resources.deny) == 0 with input as {{"request": {{"kind": {{"kind": "Pod"}}, "object": {{"spec": {{"containers": [{{"name": "c", "resources": {{"limits": {{"cpu": "1"}}}}}}]}}}}}}}}
"#
            )),
        )],
        StackKind::Team => vec![(
            format!("{name}-owners"),
            format!(
                r#"package stacks.{id}.owners

workloads := {{"Deployment", "StatefulSet", "DaemonSet"}}

deny contains msg if {{
	input.request.kind.kind in workloads
	not input.request.object.metadata.labels.owner
	msg := sprintf("{name}: %s %q has no owner label", [input.request.kind.kind, input.request.object.metadata.name])
}}

monitor contains msg if {{
	input.request.kind.kind in workloads
	input.request.object.spec.replicas > data.metadata[data.context.system_id].features.maxReplicas
	msg := "{name}: more replicas than the system's features allow"
}}
"#
            ),
            None,
        )],
        StackKind::Compliance => vec![
            (
                format!("{name}-privileged"),
                format!(
                    r#"package stacks.{id}.privileged

enforce contains {{"allowed": false, "priority": "maximum", "message": msg}} if {{
	input.request.kind.kind == "Pod"
	some c in input.request.object.spec.containers
	c.securityContext.privileged == true
	msg := sprintf("{name}: container %q must not be privileged", [c.name])
}}
"#
                ),
                None,
            ),
            (
                format!("{name}-masks"),
                format!(
                    r#"package stacks.{id}.system.log

mask contains "/input/request/object/spec/containers/0/env"

mask contains "/input/request/userInfo/extra"
"#
                ),
                None,
            ),
        ],
        StackKind::Ingress => vec![(
            format!("{name}-tls"),
            format!(
                r#"package stacks.{id}.ingress

deny contains msg if {{
	input.request.kind.kind == "Ingress"
	count(object.get(input.request.object.spec, "tls", [])) == 0
	msg := sprintf("{name}: ingress %q must use TLS", [input.request.object.metadata.name])
}}

deny contains msg if {{
	input.request.kind.kind == "Ingress"
	some rule in input.request.object.spec.rules
	not endswith(rule.host, ".acme.example")
	msg := sprintf("{name}: host %q is not an acme.example name", [rule.host])
}}
"#
            ),
            None,
        )],
    }
}

/// Indent a block for a YAML literal scalar under `spec:` (four spaces; empty lines stay empty).
fn indent(text: &str) -> String {
    text.lines().map(|l| if l.is_empty() { "\n".to_string() } else { format!("    {l}\n") }).collect()
}

/// A scratch directory: `EDICT_BENCH_TMPDIR`, else tmpfs (`/dev/shm`) when there is one, else
/// the system's temporary directory. DirStore does not fsync, so its writes end in the page
/// cache either way; tmpfs only spares the slow deletion of tens of thousands of files at exit
/// (and inotify works on all of them).
pub fn scratch_dir() -> tempfile::TempDir {
    let base = std::env::var_os("EDICT_BENCH_TMPDIR")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from("/dev/shm")).filter(|p| p.is_dir()));
    base.and_then(|b| tempfile::Builder::new().prefix("edict-bench-").tempdir_in(b).ok())
        .unwrap_or_else(|| tempfile::tempdir().expect("tempdir"))
}

/// A size from the environment (`EDICT_BENCH_*`), else `default`.
pub fn env_size(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The `p` quantile (0..=1) of sorted figures, nearest rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[(((sorted.len() as f64 - 1.0) * p).round() as usize).min(sorted.len() - 1)]
}
