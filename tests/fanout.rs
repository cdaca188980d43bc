//! Fan-out: after a Stack's Policy changes, the bundles rebuilt on the warm path (the
//! workspace that built everything before, its gate and test caches full) are byte for byte
//! what a cold build of the same manifests gives, for every System.
//!
//! The workload is the benches' (`benches/workload`): Systems with Policies of their own whose
//! text differs per System, bound by several Stacks through label globs.

use edict::engine::workspace::Workspace;
use edict::model::ObjectKey;
use edict::sources::manifest;

mod common;

#[path = "../benches/workload/mod.rs"]
mod workload;

use workload::Workload;

const SYSTEMS: usize = 48;

fn apply(ws: &mut Workspace, file: &str, text: &str) -> Vec<ObjectKey> {
    let loaded = manifest::parse(file, text);
    assert!(loaded.problems.is_empty(), "{file}: {:?}", loaded.problems);
    let mut affected = Vec::new();
    for located in loaded.objects {
        affected.extend(ws.apply(located));
    }
    affected
}

/// A workspace with the platform (the Stack Policy `host-access` as `host_access` gives it)
/// and every System applied, everything built.
fn loaded(workload: &Workload, host_access: Option<&str>) -> Workspace {
    let mut ws = Workspace::empty("fanout");
    apply(&mut ws, "platform.yaml", &workload.platform());
    if let Some(text) = host_access {
        apply(&mut ws, "host-access.yaml", text);
    }
    for i in 0..SYSTEMS {
        apply(&mut ws, &workload.file(i), &workload.system(i, Default::default()));
    }
    let keys: Vec<ObjectKey> = ws.catalog.systems().keys().cloned().collect();
    ws.rebuild(&keys);
    ws
}

#[test]
fn a_stack_change_rebuilt_warm_gives_the_bytes_of_a_cold_build_for_every_system() {
    let workload = Workload::new(SYSTEMS, 12, 6);
    let mut warm = loaded(&workload, None);
    let before = common::archives(&warm);
    assert_eq!(before.len(), SYSTEMS);

    // The baseline Stack's Policy changes: every System is bound by it.
    let edited = workload::host_access(&["/var/lib/kubelet/pods"]);
    let mut affected = apply(&mut warm, "host-access.yaml", &edited);
    affected.sort();
    affected.dedup();
    assert_eq!(affected.len(), SYSTEMS, "the baseline Stack binds every System");
    warm.rebuild(&affected);
    let after = common::archives(&warm);

    let cold = common::archives(&loaded(&workload, Some(&edited)));
    assert_eq!(after.len(), cold.len());
    for (key, (revision, bytes)) in &after {
        let (cold_revision, cold_bytes) = &cold[key];
        assert_eq!(revision, cold_revision, "{key}: revision after the change");
        assert!(bytes == cold_bytes, "{key}: the warm rebuild's archive differs from a cold build's");
        assert_ne!(&before[key].0, revision, "{key}: the change reached the System's bundle");
    }
}
