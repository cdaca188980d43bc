//! Shared helpers for integration tests.
#![allow(dead_code)]

#[cfg(feature = "aws")]
pub mod aws;
pub mod faults;
pub mod kube;
pub mod proxy;

use std::path::PathBuf;

/// The project root (where Cargo.toml lives).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Python interpreter of the project's venv, which has OPA's engine
/// (`opa-golib-python-bindings`) installed by `scripts/setup.sh`.
///
/// `EDICT_PYTHON` overrides it. A missing venv is a test failure with the
/// command that fixes it, never a silent skip.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("EDICT_PYTHON") {
        return PathBuf::from(p);
    }
    let p = root().join(".cache/venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run `scripts/setup.sh` (or `scripts/test.sh`, which runs it) first",
        p.display()
    );
    p
}

/// Every built System's revision and archive bytes; a System without a bundle fails the test
/// with its problems.
pub fn archives(
    ws: &edict::engine::workspace::Workspace,
) -> std::collections::BTreeMap<edict::model::ObjectKey, (String, Vec<u8>)> {
    ws.builds
        .iter()
        .map(|(k, b)| {
            let bundle = b.bundle.as_ref().unwrap_or_else(|| panic!("{k} has no bundle: {:#?}", b.problems));
            (k.clone(), (bundle.revision().to_string(), bundle.archive()))
        })
        .collect()
}

/// Copy the example manifests to `to` (not the `.edict/` store that
/// `edict run --local examples/acme` leaves beside them).
pub fn copy_examples(to: &std::path::Path) {
    for entry in std::fs::read_dir(root().join("examples/acme")).expect("examples") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            std::fs::copy(&path, to.join(path.file_name().expect("name"))).expect("copy");
        }
    }
}
