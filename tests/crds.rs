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
