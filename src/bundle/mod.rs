//! The bundle compiler: a pure function from a System, its Policies and its bound Stacks
//! (with their Policies) to an OPA bundle.
//!
//! Byte-identical input gives byte-identical output: files are kept sorted, JSON is canonical
//! (sorted keys, no whitespace), and the archive has fixed owners, modes and mtimes.

mod archive;
mod entrypoint;
pub mod masks;
pub mod signing;

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::api::{DefaultDecision, Enforcement, SystemType};
use crate::model::ObjectKey;

pub use archive::{read_archive, write_archive};

/// The rules the generated entrypoint collects decisions from, in every policy package.
pub const DECISION_RULES: [&str; 3] = ["enforce", "deny", "monitor"];

/// The version of edict that built a bundle (recorded in the manifest).
pub const EDICT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// One Rego module of a Policy, with the package it declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyModule {
    /// The Policy's name (unique within its namespace).
    pub name: String,
    /// Package components without `data`.
    pub package: Vec<String>,
    /// The module text.
    pub rego: std::sync::Arc<str>,
}

impl PolicyModule {
    /// Whether this module is a decision-log mask module (package ends in `system.log`).
    pub fn is_log(&self) -> bool {
        self.package.ends_with(&["system".to_string(), "log".to_string()])
    }

    /// Path of the module inside the bundle: its package path, then the Policy name.
    pub fn path(&self) -> String {
        format!("{}/{}.rego", self.package.join("/"), self.name)
    }
}

/// A Stack as the bundle sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackInput {
    /// Namespace and name.
    pub key: ObjectKey,
    /// `metadata.generation`, when known.
    pub generation: Option<i64>,
    /// Enforce or monitor.
    pub enforcement: Enforcement,
    /// Whether the default Kubernetes Secret masks apply.
    pub default_masks: bool,
    /// Its Policies, sorted by name.
    pub policies: Vec<PolicyModule>,
}

impl StackInput {
    /// The stack id: its name with `-` replaced by `_`.
    pub fn id(&self) -> String {
        stack_id(&self.key.name)
    }
}

/// A Stack's id (the package segment under `stacks`).
pub fn stack_id(name: &str) -> String {
    name.replace('-', "_")
}

/// Everything a System's bundle is a function of.
#[derive(Clone, Debug, PartialEq)]
pub struct BundleInput {
    /// The Tenant's name.
    pub tenant: String,
    /// The cluster name from the operator's configuration.
    pub cluster: String,
    /// The System's namespace and name.
    pub system: ObjectKey,
    /// The System's type.
    pub system_type: SystemType,
    /// Enforce or monitor.
    pub enforcement: Enforcement,
    /// The answer when nothing decides.
    pub default_decision: DefaultDecision,
    /// The System's labels.
    pub labels: BTreeMap<String, String>,
    /// The System's features.
    pub features: serde_json::Map<String, serde_json::Value>,
    /// The System's options.
    pub options: serde_json::Map<String, serde_json::Value>,
    /// The System's own Policies, sorted by name.
    pub policies: Vec<PolicyModule>,
    /// The bound Stacks, sorted by key.
    pub stacks: Vec<StackInput>,
}

impl BundleInput {
    /// A System with no labels, features, options, policies or stacks, enforced, failing closed:
    /// the start of a fixture or a plain input.
    pub fn new(tenant: &str, cluster: &str, system: ObjectKey, system_type: SystemType) -> Self {
        BundleInput {
            tenant: tenant.to_string(),
            cluster: cluster.to_string(),
            system,
            system_type,
            enforcement: Enforcement::Enforce,
            default_decision: DefaultDecision::Deny,
            labels: BTreeMap::new(),
            features: serde_json::Map::new(),
            options: serde_json::Map::new(),
            policies: Vec::new(),
            stacks: Vec::new(),
        }
    }

    /// `<cluster>/<namespace>/<name>`: `data.context.system_id`.
    pub fn system_id(&self) -> String {
        format!("{}/{}/{}", self.cluster, self.system.namespace, self.system.name)
    }

    /// The object key (and URL path) of the live bundle: `bundles/<tenant>/<cluster>/<ns>/<system>/bundle.tar.gz`.
    pub fn live_key(&self) -> String {
        format!("{}/bundle.tar.gz", self.prefix())
    }

    /// `bundles/<tenant>/<cluster>/<namespace>/<system>`.
    pub fn prefix(&self) -> String {
        format!("bundles/{}/{}/{}/{}", self.tenant, self.cluster, self.system.namespace, self.system.name)
    }
}

