//! The committed CRDs are exactly what the code generates.

mod common;

use std::collections::BTreeMap;

#[test]
fn committed_crds_match_the_types() {
    let dir = common::root().join("crds");
    let generated: BTreeMap<String, String> = edict::crds::files().expect("generate").into_iter().collect();
    let mut committed = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).expect("crds/ exists") {
        let path = entry.expect("entry").path();
        let name = path.file_name().expect("name").to_string_lossy().into_owned();
        committed.insert(name, std::fs::read_to_string(&path).expect("read"));
    }
    assert_eq!(
        committed.keys().collect::<Vec<_>>(),
        generated.keys().collect::<Vec<_>>(),
        "crds/ holds other files than the generated CRDs: run `cargo run -- crds --out crds`"
    );
    for (name, yaml) in &generated {
        assert_eq!(&committed[name], yaml, "crds/{name} drifted: run `cargo run -- crds --out crds`");
    }
}

#[test]
fn crds_carry_the_api_conventions() {
    for crd in edict::crds::all() {
        let names = &crd.spec.names;
        assert_eq!(crd.spec.group, "edict.dev");
        assert_eq!(names.categories.as_deref(), Some(&["edict".to_string()][..]), "{}", names.kind);
        assert!(names.short_names.as_ref().is_some_and(|s| !s.is_empty()), "{} has a short name", names.kind);
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        let columns: Vec<&str> =
            version.additional_printer_columns.iter().flatten().map(|c| c.name.as_str()).collect();
        assert!(columns.contains(&"Ready") && columns.contains(&"Age"), "{}: {columns:?}", names.kind);
        assert!(
            version.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some(),
            "status subresource"
        );
        let schema = serde_json::to_string(&version.schema).expect("schema");
        assert!(schema.contains("\"description\""), "field docs reach kubectl explain");
    }
    let stack = serde_json::to_string(&edict::crds::all()[1]).expect("json");
    assert!(stack.contains("x-kubernetes-validations"), "Stack names are checked by CEL");
    let system = serde_json::to_string(&edict::crds::all()[2]).expect("json");
    assert!(system.contains("\"enum\":[\"enforce\",\"monitor\"]"), "enforcement is an enum: {system}");
}

/// Every `format` in `schema`, with the path it is at.
fn formats(schema: &serde_json::Value, at: &str, out: &mut Vec<(String, String)>) {
    match schema {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    // A keyword (a property named `format` would be an object).
                    ("format", serde_json::Value::String(f)) => out.push((at.to_string(), f.clone())),
                    _ => formats(value, &format!("{at}/{key}"), out),
                }
            }
        }
        serde_json::Value::Array(items) => {
            items.iter().enumerate().for_each(|(i, v)| formats(v, &format!("{at}/{i}"), out))
        }
        _ => {}
    }
}

#[test]
fn schemas_carry_no_format_the_api_server_warns_about() {
    let mut found = Vec::new();
    for crd in edict::crds::all() {
        let schema = serde_json::to_value(&crd.spec.versions[0].schema).expect("json");
        formats(&schema, &crd.spec.names.kind, &mut found);
    }
    assert!(!found.is_empty(), "integers keep int64 where schemars wrote it");
    for (at, format) in &found {
        assert!(
            edict::crds::KNOWN_FORMATS.contains(&format.as_str()),
            "{at}: format {format:?} makes `kubectl apply` warn `unrecognized format`"
        );
    }
    // The bounds a dropped uint32 stood for stay.
    let stack = serde_json::to_value(&edict::crds::all()[1]).expect("json");
    let systems = &stack["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
        ["systems"];
    assert_eq!(systems["type"], "integer");
    assert_eq!(systems["minimum"].as_f64(), Some(0.0), "{systems}");
    assert!(systems.get("format").is_none(), "{systems}");
}

#[test]
fn wide_output_says_why_an_object_is_not_ready() {
    for crd in edict::crds::all() {
        let kind = &crd.spec.names.kind;
        let columns = crd.spec.versions[0].additional_printer_columns.clone().unwrap_or_default();
        let ready = |field: &str| format!(".status.conditions[?(@.type==\"Ready\")].{field}");
        for (name, field) in [("Reason", "reason"), ("Message", "message")] {
            let column = columns.iter().find(|c| c.name == name);
            let column = column.unwrap_or_else(|| panic!("{kind} has a {name} column"));
            assert_eq!(column.json_path, ready(field), "{kind} {name}");
            assert_eq!(column.priority, Some(1), "{kind} {name} is for -o wide only");
        }
        // The default table stays narrow: no 64-hex revision, no message.
        for column in columns.iter().filter(|c| c.priority.unwrap_or(0) == 0) {
            assert_ne!(column.json_path, ".status.revision", "{kind}: the full revision is for -o wide");
            assert!(!column.json_path.ends_with("message"), "{kind}: {}", column.name);
        }
    }
    let system = &edict::crds::all()[2];
    let columns = system.spec.versions[0].additional_printer_columns.clone().unwrap();
    let by_path = |path: &str| columns.iter().find(|c| c.json_path == path).cloned();
    let short = by_path(".status.shortRevision").expect("a short revision column");
    assert_eq!((short.name.as_str(), short.priority.unwrap_or(0)), ("Revision", 0));
    let full = by_path(".status.revision").expect("the full revision in -o wide");
    assert_eq!(full.priority, Some(1));
}

#[test]
fn explain_text_is_current() {
    for crd in edict::crds::all() {
        let text = serde_json::to_string(&crd.spec.versions[0].schema).expect("json");
        for stale in ["(later)", "not built yet", "not yet"] {
            assert!(!text.contains(stale), "{}: kubectl explain says {stale:?}", crd.spec.names.kind);
        }
    }
    let tenant = serde_json::to_value(&edict::crds::all()[0]).expect("json");
    let spec = &tenant["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let description = spec["description"].as_str().unwrap();
    assert!(description.contains("storage"), "kubectl explain tenant.spec: {description}");
    let storage = spec["properties"]["storage"]["description"].as_str().unwrap();
    assert!(storage.contains("operator"), "what an absent storage means for the operator: {storage}");
}
