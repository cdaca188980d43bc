//! Reading edict objects from YAML manifests, remembering where each came from.
//!
//! Every document keeps its [`Origin`] (file and line), and Policies keep where their
//! `rego:` and `tests:` block scalars start, so that a Rego error at `rego:5:9` can be
//! reported at the exact line and column of the manifest a person edits.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::api::{API_VERSION, Policy, Stack, System, Tenant};
use crate::engine::problem::{ObjectRef, Problem, Reason};

/// Where an object came from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    /// The manifest file (as given on the command line or found in a directory).
    pub file: String,
    /// 1-based line where the YAML document starts.
    pub line: usize,
    /// Where `spec.rego` starts, for Policies written with a `|` block scalar.
    pub rego: Option<BlockStart>,
    /// Where `spec.tests` starts, likewise.
    pub tests: Option<BlockStart>,
}

/// The first content line of a literal block scalar and its indentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockStart {
    /// 1-based line in the file of the block's first line.
    pub line: usize,
    /// Columns of indentation stripped from every line of the block.
    pub indent: usize,
}

impl Origin {
    /// `file:line`, the place a person looks at.
    pub fn at(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }

    /// `file:line: ` before a message, or nothing for an object read from the cluster (whose
    /// kind and name the message already carries).
    pub fn prefix(&self) -> String {
        if self.file.is_empty() { String::new() } else { format!("{}: ", self.at()) }
    }

    /// Map a 1-based (line, col) inside the policy's `rego` (or `tests`) text to `file:line:col`.
    /// Falls back to naming the field when the text was not a literal block.
    pub fn locate(&self, tests: bool, line: usize, col: usize) -> String {
        let block = if tests { self.tests } else { self.rego };
        let field = if tests { "tests" } else { "rego" };
        match block {
            Some(b) if !self.file.is_empty() => {
                format!("{}:{}:{}", self.file, b.line + line - 1, b.indent + col)
            }
            _ if !self.file.is_empty() => format!("{} (spec.{field} {line}:{col})", self.at()),
            _ => format!("spec.{field}:{line}:{col}"),
        }
    }
}

/// One edict object read from a manifest.
#[derive(Clone, Debug)]
pub enum Object {
    /// A Tenant.
    Tenant(Tenant),
    /// A Stack.
    Stack(Stack),
    /// A System.
    System(System),
    /// A Policy.
    Policy(Policy),
}

impl Object {
    /// The object's kind.
    pub fn kind(&self) -> crate::model::Kind {
        use crate::model::Kind;
        match self {
            Object::Tenant(_) => Kind::Tenant,
            Object::Stack(_) => Kind::Stack,
            Object::System(_) => Kind::System,
            Object::Policy(_) => Kind::Policy,
        }
    }

    /// Namespace (empty for Tenants) and name.
    pub fn key(&self) -> crate::model::ObjectKey {
        let meta = match self {
            Object::Tenant(o) => &o.metadata,
            Object::Stack(o) => &o.metadata,
            Object::System(o) => &o.metadata,
            Object::Policy(o) => &o.metadata,
        };
        crate::model::ObjectKey::new(
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        )
    }
}

/// An object and where it came from.
#[derive(Clone, Debug)]
pub struct Located {
    /// The object.
    pub object: Object,
    /// Its origin.
    pub origin: Origin,
}

/// What reading a set of paths produced: the objects, and a problem for each document that is not one.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Objects, in file order.
    pub objects: Vec<Located>,
    /// Documents that could not be read.
    pub problems: Vec<Problem>,
}

/// The manifest files under `paths` (files as given; directories walked for `*.yaml`/`*.yml`/`*.json`),
/// sorted so that the result does not depend on the file system's order.
pub fn manifest_files(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            walk(path, &mut files)?;
        } else {
            files.push(path.clone());
        }
    }
    files.sort();
    files.dedup();
    Ok(files)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let hidden = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            walk(&path, files)?;
        } else if matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json")) {
            files.push(path);
        }
    }
    Ok(())
}