/// The `.manifest` file.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Manifest {
    /// sha256 of everything else in the bundle.
    pub revision: String,
    /// Minimal, non-overlapping roots.
    pub roots: Vec<String>,
    /// Always 1.
    pub rego_version: u8,
    /// Tenant, system id, bound stacks, edict version.
    pub metadata: serde_json::Value,
}

/// A built bundle.
#[derive(Clone, Debug, PartialEq)]
pub struct Bundle {
    /// Files by path (no leading `/`), `.manifest` excluded.
    pub files: BTreeMap<String, Vec<u8>>,
    /// The manifest.
    pub manifest: Manifest,
}

impl Bundle {
    /// The revision (sha256 hex).
    pub fn revision(&self) -> &str {
        &self.manifest.revision
    }

    /// The `.rego` files as (path, text), for a Rego engine.
    pub fn modules(&self) -> Vec<(String, String)> {
        self.files
            .iter()
            .filter(|(p, _)| p.ends_with(".rego"))
            .map(|(p, b)| (p.clone(), String::from_utf8_lossy(b).into_owned()))
            .collect()
    }

    /// The merged data document (`data.json`).
    pub fn data(&self) -> serde_json::Value {
        self.files
            .get("data.json")
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or_else(|| serde_json::json!({}))
    }

    /// The `.manifest` bytes (canonical JSON).
    pub fn manifest_bytes(&self) -> Vec<u8> {
        canonical_json(&serde_json::to_value(&self.manifest).unwrap_or_default())
    }

    /// The deterministic `bundle.tar.gz`.
    pub fn archive(&self) -> Vec<u8> {
        let mut entries: Vec<(String, Vec<u8>)> = vec![(".manifest".to_string(), self.manifest_bytes())];
        entries.extend(self.files.iter().map(|(p, b)| (p.clone(), b.clone())));
        write_archive(&entries)
    }
}

/// Canonical JSON: sorted keys (serde_json's map is a BTreeMap here), no whitespace, and
/// strings escaped as Go escapes them (U+2028 and U+2029 too), so that these bytes are what
/// OPA hashes when it verifies a signed bundle's JSON files.
pub fn canonical_json(value: &serde_json::Value) -> Vec<u8> {
    let text = serde_json::to_string(value).unwrap_or_default();
    // Both characters can only occur inside JSON strings, where Go writes them escaped.
    text.replace('\u{2028}', "\\u2028").replace('\u{2029}', "\\u2029").into_bytes()
}

/// Build the bundle for one System. Pure: no I/O, no clock.
pub fn build(input: &BundleInput) -> Bundle {
    let mut files = BTreeMap::new();
    for policy in &input.policies {
        files.insert(policy.path(), policy.rego.as_bytes().to_vec());
    }
    for stack in &input.stacks {
        for policy in &stack.policies {
            files.insert(policy.path(), policy.rego.as_bytes().to_vec());
        }
    }
    files.insert("main/main.rego".to_string(), entrypoint::module(input).into_bytes());
    files.insert("system/log/log.rego".to_string(), masks::module(input).into_bytes());
    files.insert("data.json".to_string(), canonical_json(&data_document(input)));

    let roots = roots(input);
    let metadata = serde_json::json!({
        "tenant": input.tenant,
        "system": input.system_id(),
        "system_type": input.system_type.as_str(),
        "stacks": input.stacks.iter().map(|s| serde_json::json!({
            "name": s.key.to_string(),
            "generation": s.generation,
        })).collect::<Vec<_>>(),
        "edict": EDICT_VERSION,
    });
    let revision = revision(&files, &roots, &metadata);
    Bundle { files, manifest: Manifest { revision, roots, rego_version: 1, metadata } }
}

/// sha256 over every file (path and content hash) plus the manifest's roots and metadata.
fn revision(files: &BTreeMap<String, Vec<u8>>, roots: &[String], metadata: &serde_json::Value) -> String {
    let mut h = Sha256::new();
    for (path, bytes) in files {
        h.update(path.as_bytes());
        h.update([0]);
        h.update(Sha256::digest(bytes));
    }
    h.update(canonical_json(&serde_json::json!({"roots": roots, "metadata": metadata})));
    hex::encode(h.finalize())
}

