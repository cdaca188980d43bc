//! Bad input gets a precise message in the CLI and in the object's status, `edict build`
//! exits non-zero, and nothing half-built is produced for the affected Systems.

mod common;

use std::path::Path;
use std::process::Command;

use edict::engine::problem::Reason;
use edict::engine::workspace::Workspace;

const TENANT: &str = "apiVersion: edict.dev/v1alpha1
kind: Tenant
metadata: {name: acme}
spec: {adminNamespace: acme-platform, namespaces: [\"acme-*\"]}
";

const STACK: &str = "apiVersion: edict.dev/v1alpha1
kind: Stack
metadata: {name: base, namespace: acme-platform}
spec:
  type: kubernetes
  selector: {env: [\"prod*\"]}
";

const SYSTEM: &str = "apiVersion: edict.dev/v1alpha1
kind: System
metadata: {name: api, namespace: acme-team, labels: {env: prod}}
spec: {type: kubernetes}
";

fn policy(name: &str, ns: &str, kind: &str, target: &str, rego: &str) -> String {
    let body: String = rego.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        "apiVersion: edict.dev/v1alpha1\nkind: Policy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  target: {{kind: {kind}, name: {target}}}\n  rego: |\n{body}"
    )
}

/// A Stack policy whose Rego does not parse (rego line 4, `msg :=`).
fn broken_policy() -> String {
    policy(
        "broken",
        "acme-platform",
        "Stack",
        "base",
        "package stacks.base\n\ndeny contains msg if {\n  msg := \n}\n",
    )
}

/// Write documents to `dir/file` and load the directory.
fn workspace(dir: &Path, docs: &[(&str, String)]) -> Workspace {
    for (file, text) in docs {
        std::fs::write(dir.join(file), text).expect("write");
    }
    Workspace::load(&[dir.to_path_buf()], "local").expect("load")
}

fn base() -> Vec<(&'static str, String)> {
    vec![
        ("tenant.yaml", TENANT.to_string()),
        ("stack.yaml", STACK.to_string()),
        ("system.yaml", SYSTEM.to_string()),
    ]
}

/// The problems with `reason`, as `kind ns/name: message`.
fn found(ws: &Workspace, reason: Reason) -> Vec<String> {
    ws.problems()
        .iter()
        .filter(|p| p.reason == reason)
        .map(|p| format!("{}: {}", p.object, p.message))
        .collect()
}

fn api_built(ws: &Workspace) -> bool {
    ws.builds.values().find(|b| b.key.name == "api").is_some_and(|b| b.bundle.is_some())
}

#[test]
fn the_valid_base_builds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ws = workspace(dir.path(), &base());
    assert!(ws.problems().is_empty(), "{:?}", ws.problems());
    assert!(api_built(&ws));
}

#[test]
fn invalid_rego_names_file_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut docs = base();
    docs.push(("p.yaml", broken_policy()));
    let ws = workspace(dir.path(), &docs);
    let msgs = found(&ws, Reason::InvalidRego);
    // The document starts at line 1; the rego block's first line is line 7; `msg :=` is rego line 4.
    let file = dir.path().join("p.yaml").display().to_string();
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert!(msgs[0].starts_with(&format!("Policy acme-platform/broken: {file}:1")), "{msgs:?}");
    let at = msgs[0].split(": ").nth(1).expect("location");
    let parts: Vec<&str> = at.rsplitn(3, ':').collect();
    let (line, col): (usize, usize) = (parts[1].parse().expect("line"), parts[0].parse().expect("col"));
    assert!((10..=11).contains(&line), "rego line 4-5 is file line 10-11: {at}");
    assert!(col >= 5, "columns include the YAML indentation: {at}");
    assert!(!api_built(&ws), "a System bound to a broken Stack policy is not built");
    let system = found(&ws, Reason::DependencyFailed);
    assert!(
        system
            .iter()
            .any(|m| m.starts_with("System acme-team/api: Policy acme-platform/broken: InvalidRego")),
        "{system:?}"
    );
}

#[test]
fn package_outside_its_root() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut docs = base();
    docs.push((
        "p.yaml",
        policy(
            "elsewhere",
            "acme-platform",
            "Stack",
            "base",
            "package stacks.other\n\ndeny contains \"x\" if false\n",
        ),
    ));
    docs.push((
        "q.yaml",
        policy("sneaky", "acme-team", "System", "api", "package main\n\nallowed := true\n"),
    ));
    let ws = workspace(dir.path(), &docs);
    let msgs = found(&ws, Reason::PackageOutsideRoot);
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert!(msgs.iter().any(|m| m.contains("package stacks.other is outside stacks.base")), "{msgs:?}");
    assert!(msgs.iter().any(|m| m.contains("package main is under the reserved root main")), "{msgs:?}");
    assert!(!api_built(&ws));
}