/// Read every manifest under `paths`.
pub fn load(paths: &[PathBuf]) -> std::io::Result<Loaded> {
    let mut loaded = Loaded::default();
    for file in manifest_files(paths)? {
        let text = std::fs::read_to_string(&file)?;
        let one = parse(&file.display().to_string(), &text);
        loaded.objects.extend(one.objects);
        loaded.problems.extend(one.problems);
    }
    Ok(loaded)
}

/// Parse the YAML documents of one file.
pub fn parse(file: &str, text: &str) -> Loaded {
    let mut loaded = Loaded::default();
    for (line, doc) in documents(text) {
        let origin = Origin { file: file.to_string(), line, rego: None, tests: None };
        match parse_document(doc, origin) {
            Ok(Some(obj)) => loaded.objects.push(obj),
            Ok(None) => {}
            Err(p) => loaded.problems.push(p),
        }
    }
    loaded
}

/// Split a YAML stream on `---` lines, keeping each document's 1-based first line.
fn documents(text: &str) -> Vec<(usize, &str)> {
    let mut docs = Vec::new();
    let mut start_byte = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let trimmed = line.trim_end();
        if trimmed == "---" || trimmed.starts_with("--- ") || trimmed == "..." {
            docs.push((start_line, &text[start_byte..offset]));
            start_byte = offset + line.len();
            start_line = i + 2;
        }
        offset += line.len();
    }
    docs.push((start_line, &text[start_byte..]));
    docs
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypeMeta {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
}

fn parse_document(doc: &str, mut origin: Origin) -> Result<Option<Located>, Problem> {
    let unparsed =
        |kind: &str| ObjectRef { kind: kind.to_string(), namespace: String::new(), name: origin.at() };
    let value: serde_norway::Value = serde_norway::from_str(doc)
        .map_err(|e| Problem::new(unparsed("Manifest"), Reason::InvalidManifest, yaml_error(&origin, &e)))?;
    if value.is_null() {
        return Ok(None);
    }
    let meta: TypeMeta = serde_norway::from_value(value.clone()).map_err(|e| {
        Problem::new(unparsed("Manifest"), Reason::InvalidManifest, format!("{}{e}", origin.prefix()))
    })?;
    if meta.api_version != API_VERSION {
        return Err(Problem::new(
            unparsed(if meta.kind.is_empty() { "Manifest" } else { &meta.kind }),
            Reason::UnknownKind,
            format!(
                "{}document of kind {:?} with apiVersion {:?} is not an edict object (want apiVersion {API_VERSION} and kind Tenant, Stack, System or Policy)",
                origin.prefix(),
                meta.kind,
                meta.api_version
            ),
        ));
    }
    let typed = |e: serde_norway::Error| {
        Problem::new(unparsed(&meta.kind), Reason::InvalidManifest, yaml_error(&origin, &e))
    };
    let object = match meta.kind.as_str() {
        "Tenant" => Object::Tenant(serde_norway::from_str(doc).map_err(typed)?),
        "Stack" => Object::Stack(serde_norway::from_str(doc).map_err(typed)?),
        "System" => Object::System(serde_norway::from_str(doc).map_err(typed)?),
        "Policy" => Object::Policy(serde_norway::from_str(doc).map_err(typed)?),
        other => {
            return Err(Problem::new(
                unparsed(other),
                Reason::UnknownKind,
                format!("{}kind {other:?} is not one of Tenant, Stack, System, Policy", origin.prefix()),
            ));
        }
    };
    // Namespaced objects without a namespace land in `default`, as with kubectl.
    let mut object = object;
    match &mut object {
        Object::Stack(o) => default_namespace(&mut o.metadata),
        Object::System(o) => default_namespace(&mut o.metadata),
        Object::Policy(o) => default_namespace(&mut o.metadata),
        Object::Tenant(_) => {}
    }
    let name_missing = match &object {
        Object::Tenant(o) => o.metadata.name.is_none(),
        Object::Stack(o) => o.metadata.name.is_none(),
        Object::System(o) => o.metadata.name.is_none(),
        Object::Policy(o) => o.metadata.name.is_none(),
    };
    if name_missing {
        return Err(Problem::new(
            unparsed(object.kind().as_str()),
            Reason::InvalidManifest,
            format!("{}metadata.name is required", origin.prefix()),
        ));
    }
    if let Object::Policy(_) = object {
        origin.rego = block_start(doc, "rego").map(|b| BlockStart { line: b.line + origin.line - 1, ..b });
        origin.tests = block_start(doc, "tests").map(|b| BlockStart { line: b.line + origin.line - 1, ..b });
    }
    Ok(Some(Located { object, origin }))
}