/// `data.json`: the context of the System and its metadata (labels, features) keyed by system id.
fn data_document(input: &BundleInput) -> serde_json::Value {
    let id = input.system_id();
    serde_json::json!({
        "context": {
            "system_id": id,
            "tenant": input.tenant,
            "cluster": input.cluster,
            "namespace": input.system.namespace,
            "name": input.system.name,
            "type": input.system_type.as_str(),
            "enforcement": input.enforcement.as_str(),
            "default_decision": if input.default_decision.allowed() { "allow" } else { "deny" },
            "options": input.options,
        },
        "metadata": {
            id: {
                "labels": input.labels,
                "features": input.features,
            }
        }
    })
}

/// The minimal set of non-overlapping roots covering every package and data path of the bundle.
fn roots(input: &BundleInput) -> Vec<String> {
    let mut paths: Vec<Vec<String>> = input
        .policies
        .iter()
        .chain(input.stacks.iter().flat_map(|s| s.policies.iter()))
        .map(|p| p.package.clone())
        .collect();
    for fixed in [&["main"][..], &["system", "log"], &["context"], &["metadata"]] {
        paths.push(fixed.iter().map(|s| s.to_string()).collect());
    }
    minimal_roots(paths)
}

/// Drop every path that has an ancestor (or itself) earlier in the set.
pub fn minimal_roots(mut paths: Vec<Vec<String>>) -> Vec<String> {
    paths.sort();
    paths.dedup();
    let mut kept: Vec<Vec<String>> = Vec::new();
    for p in paths {
        if !kept.iter().any(|k| p.starts_with(k)) {
            kept.push(p);
        }
    }
    kept.into_iter().map(|p| p.join("/")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(p: &str) -> Vec<String> {
        p.split('/').map(String::from).collect()
    }

    #[test]
    fn canonical_json_escapes_like_go() {
        let v = serde_json::json!({"b": "line\u{2028}sep\u{2029}", "a": [1, "<&>"]});
        assert_eq!(canonical_json(&v), br#"{"a":[1,"<&>"],"b":"line\u2028sep\u2029"}"#.to_vec());
    }

    #[test]
    fn roots_are_minimal_and_disjoint() {
        let roots =
            minimal_roots(vec![seg("stacks/a/rules"), seg("stacks/a"), seg("ab"), seg("a"), seg("a/b")]);
        assert_eq!(roots, vec!["a", "ab", "stacks/a"]);
    }
}

#[cfg(test)]
mod smoke {
    use super::*;
    use crate::api::DefaultDecision;

    pub(crate) fn module(name: &str, package: &str, rego: &str) -> PolicyModule {
        PolicyModule {
            name: name.into(),
            package: package.split('.').map(String::from).collect(),
            rego: format!("package {package}\n\n{rego}").into(),
        }
    }

    #[test]
    fn generated_modules_compile_and_decide() {
        let input = BundleInput {
            tenant: "acme".into(),
            cluster: "local".into(),
            system: ObjectKey::new("team-a", "api"),
            system_type: SystemType::Kubernetes,
            enforcement: Enforcement::Enforce,
            default_decision: DefaultDecision::Allow,
            labels: [("env".to_string(), "prod".to_string())].into(),
            features: Default::default(),
            options: Default::default(),
            policies: vec![module(
                "own",
                "admission_control",
                "deny contains \"no\" if input.request.object.bad\n",
            )],
            stacks: vec![StackInput {
                key: ObjectKey::new("acme-admin", "base"),
                generation: Some(1),
                enforcement: Enforcement::Enforce,
                default_masks: true,
                policies: vec![module(
                    "base",
                    "stacks.base",
                    "enforce contains {\"allowed\": true, \"message\": \"su\", \"priority\": \"maximum\"} if input.request.userInfo.username == \"root\"\n",
                )],
            }],
        };
        let bundle = build(&input);
        let modules = bundle.modules();
        let compiled = crate::policy::rego::compile(&modules, &bundle.data(), "data.main.main")
            .unwrap_or_else(|e| panic!("{e}\n{}", modules[1].1));
        let out = compiled
            .eval(
                "data.main.outcome",
                &serde_json::json!({"request": {"uid": "u1", "object": {"bad": true}}}),
            )
            .expect("evaluates")
            .expect("defined");
        assert_eq!(out["tier"], 7, "{out}");
        assert_eq!(out["allowed"], false);
        let out = compiled
            .eval(
                "data.main.main",
                &serde_json::json!({"request": {"uid": "u2", "userInfo": {"username": "root"}, "object": {"bad": true}}}),
            )
            .expect("evaluates")
            .expect("defined");
        assert_eq!(out["response"]["uid"], "u2");
        assert_eq!(out["response"]["allowed"], true, "{out}");
    }
}