#[test]
fn broken_glob_is_a_stack_error_not_a_silent_non_match() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut docs = base();
    docs[1].1 = STACK.replace("[\"prod*\"]", "[\"prod-[a\"]");
    let ws = workspace(dir.path(), &docs);
    let msgs = found(&ws, Reason::InvalidSelector);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert!(msgs[0].starts_with("Stack acme-platform/base: "), "{msgs:?}");
    assert!(msgs[0].contains("prod-[a") && msgs[0].contains("selector"), "{msgs:?}");
}

#[test]
fn policy_whose_target_does_not_exist() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut docs = base();
    docs.push(("p.yaml", policy("orphan", "acme-team", "System", "ghost", "package x\n")));
    let ws = workspace(dir.path(), &docs);
    let msgs = found(&ws, Reason::MissingTarget);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert!(msgs[0].contains("System ghost does not exist in namespace acme-team"), "{msgs:?}");
}

#[test]
fn system_in_no_tenant_or_in_two() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut docs = base();
    docs.push(("lost.yaml", SYSTEM.replace("acme-team", "elsewhere").replace("name: api", "name: lost")));
    let second = TENANT
        .replace("name: acme}", "name: rival}")
        .replace("acme-platform", "rival-admin")
        .replace("acme-*", "acme-team");
    docs.push(("rival.yaml", second));
    let ws = workspace(dir.path(), &docs);
    let none = found(&ws, Reason::NoTenant);
    assert!(
        none.iter().any(|m| m.starts_with("System elsewhere/lost")
            && m.contains("namespace elsewhere belongs to no Tenant")),
        "{none:?}"
    );
    let two = found(&ws, Reason::AmbiguousTenant);
    assert!(
        two.iter().any(|m| m.starts_with("System acme-team/api") && m.contains("acme, rival")),
        "{two:?}"
    );
    assert!(!api_built(&ws));
}

#[test]
fn mask_pointer_outside_the_allowed_roots() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut docs = base();
    docs.push((
        "m.yaml",
        policy(
            "masks",
            "acme-platform",
            "Stack",
            "base",
            "package stacks.base.system.log\n\nmask contains \"/data/secret\"\n",
        ),
    ));
    let ws = workspace(dir.path(), &docs);
    let msgs = found(&ws, Reason::InvalidMask);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    let file = dir.path().join("m.yaml").display().to_string();
    assert!(msgs[0].contains(&format!("{file}:9:")), "rego line 3 is file line 9: {msgs:?}");
    assert!(
        msgs[0].contains("\"/data/secret\" must start with /input, /result or /nd_builtin_cache"),
        "{msgs:?}"
    );
}

#[test]
fn failing_rego_test_stops_the_bundle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut docs = base();
    let mut p = policy(
        "tested",
        "acme-platform",
        "Stack",
        "base",
        "package stacks.base\n\ndeny contains \"no\" if input.bad\n",
    );
    p.push_str("  tests: |\n    package stacks.base_test\n\n    test_denies if count(data.stacks.base.deny) == 2 with input as {\"bad\": true}\n");
    docs.push(("t.yaml", p));
    let ws = workspace(dir.path(), &docs);
    let msgs = found(&ws, Reason::TestFailed);
    let file = dir.path().join("t.yaml").display().to_string();
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert!(msgs[0].contains(&format!("{file}:13:5")), "the test rule's place in the manifest: {msgs:?}");
    assert!(msgs[0].contains("data.stacks.base_test.test_denies failed"), "{msgs:?}");
    assert!(!api_built(&ws));
}

#[test]
fn duplicate_names_and_foreign_documents() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut docs = base();
    docs.push(("again.yaml", SYSTEM.to_string()));
    docs.push(("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n".to_string()));
    let ws = workspace(dir.path(), &docs);
    let dups = found(&ws, Reason::DuplicateName);
    assert_eq!(dups.len(), 1, "{dups:?}");
    assert!(dups[0].contains("System acme-team/api is already defined at"), "{dups:?}");
    let foreign = found(&ws, Reason::UnknownKind);
    assert_eq!(foreign.len(), 1, "{foreign:?}");
    assert!(foreign[0].contains("cm.yaml:1: document of kind \"ConfigMap\""), "{foreign:?}");
}