fn default_namespace(meta: &mut kube::core::ObjectMeta) {
    if meta.namespace.as_deref().unwrap_or("").is_empty() {
        meta.namespace = Some("default".to_string());
    }
}

fn yaml_error(origin: &Origin, e: &serde_norway::Error) -> String {
    match e.location() {
        Some(l) => format!("{}:{}:{}: {e}", origin.file, origin.line + l.line() - 1, l.column()),
        None => format!("{}{e}", origin.prefix()),
    }
}

/// Find `key: |` in a document and where its literal block's content starts (relative to the document).
fn block_start(doc: &str, key: &str) -> Option<BlockStart> {
    let lines: Vec<&str> = doc.lines().collect();
    let header = lines.iter().position(|l| {
        let t = l.trim_start();
        t.strip_prefix(key)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(|rest| rest.trim())
            .is_some_and(|ind| ind.starts_with('|') && ind.len() <= 3)
    })?;
    let first = (header + 1..lines.len()).find(|&i| !lines[i].trim().is_empty())?;
    let indent = lines[first].len() - lines[first].trim_start().len();
    Some(BlockStart { line: header + 2, indent })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = "\
apiVersion: edict.dev/v1alpha1
kind: Tenant
metadata:
  name: acme
spec:
  adminNamespace: acme-admin
---
apiVersion: edict.dev/v1alpha1
kind: Policy
metadata:
  name: p
  namespace: acme-admin
spec:
  target: {kind: Stack, name: s}
  rego: |
    package stacks.s

    deny contains \"x\" if true
";

    #[test]
    fn documents_keep_their_lines() {
        let loaded = parse("m.yaml", TWO);
        assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
        assert_eq!(loaded.objects.len(), 2);
        assert_eq!(loaded.objects[0].origin.line, 1);
        assert_eq!(loaded.objects[1].origin.line, 8);
        let rego = loaded.objects[1].origin.rego.expect("rego block");
        assert_eq!(rego, BlockStart { line: 16, indent: 4 });
        // rego line 3, col 1 is the `deny` line of the file.
        assert_eq!(loaded.objects[1].origin.locate(false, 3, 1), "m.yaml:18:5");
    }

    #[test]
    fn unknown_kind_is_a_problem_with_its_place() {
        let loaded = parse("m.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n");
        assert_eq!(loaded.problems.len(), 1);
        assert_eq!(loaded.problems[0].reason, Reason::UnknownKind);
        assert!(loaded.problems[0].message.starts_with("m.yaml:1: document of kind \"ConfigMap\""));
        let loaded = parse("m.yaml", "apiVersion: edict.dev/v1alpha1\nkind: Gadget\nmetadata: {name: x}\n");
        assert_eq!(loaded.problems[0].reason, Reason::UnknownKind);
    }

    #[test]
    fn broken_yaml_reports_file_line_col() {
        let loaded =
            parse("m.yaml", "---\napiVersion: edict.dev/v1alpha1\nkind: System\nmetadata: {name: [x\n");
        assert_eq!(loaded.problems.len(), 1);
        assert_eq!(loaded.problems[0].reason, Reason::InvalidManifest);
        assert!(loaded.problems[0].message.starts_with("m.yaml:"), "{}", loaded.problems[0].message);
    }

    #[test]
    fn wrong_field_type_is_located() {
        let doc = "apiVersion: edict.dev/v1alpha1\nkind: System\nmetadata: {name: x, namespace: y}\nspec:\n  type: toaster\n";
        let loaded = parse("m.yaml", doc);
        assert_eq!(loaded.problems.len(), 1, "{:?}", loaded.objects);
        assert!(loaded.problems[0].message.contains("toaster"), "{}", loaded.problems[0].message);
    }

    #[test]
    fn comment_only_documents_are_skipped() {
        let loaded = parse("m.yaml", "# nothing\n---\n---\n");
        assert!(loaded.objects.is_empty() && loaded.problems.is_empty());
    }
}
