//! Fan-out: one Stack bound to 10,000 Systems changes; every System is rebuilt (with its
//! compile check) and published to a directory store. Then the same change is applied again
//! and must write nothing.
//!
//! The catalog is built in memory from generated YAML (`manifest::parse`): one Tenant, one
//! Stack with three Policies (one with Rego tests), and 10,000 Systems in 100 namespaces,
//! each with one or two small Policies of its own whose text differs per System, so every
//! System's compile check really runs (no cache hit across Systems).
//!
//! `cargo bench --bench fanout`; `EDICT_BENCH_SYSTEMS=N` changes the number of Systems. Run
//! without `--bench` (as `cargo test --benches` does) it only smoke-tests 40 Systems.

use std::sync::Arc;
use std::time::{Duration, Instant};

use edict::catalog::Catalog;
use edict::index::ObjectKey;
use edict::manifest;
use edict::pipeline::{self, Checks, SystemBuild};
use edict::publish::{Published, Publisher};
use edict::store::{DirStore, ObjectStore};

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

/// The Stack Policy the benchmark edits; `{extra}` is the change.
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

fn system_yaml(i: usize) -> (String, String) {
    let ns = format!("team-{:03}", i / 100);
    let name = format!("sys-{i:05}");
    let mut y = format!(
        r#"apiVersion: edict.dev/v1alpha1
kind: System
metadata:
  name: {name}
  namespace: {ns}
  labels:
    env: prod
    team: t{team}
spec:
  type: kubernetes
  defaultDecision: allow
  features:
    maxReplicas: {replicas}
---
apiVersion: edict.dev/v1alpha1
kind: Policy
metadata:
  name: {name}-images
  namespace: {ns}
spec:
  target: {{kind: System, name: {name}}}
  rego: |
    package admission.images

    deny contains msg if {{
    	input.request.kind.kind == "Pod"
    	some c in input.request.object.spec.containers
    	not startswith(c.image, "registry.acme.example/{ns}/")
    	msg := sprintf("{name}: image %q is not from the {ns} repository", [c.image])
    }}
"#,
        team = i / 100,
        replicas = 5 + i % 50,
    );
    if i.is_multiple_of(2) {
        y.push_str(&format!(
            r#"---
apiVersion: edict.dev/v1alpha1
kind: Policy
metadata:
  name: {name}-replicas
  namespace: {ns}
spec:
  target: {{kind: System, name: {name}}}
  rego: |
    package admission.replicas

    max_replicas := {max}

    deny contains msg if {{
    	input.request.kind.kind == "Deployment"
    	input.request.object.spec.replicas > max_replicas
    	msg := sprintf("{name}: at most %d replicas", [max_replicas])
    }}

    enforce contains {{"allowed": true, "message": "{name}: ci may scale"}} if input.request.userInfo.username == "ci-{i}"
"#,
            max = 5 + i % 50,
        ));
    }
    (format!("systems/{ns}/{name}.yaml"), y)
}

fn apply_all(catalog: &mut Catalog, file: &str, text: &str) -> edict::catalog::Affected {
    let loaded = manifest::parse(file, text);
    assert!(loaded.problems.is_empty(), "{file}: {:?}", loaded.problems);
    let mut affected = edict::catalog::Affected::new();
    for located in loaded.objects {
        affected.extend(catalog.apply(located));
    }
    affected
}

#[derive(Default, Debug)]
struct Round {
    systems: usize,
    built: usize,
    failed: usize,
    written: usize,
    unchanged: usize,
    errors: usize,
    apply: Duration,
    build: Duration,
    publish: Duration,
    total: Duration,
}

impl Round {
    fn print(&self, title: &str) {
        println!(
            "{title:<46} {:>6} systems  built {:>6}  failed {:>3}  written {:>6}  unchanged {:>6}  errors {}\n\
             {:<46} total {:>7.2} s = apply {:.3} s + build {:.2} s + publish {:.2} s",
            self.systems,
            self.built,
            self.failed,
            self.written,
            self.unchanged,
            self.errors,
            "",
            self.total.as_secs_f64(),
            self.apply.as_secs_f64(),
            self.build.as_secs_f64(),
            self.publish.as_secs_f64()
        );
    }
}

fn build_and_publish(
    rt: &tokio::runtime::Runtime,
    catalog: &Catalog,
    keys: &[ObjectKey],
    checks: &Checks,
    publisher: &Publisher,
    round: &mut Round,
) {
    let t = Instant::now();
    let builds: Vec<SystemBuild> = pipeline::build_systems(catalog, keys, "bench", checks);
    round.build = t.elapsed();
    round.systems = builds.len();
    let t = Instant::now();
    rt.block_on(async {
        for b in &builds {
            let (Some(input), Some(bundle)) = (&b.input, &b.bundle) else {
                round.failed += 1;
                if round.failed == 1 {
                    eprintln!("first failed build {}: {:?}", b.key, b.problems);
                }
                continue;
            };
            round.built += 1;
            match publisher.publish(input, bundle).await {
                Ok(Published::Written) => round.written += 1,
                Ok(Published::Unchanged) => round.unchanged += 1,
                Err(e) => {
                    round.errors += 1;
                    if round.errors == 1 {
                        eprintln!("publish {}: {e}", b.key);
                    }
                }
            }
        }
    });
    round.publish = t.elapsed();
}