#[test]
fn build_exits_non_zero_and_prints_the_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut docs = base();
    docs.push(("p.yaml", broken_policy()));
    for (file, text) in &docs {
        std::fs::write(dir.path().join(file), text).expect("write");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_edict"))
        .args(["build", "-f"])
        .arg(dir.path())
        .output()
        .expect("run edict build");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAILED"), "{stdout}");
    assert!(stdout.contains(&format!("{}:1", dir.path().join("p.yaml").display())), "{stdout}");
    let json = Command::new(env!("CARGO_BIN_EXE_edict"))
        .args(["build", "--output", "json", "-f"])
        .arg(dir.path())
        .output()
        .expect("run edict build --output json");
    assert_eq!(json.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json report");
    assert_eq!(report["systems"][0]["ok"], false);
    assert!(report["problems"].as_array().is_some_and(|p| p.iter().any(|x| x["reason"] == "InvalidRego")));
}

#[test]
fn the_examples_build_test_and_write_bundles() {
    let out_dir = tempfile::tempdir().expect("tempdir");
    let examples = common::root().join("examples/acme");
    let out = Command::new(env!("CARGO_BIN_EXE_edict"))
        .args(["build", "-f"])
        .arg(&examples)
        .arg("--out")
        .arg(out_dir.path())
        .output()
        .expect("run edict build");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(out_dir.path().join("acme/local/acme-shop/storefront-envoy/bundle.tar.gz").exists());
    let test = Command::new(env!("CARGO_BIN_EXE_edict"))
        .args(["test", "-f"])
        .arg(&examples)
        .output()
        .expect("edict test");
    let stdout = String::from_utf8_lossy(&test.stdout);
    assert!(test.status.success(), "{stdout}");
    assert!(stdout.trim_end().ends_with("6 passed, 0 failed"), "{stdout}");
}

#[test]
fn decision_rules_must_be_partial_sets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut docs = base();
    docs.push((
        "b.yaml",
        policy(
            "boolean",
            "acme-team",
            "System",
            "api",
            "package checks\n\ndeny if input.workers > 100\n\nenforce.x contains 1 if true\n",
        ),
    ));
    let ws = workspace(dir.path(), &docs);
    let msgs = found(&ws, Reason::InvalidRego);
    let file = dir.path().join("b.yaml").display().to_string();
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert!(
        msgs.iter().any(|m| m.contains(&format!("{file}:9:5: rule deny must be a partial set rule"))),
        "{msgs:?}"
    );
    assert!(
        msgs.iter().any(|m| m.contains(&format!("{file}:11:5: rule enforce must be a partial set rule"))),
        "{msgs:?}"
    );
    assert!(!api_built(&ws));
}

#[test]
fn a_stack_is_ready_only_when_its_policies_are() {
    let ready = |ws: &mut Workspace| {
        let statuses = ws.statuses();
        let stack = &statuses.stacks["acme-platform/base"];
        stack.conditions.iter().find(|c| c.type_ == "Ready").cloned().expect("Ready")
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ws = workspace(dir.path(), &base());
    let fine = ready(&mut ws);
    assert_eq!(fine.status, edict::api::ConditionStatus::True);
    assert_eq!(fine.message, "selects 1 system", "one system, not `1 systems`");

    let broken = tempfile::tempdir().expect("tempdir");
    let mut docs = base();
    docs.push(("p.yaml", broken_policy()));
    let mut ws = workspace(broken.path(), &docs);
    let not = ready(&mut ws);
    assert_eq!(not.status, edict::api::ConditionStatus::False);
    assert_eq!(not.reason, "DependencyFailed");
    assert!(not.message.starts_with("Policy acme-platform/broken: InvalidRego: "), "{}", not.message);
}

/// What OPA's compiler refuses, edict refuses, in a Stack Policy and in a System Policy alike:
/// the Policy says what and where (the manifest's line and column, OPA's error code), the
/// System depends on it and gets no bundle. (Rego line L, column C of `spec.rego` is line 6+L,
/// column 4+C of the manifest `policy()` writes.)
#[test]
fn what_opas_compiler_refuses_is_refused_at_its_line() {
    let classes: [(&str, &str, &str, &str); 6] = [
        (
            "type",
            "deny contains \"x\" if {\n  count(5) > 0\n}\n",
            "p.yaml:10:7: rego_type_error: count: invalid argument(s)",
            "",
        ),
        (
            "unsafe",
            "deny contains msg if {\n  msg := y\n}\n",
            "p.yaml:10:7: rego_unsafe_var_error: var y is unsafe",
            "",
        ),
        (
            "undefined",
            "deny contains \"x\" if {\n  nope(1)\n}\n",
            "p.yaml:10:7: rego_type_error: undefined function nope",
            "",
        ),
        (
            "recursion",
            "deny contains \"x\" if a\n\na if b\n\nb if a\n",
            "p.yaml:11:5: rego_recursion_error: rule ",
            ".a is recursive",
        ),
        (
            "arity",
            "deny contains \"x\" if startswith(\"a\")\n",
            "p.yaml:9:26: rego_type_error: startswith: arity mismatch",
            "",
        ),
        (
            "deprecated",
            "deny contains \"x\" if any([true])\n",
            "p.yaml:9:26: rego_type_error: deprecated built-in function calls in expression: any",
            "",
        ),
    ];
    for (class, body, want, also) in classes {
        for (kind, ns, target, package) in
            [("Stack", "acme-platform", "base", "stacks.base"), ("System", "acme-team", "api", "team.rules")]
        {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut docs = base();
            docs.push(("p.yaml", policy("bad", ns, kind, target, &format!("package {package}\n\n{body}"))));
            let ws = workspace(dir.path(), &docs);
            let msgs = found(&ws, Reason::InvalidRego);
            assert!(
                msgs.iter().any(|m| m.starts_with(&format!("Policy {ns}/bad: "))
                    && m.contains(want)
                    && m.contains(also)),
                "{class} in a {kind} Policy: want {want:?}, got {msgs:#?}"
            );
            let deps = found(&ws, Reason::DependencyFailed);
            assert!(
                deps.iter().any(|m| m.starts_with("System acme-team/api: ") && m.contains(want)),
                "{class} in a {kind} Policy: the System must depend on it: {deps:#?}"
            );
            assert!(!api_built(&ws), "{class} in a {kind} Policy: no bundle may be built");
        }
    }
}

/// A decision whose `allowed` is written as a literal that cannot mean what it says is refused
/// at build time, at the literal.
#[test]
fn decisions_whose_allowed_cannot_mean_what_they_say_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut docs = base();
    let rego = "package team.values\n\nenforce contains {\"allowed\": \"yes\", \"message\": \"m\"}\n\ndeny contains {\"allowed\": true, \"message\": \"m\"}\n\nenforce contains {\"allowed\": false, \"message\": \"fine\"}\n";
    docs.push(("p.yaml", policy("values", "acme-team", "System", "api", rego)));
    let ws = workspace(dir.path(), &docs);
    let msgs = found(&ws, Reason::InvalidRego);
    let at = |m: &String| m.split_once("p.yaml:").map(|(_, rest)| rest.to_string()).unwrap_or_default();
    let mut msgs: Vec<String> = msgs.iter().map(at).collect();
    msgs.sort();
    assert_eq!(
        msgs,
        vec![
            "11:31: a deny decision cannot say allowed: true (use enforce for an allow)".to_string(),
            "9:35: an enforce decision's allowed must be true or false, not \"yes\"".to_string(),
        ]
    );
    assert!(!api_built(&ws));
}

/// `--opa-version` names the OPA release the OPAs run: a builtin that release lacks is an
/// undefined function, and an unknown release is refused with the ones edict knows.
#[test]
fn opa_version_decides_which_builtins_exist() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut docs = base();
    let rego = "package team.uris\n\ndeny contains \"bad uri\" if {\n  u := uri.parse(input.url)\n  u.scheme != \"https\"\n}\n";
    docs.push(("p.yaml", policy("uris", "acme-team", "System", "api", rego)));
    for (file, text) in &docs {
        std::fs::write(dir.path().join(file), text).expect("write");
    }
    let build = |version: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_edict"));
        cmd.args(["build", "-f"]).arg(dir.path()).env_remove("EDICT_OPA_VERSION");
        if let Some(v) = version {
            cmd.args(["--opa-version", v]);
        }
        let out = cmd.output().expect("run edict build");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, stdout, _) = build(None);
    assert_eq!(code, Some(0), "uri.parse exists in the newest release: {stdout}");
    let (code, stdout, _) = build(Some("v1.19.1"));
    assert_eq!(code, Some(0), "{stdout}");
    let (code, stdout, _) = build(Some("1.9.0"));
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("p.yaml:10:12: rego_type_error: undefined function uri.parse"), "{stdout}");
    let (code, _, stderr) = build(Some("v0.70.0"));
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("--opa-version v0.70.0: edict knows the builtins of OPA v1.9.0, v1.19.1"),
        "{stderr}"
    );
}