/// A scratch directory: `EDICT_BENCH_TMPDIR`, else tmpfs (`/dev/shm`) when there is one, else
/// the system's temporary directory. DirStore does not fsync, so its writes end in the page
/// cache either way; tmpfs only spares the slow deletion of tens of thousands of files at exit.
fn scratch_dir() -> tempfile::TempDir {
    let base = std::env::var_os("EDICT_BENCH_TMPDIR")
        .map(std::path::PathBuf::from)
        .or_else(|| Some(std::path::PathBuf::from("/dev/shm")).filter(|p| p.is_dir()));
    base.and_then(|b| tempfile::Builder::new().prefix("edict-bench-").tempdir_in(b).ok())
        .unwrap_or_else(|| tempfile::tempdir().expect("tempdir"))
}

fn main() {
    // `cargo bench` passes --bench; without it (`cargo test --benches`) run a small smoke version.
    let bench = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("EDICT_BENCH_SYSTEMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if bench { 10_000 } else { 40 })
        .max(1);
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let dir = scratch_dir();
    let store: Arc<dyn ObjectStore> = Arc::new(DirStore::new(dir.path()));
    let publisher = Publisher::new(store.clone());
    let checks = Checks::new();
    println!(
        "fan-out: {n} Systems bound by one Stack; {} worker threads; store {}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        dir.path().display()
    );

    // Setup: generate and apply every manifest, build and publish everything once.
    let t = Instant::now();
    let mut catalog = Catalog::new();
    apply_all(&mut catalog, "platform.yaml", TENANT);
    apply_all(&mut catalog, "host-access.yaml", &HOST_ACCESS.replace("{extra}", ""));
    for i in 0..n {
        let (file, text) = system_yaml(i);
        apply_all(&mut catalog, &file, &text);
    }
    let own_policies = catalog.policies().len() - 3;
    println!(
        "setup: parsed and applied {} objects ({n} Systems, {own_policies} System Policies) in {:.2} s",
        catalog.systems().len() + catalog.policies().len() + 2,
        t.elapsed().as_secs_f64()
    );
    let keys: Vec<ObjectKey> = catalog.systems().keys().cloned().collect();
    let mut initial = Round::default();
    let t = Instant::now();
    build_and_publish(&rt, &catalog, &keys, &checks, &publisher, &mut initial);
    initial.total = t.elapsed();
    initial.print("setup: initial build + publish (empty store)");

    // 1. The Stack's Policy changes: every bound System is rebuilt and republished.
    let edited = HOST_ACCESS.replace("{extra}", r#", "/var/lib/kubelet/pods""#);
    let mut change = Round::default();
    let t = Instant::now();
    let affected = apply_all(&mut catalog, "host-access.yaml", &edited);
    change.apply = t.elapsed();
    let affected: Vec<ObjectKey> = affected.into_iter().collect();
    build_and_publish(&rt, &catalog, &affected, &checks, &publisher, &mut change);
    change.total = t.elapsed();

    // 2. The same change again: every System is rebuilt, nothing may be written.
    let mut again = Round::default();
    let t = Instant::now();
    let affected = apply_all(&mut catalog, "host-access.yaml", &edited);
    again.apply = t.elapsed();
    let affected: Vec<ObjectKey> = affected.into_iter().collect();
    build_and_publish(&rt, &catalog, &affected, &checks, &publisher, &mut again);
    again.total = t.elapsed();

    // 3. Again with a fresh publisher (as after a restart): it must read the live tags from the store.
    let cold_publisher = Publisher::new(store.clone());
    let mut cold = Round::default();
    let t = Instant::now();
    build_and_publish(&rt, &catalog, &affected, &checks, &cold_publisher, &mut cold);
    cold.total = t.elapsed();

    // The cost of one System on one thread, with fresh caches: what the two workers share.
    let sample: Vec<ObjectKey> = keys.iter().step_by((keys.len() / 200).max(1)).cloned().collect();
    let fresh = Checks::new();
    let t = Instant::now();
    for key in &sample {
        std::hint::black_box(pipeline::build_system(&catalog, key, "bench", &fresh));
    }
    let per_system = t.elapsed().as_secs_f64() / sample.len() as f64;
    let t = Instant::now();
    for key in &sample {
        std::hint::black_box(pipeline::build_system(&catalog, key, "bench", &fresh));
    }
    let per_system_cached = t.elapsed().as_secs_f64() / sample.len() as f64;

    let files = rt.block_on(store.list("bundles/")).map(|k| k.len()).unwrap_or(0);
    println!("\n==================== fan-out summary ====================");
    println!(
        "(machine: {} cores, shared)",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    change.print("2. stack policy edited → rebuild + publish");
    println!(
        "   target ≤ 30 s: [{}]   ({:.0} systems/s end to end)",
        if change.total.as_secs_f64() <= 30.0 && change.written == n { "ok" } else { "MISSED" },
        n as f64 / change.total.as_secs_f64()
    );
    again.print("   same change again (warm publisher)");
    println!(
        "   nothing written: [{}]",
        if again.written == 0 && again.unchanged == n { "ok" } else { "MISSED" }
    );
    cold.print("   no change, fresh publisher (reads store)");
    println!(
        "   nothing written: [{}]",
        if cold.written == 0 && cold.unchanged == n { "ok" } else { "MISSED" }
    );
    println!("   objects in the store: {files} (live + one revision per publish)");
    println!(
        "   one System on one thread ({} sampled): build_system {:.2} ms with its compile check, \
         {:.3} ms when the check is cached;\n   {n} Systems on {} idle cores would take ≈ {:.1} s to build",
        sample.len(),
        per_system * 1e3,
        per_system_cached * 1e3,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        per_system * n as f64 / std::thread::available_parallelism().map(|n| n.get() as f64).unwrap_or(1.0)
    );
    println!("==========================================================");
}