/// A Tenant names the OPA release its OPAs run (`spec.opaVersion`): its Systems are checked
/// against that release whatever the process's default, and a release edict does not know stalls
/// the Tenant and its Systems with the releases it knows.
#[test]
fn a_tenants_opa_version_decides_which_builtins_its_systems_may_call() {
    let rego = "package team.uris\n\ndeny contains \"bad uri\" if {\n  u := uri.parse(input.url)\n  u.scheme != \"https\"\n}\n";
    let with_version = |version: &str| {
        let mut docs = base();
        docs[0].1 = TENANT.replace(
            "namespaces: [\"acme-*\"]}",
            &format!("namespaces: [\"acme-*\"], opaVersion: \"{version}\"}}"),
        );
        assert!(docs[0].1.contains("opaVersion"), "{}", docs[0].1);
        docs.push(("p.yaml", policy("uris", "acme-team", "System", "api", rego)));
        let dir = tempfile::tempdir().expect("tempdir");
        let ws = workspace(dir.path(), &docs);
        (dir, ws)
    };
    let (_dir, ws) = with_version("1.19.1");
    assert!(api_built(&ws), "{:#?}", ws.problems());
    let (dir, ws) = with_version("v1.9.0");
    let at = |file: &str| format!("{}", dir.path().join(file).display());
    assert_eq!(
        found(&ws, Reason::InvalidRego),
        vec![format!(
            "Policy acme-team/uris: {}:10:12: rego_type_error: undefined function uri.parse",
            at("p.yaml")
        )]
    );
    assert!(!api_built(&ws));
    let (dir, ws) = with_version("0.70");
    let at = format!("{}", dir.path().join("tenant.yaml").display());
    assert_eq!(
        found(&ws, Reason::UnknownOpaVersion),
        vec![format!(
            "Tenant acme: {at}:1: spec.opaVersion: edict knows the builtins of OPA v1.9.0, v1.19.1, not 0.70"
        )]
    );
    let stalled = found(&ws, Reason::DependencyFailed);
    assert!(
        stalled.iter().any(|m| m.starts_with("System acme-team/api:")
            && m.contains("Tenant acme: ")
            && m.contains("not 0.70")),
        "{stalled:#?}"
    );
    assert!(!api_built(&ws));
}

/// Past OPA's limit of ten errors, the last problem says so, with no `:0:` place.
#[test]
fn past_the_error_limit_no_message_has_a_zero_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut docs = base();
    let rules: String = (1..=11).map(|i| format!("r{i} if x{i}\n")).collect();
    docs.push((
        "p.yaml",
        policy("many", "acme-team", "System", "api", &format!("package team.many\n\n{rules}")),
    ));
    let ws = workspace(dir.path(), &docs);
    let all: Vec<String> = ws.problems().iter().map(|p| p.message.clone()).collect();
    assert!(all.iter().any(|m| m == "rego_compile_error: error limit reached"), "{all:#?}");
    assert!(all.iter().all(|m| !m.contains(":0:")), "{all:#?}");
    assert_eq!(all.iter().filter(|m| m.contains("rego_unsafe_var_error")).count(), 2 * 10, "{all:#?}");
}

/// `edict test` and `edict eval` refuse a Policy OPA's compiler refuses too, at its line.
#[test]
fn test_and_eval_refuse_what_opas_compiler_refuses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut docs = base();
    let rego = "package team.rules\n\ndeny contains \"x\" if {\n  count(5) > 0\n}\n";
    docs.push(("p.yaml", policy("typed", "acme-team", "System", "api", rego)));
    for (file, text) in &docs {
        std::fs::write(dir.path().join(file), text).expect("write");
    }
    let want = "p.yaml:10:7: rego_type_error: count: invalid argument(s)";
    let test = Command::new(env!("CARGO_BIN_EXE_edict"))
        .args(["test", "-f"])
        .arg(dir.path())
        .output()
        .expect("edict test");
    let stdout = String::from_utf8_lossy(&test.stdout);
    assert_eq!(test.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains(want), "{stdout}");
    let input = dir.path().join("input.json");
    std::fs::write(&input, "{}").expect("write input");
    let eval = Command::new(env!("CARGO_BIN_EXE_edict"))
        .args(["eval", "--system", "acme-team/api", "--input"])
        .arg(&input)
        .arg("-f")
        .arg(dir.path())
        .output()
        .expect("edict eval");
    let all = format!("{}{}", String::from_utf8_lossy(&eval.stdout), String::from_utf8_lossy(&eval.stderr));
    assert_eq!(eval.status.code(), Some(2), "{all}");
    assert!(all.contains(want) && all.contains("System acme-team/api does not build"), "{all}");
}
