//! The operator without a cluster: the engine fed by watch changes (pure), and the calls it
//! makes to the API server, checked against a mock API server (the ApiServerVerifier pattern).
#![cfg(feature = "aws")]

mod common;

use std::collections::BTreeSet;

use common::kube::{Call, api_server, body, echo, mock, not_found, respond};
use edict::api::{DefaultDecision, Policy, Stack, System, SystemType, Tenant};
use edict::fixtures::{TestSystem, TestTenant};
use edict::model::{Kind, ObjectKey};
use edict::operator::watch::Change;
use edict::operator::{Engine, leader, status_writer};
use edict::sources::manifest::{self, Located};
use http::Method;
use serde_json::json;

fn objects(file: &str) -> Vec<Located> {
    let text = std::fs::read_to_string(common::root().join("examples/acme").join(file)).expect("example");
    // As the API server returns them: no file to point at.
    manifest::parse("", &text)
        .objects
        .into_iter()
        .map(|mut l| {
            l.origin = Default::default();
            l
        })
        .collect()
}

fn all_examples() -> Vec<Located> {
    ["tenant.yaml", "stacks.yaml", "systems.yaml"].iter().flat_map(|f| objects(f)).collect()
}

#[tokio::test]
async fn changes_rebuild_only_what_they_affect_and_statuses_follow() {
    let store = tempfile::tempdir().expect("tempdir");
    let mut engine = Engine::new("c1", store.path().to_path_buf());
    let mut affected = BTreeSet::new();
    for located in all_examples() {
        affected.extend(engine.apply(Change::Apply(Box::new(located))));
    }
    assert_eq!(affected.len(), 3, "every System is affected at first: {affected:?}");
    let keys: Vec<ObjectKey> = affected.into_iter().collect();
    engine.reconcile(&keys).await;
    let statuses = engine.statuses();
    for (key, s) in &statuses.systems {
        assert_eq!(s.conditions[0].status, edict::api::ConditionStatus::True, "{key}: {:?}", s.conditions);
        assert!(s.revision.is_some(), "{key} is published");
    }
    assert!(store.path().join("bundles/acme/c1/acme-payments/payments-cluster/bundle.tar.gz").exists());
    let metrics = engine.metrics.render();
    assert!(metrics.contains(r#"edict_reconciles_total{kind="System",result="published"} 3"#), "{metrics}");
    assert!(metrics.contains("edict_publish_duration_seconds_count 3"), "{metrics}");
    assert!(metrics.contains(r#"edict_objects{kind="Policy"} 7"#), "{metrics}");

    // Break a stack policy: only the Systems bound to that stack are affected, and they stall
    // with the Policy's message; the Policy says where (no file: spec.rego:line:col).
    let mut broken = objects("stacks.yaml")
        .into_iter()
        .find(|l| l.object.key().name == "restrict-proxies")
        .expect("policy");
    if let manifest::Object::Policy(p) = &mut broken.object {
        p.spec.rego = p.spec.rego.replace("image in proxy_images\n", "image in proxy_images +\n");
        p.metadata.generation = Some(2);
    }
    let affected: Vec<ObjectKey> = engine.apply(Change::Apply(Box::new(broken))).into_iter().collect();
    assert_eq!(affected, vec![ObjectKey::new("acme-payments", "payments-cluster")]);
    engine.reconcile(&affected).await;
    let after = engine.statuses();
    let policy = &after.policies["acme-platform/restrict-proxies"].conditions[0];
    assert_eq!((policy.reason.as_str(), policy.status), ("InvalidRego", edict::api::ConditionStatus::False));
    assert!(policy.message.starts_with("spec.rego:"), "{}", policy.message);
    let system = &after.systems["acme-payments/payments-cluster"];
    assert_eq!(system.conditions[1].type_, "Stalled");
    assert_eq!(system.conditions[1].status, edict::api::ConditionStatus::True);
    assert_eq!(
        system.revision, statuses.systems["acme-payments/payments-cluster"].revision,
        "last good bundle still live"
    );
    assert_eq!(
        after.systems["acme-shop/storefront-envoy"], statuses.systems["acme-shop/storefront-envoy"],
        "others untouched"
    );

    // A re-list that no longer holds a System deletes it.
    let present: BTreeSet<ObjectKey> = [
        ObjectKey::new("acme-payments", "payments-cluster"),
        ObjectKey::new("acme-shop", "storefront-envoy"),
    ]
    .into();
    let gone: Vec<ObjectKey> = engine.apply(Change::Resync(Kind::System, present)).into_iter().collect();
    assert_eq!(gone, vec![ObjectKey::new("acme-data", "batch-api")]);
}

/// Rego that parses but that OPA's compiler refuses, through the operator: the Policy says
/// `spec.rego:line:col` with OPA's error code, the System stalls, nothing is published.
#[tokio::test]
async fn a_policy_opas_compiler_refuses_stalls_its_systems_and_publishes_nothing() {
    let store = tempfile::tempdir().expect("tempdir");
    let mut engine = Engine::new("c1", store.path().to_path_buf());
    let mut affected = BTreeSet::new();
    for located in all_examples() {
        affected.extend(engine.apply(Change::Apply(Box::new(located))));
    }
    let keys: Vec<ObjectKey> = affected.into_iter().collect();
    engine.reconcile(&keys).await;
    let before = engine.statuses();
    let live = store.path().join("bundles/acme/c1/acme-payments/payments-cluster/bundle.tar.gz");
    let live_bytes = std::fs::read(&live).expect("published");

    let mut typed = objects("stacks.yaml")
        .into_iter()
        .find(|l| l.object.key().name == "restrict-proxies")
        .expect("policy");
    let mut line = 0;
    if let manifest::Object::Policy(p) = &mut typed.object {
        line = p.spec.rego.lines().position(|l| l == "\timage in proxy_images").expect("the line") + 2;
        p.spec.rego =
            p.spec.rego.replace("\timage in proxy_images\n", "\timage in proxy_images\n\tcount(5) > 0\n");
        p.metadata.generation = Some(2);
    }
    let affected: Vec<ObjectKey> = engine.apply(Change::Apply(Box::new(typed))).into_iter().collect();
    engine.reconcile(&affected).await;
    let after = engine.statuses();
    let policy = &after.policies["acme-platform/restrict-proxies"].conditions[0];
    assert_eq!((policy.reason.as_str(), policy.status), ("InvalidRego", edict::api::ConditionStatus::False));
    assert!(
        policy
            .message
            .starts_with(&format!("spec.rego:{line}:2: rego_type_error: count: invalid argument(s)")),
        "{}",
        policy.message
    );
    let system = &after.systems["acme-payments/payments-cluster"];
    assert_eq!(system.conditions[1].type_, "Stalled");
    assert_eq!(system.conditions[1].status, edict::api::ConditionStatus::True);
    assert!(system.conditions[1].message.contains("rego_type_error"), "{}", system.conditions[1].message);
    assert_eq!(
        system.revision, before.systems["acme-payments/payments-cluster"].revision,
        "last good bundle still live"
    );
    assert_eq!(std::fs::read(&live).expect("still there"), live_bytes, "nothing published");
}

#[tokio::test]
async fn statuses_are_applied_server_side_and_only_when_changed() {
    let store = tempfile::tempdir().expect("tempdir");
    let mut engine = Engine::new("c1", store.path().to_path_buf());
    for located in [acme().located(), storefront_envoy().located()] {
        engine.apply(Change::Apply(Box::new(located)));
    }
    let keys = vec![ObjectKey::new("acme-shop", "storefront-envoy")];
    engine.reconcile(&keys).await;
    let new = engine.statuses();
    let mut old = new.clone();
    // Only one System differs from what was written before.
    std::sync::Arc::make_mut(old.systems.get_mut("acme-shop/storefront-envoy").expect("system"))
        .stack_count = 99;

    let (client, mut handle) = mock();
    let verifier = tokio::spawn(async move {
        let (req, send) = handle.next_request().await.expect("one request");
        assert_eq!(req.method(), Method::PATCH);
        let uri = req.uri().to_string();
        assert!(
            uri.starts_with("/apis/edict.dev/v1alpha1/namespaces/acme-shop/systems/storefront-envoy/status?"),
            "{uri}"
        );
        assert!(
            uri.contains("fieldManager=edict") && uri.contains("force=true"),
            "server-side apply, one manager: {uri}"
        );
        assert_eq!(req.headers()["content-type"], "application/apply-patch+yaml");
        let patch = body(req).await;
        assert_eq!(
            (patch["apiVersion"].as_str(), patch["kind"].as_str()),
            (Some("edict.dev/v1alpha1"), Some("System"))
        );
        assert_eq!(patch["status"]["conditions"][0]["type"], "Ready");
        assert!(patch.get("spec").is_none(), "only the status is applied");
        respond(
            send,
            200,
            serde_json::json!({"apiVersion": "edict.dev/v1alpha1", "kind": "System", "metadata": {"name": "storefront-envoy", "namespace": "acme-shop"}, "spec": {"type": "envoy"}}),
        );
        assert!(handle.next_request().await.is_none(), "nothing else is written");
    });
    let failures = status_writer::write(&client, &old, &new).await;
    drop(client);
    assert!(failures.is_empty(), "{failures:?}");
    verifier.await.expect("verifier");
}

#[tokio::test]
async fn leader_creates_the_lease_when_there_is_none() {
    let (client, mut handle) = mock();
    let cfg = leader::LeaseConfig::new("edict-system", "pod-a");
    let verifier = tokio::spawn(async move {
        let (req, send) = handle.next_request().await.expect("get");
        assert_eq!(
            (req.method(), req.uri().path()),
            (&Method::GET, "/apis/coordination.k8s.io/v1/namespaces/edict-system/leases/edict-leader")
        );
        respond(
            send,
            404,
            serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}),
        );
        let (req, send) = handle.next_request().await.expect("create");
        assert_eq!(req.method(), Method::POST);
        let lease = body(req).await;
        assert_eq!(lease["spec"]["holderIdentity"], "pod-a");
        assert_eq!(lease["spec"]["leaseDurationSeconds"], 10);
        respond(send, 201, lease);
    });
    let api = kube::Api::namespaced(client, "edict-system");
    assert!(leader::round(&api, &cfg).await.expect("round"), "creating the lease makes us the leader");
    verifier.await.expect("verifier");
}

#[tokio::test]
async fn a_standby_follows_a_live_leader_and_loses_a_race_quietly() {
    let (client, mut handle) = mock();
    let cfg = leader::LeaseConfig::new("edict-system", "pod-b");
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let held = serde_json::json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "edict-leader", "namespace": "edict-system", "resourceVersion": "7"},
        "spec": {"holderIdentity": "pod-a", "leaseDurationSeconds": 10, "renewTime": now}});
    let stale = serde_json::json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "edict-leader", "namespace": "edict-system", "resourceVersion": "8"},
        "spec": {"holderIdentity": "pod-a", "leaseDurationSeconds": 10, "renewTime": "2020-01-01T00:00:00.000000Z"}});
    let verifier = tokio::spawn(async move {
        let (_, send) = handle.next_request().await.expect("get");
        respond(send, 200, held);
        // Second round: the holder stopped renewing; the takeover is a compare-and-swap that
        // another standby won first (409): no error, no leadership.
        let (_, send) = handle.next_request().await.expect("get");
        respond(send, 200, stale);
        let (req, send) = handle.next_request().await.expect("replace");
        assert_eq!(req.method(), Method::PUT);
        let lease = body(req).await;
        assert_eq!(lease["metadata"]["resourceVersion"], "8", "the takeover names the version it read");
        assert_eq!(lease["spec"]["holderIdentity"], "pod-b");
        assert_eq!(lease["spec"]["leaseTransitions"], 1);
        respond(
            send,
            409,
            serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409, "message": "conflict"}),
        );
    });
    let api = kube::Api::namespaced(client, "edict-system");
    assert!(!leader::round(&api, &cfg).await.expect("round"), "pod-a leads");
    assert!(!leader::round(&api, &cfg).await.expect("round"), "lost the race");
    verifier.await.expect("verifier");
}

/// The Acme Tenant as `examples/acme/tenant.yaml` defines it.
fn acme() -> TestTenant {
    Tenant::test("acme").namespaces(["acme-*", "acme-**"]).retention(20)
}

/// The Systems of `examples/acme/systems.yaml`, without their Policies.
fn payments_cluster() -> TestSystem {
    System::test("acme-payments", "payments-cluster")
        .labels([("env", "production"), ("team", "payments")])
        .default_decision(DefaultDecision::Allow)
        .service_account("opa")
        .features(json!({"proxies": {"allowed": ["envoyproxy/envoy"]}}))
}

fn storefront_envoy() -> TestSystem {
    System::test("acme-shop", "storefront-envoy")
        .system_type(SystemType::Envoy)
        .labels([("env", "production"), ("tier", "public-web")])
}

fn batch_api() -> TestSystem {
    System::test("acme-data", "batch-api")
        .system_type(SystemType::Custom)
        .labels([("env", "staging"), ("team", "data")])
        .monitor()
        .default_decision(DefaultDecision::Allow)
}

/// The Acme Tenant and its three Systems, each with the uid `uid-<name>` the API server gave it.
fn acme_systems() -> Vec<Located> {
    vec![
        acme().located(),
        payments_cluster().uid("uid-payments-cluster").located(),
        storefront_envoy().uid("uid-storefront-envoy").located(),
        batch_api().uid("uid-batch-api").located(),
    ]
}

/// An engine holding `objects`, whose OPAs fetch bundles from edict's bundle API.
fn engine_with(store: &std::path::Path, objects: impl IntoIterator<Item = Located>) -> Engine {
    let mut engine =
        Engine::new("c1", store.to_path_buf()).with_bundle_url("http://edict.edict-system.svc:8181");
    for located in objects {
        engine.apply(Change::Apply(Box::new(located)));
    }
    engine
}

#[tokio::test]
async fn new_systems_get_the_finalizer_and_a_config_map_through_server_side_apply() {
    let store = tempfile::tempdir().expect("tempdir");
    let mut engine = engine_with(store.path(), acme_systems());
    let keys: Vec<ObjectKey> = engine
        .statuses()
        .systems
        .keys()
        .map(|k| {
            let (ns, n) = k.split_once('/').expect("key");
            ObjectKey::new(ns, n)
        })
        .collect();
    engine.reconcile(&keys).await;
    let (client, server) = api_server(echo);
    let notices = engine.sync(&client).await;
    // Nothing left to do: a second round makes no call.
    engine.reconcile(&keys).await;
    assert!(!engine.has_kube_work(), "everything applied");
    let again = engine.sync(&client).await;
    drop(client);
    let calls = server.await.expect("server");
    assert!(notices.is_empty() && again.is_empty(), "{notices:?} {again:?}");

    let finalizers: Vec<&Call> =
        calls.iter().filter(|c| c.method == Method::PATCH && c.path.contains("/systems/")).collect();
    assert_eq!(finalizers.len(), 3, "one finalizer apply per System: {calls:#?}");
    for c in &finalizers {
        assert!(c.query.contains("fieldManager=edict") && c.query.contains("force=true"), "{}", c.query);
        assert_eq!(c.body["metadata"]["finalizers"], serde_json::json!(["edict.dev/cleanup"]));
        assert!(c.body.get("spec").is_none(), "only the finalizer is applied: {}", c.body);
    }
    let maps: Vec<&Call> = calls.iter().filter(|c| c.path.contains("/configmaps/")).collect();
    assert_eq!(maps.len(), 3, "{calls:#?}");
    let payments = maps
        .iter()
        .find(|c| {
            c.is(&Method::PATCH, "/api/v1/namespaces/acme-payments/configmaps/payments-cluster-opa-config")
        })
        .expect("the payments ConfigMap");
    assert!(payments.query.contains("fieldManager=edict"), "{}", payments.query);
    let owner = &payments.body["metadata"]["ownerReferences"][0];
    assert_eq!(
        (owner["kind"].as_str(), owner["uid"].as_str()),
        (Some("System"), Some("uid-payments-cluster"))
    );
    let config: serde_json::Value =
        serde_norway::from_str(payments.body["data"]["config.yaml"].as_str().expect("config.yaml"))
            .expect("yaml");
    assert_eq!(config["services"]["edict"]["url"], "http://edict.edict-system.svc:8181");
    assert_eq!(
        config["bundles"]["payments-cluster"]["resource"],
        "bundles/acme/c1/acme-payments/payments-cluster/bundle.tar.gz"
    );
    assert_eq!(config["default_decision"], "/main/main");
    // The tenant has no identity: no ServiceAccount is touched even though the System names one.
    assert!(!calls.iter().any(|c| c.path.contains("/serviceaccounts/")), "{calls:#?}");
    let statuses = engine.statuses();
    assert_eq!(
        statuses.systems["acme-payments/payments-cluster"].config_map.as_deref(),
        Some("payments-cluster-opa-config")
    );
}

fn desired_with_role(sa: &str) -> edict::operator::wiring::Desired {
    edict::operator::wiring::Desired {
        key: ObjectKey::new("team-a", "api"),
        uid: "u1".into(),
        config_map: "api-opa-config".into(),
        config: "services: {}\n".into(),
        service_account: Some(sa.into()),
        role: Some(edict::operator::wiring::Role {
            arn: "arn:aws:iam::111122223333:role/edict/edict-c1-team-a-api".into(),
            managed: None,
        }),
    }
}

#[tokio::test]
async fn a_missing_service_account_is_reported_and_never_created() {
    use edict::operator::wiring;
    let (client, server) =
        api_server(|c| if c.path.ends_with("/serviceaccounts/opa") { not_found() } else { echo(c) });
    let err = wiring::apply(&client, None, &desired_with_role("opa"), &wiring::Applied::default())
        .await
        .expect_err("the ServiceAccount is missing");
    drop(client);
    let calls = server.await.expect("server");
    assert_eq!(err.reason, edict::engine::problem::Reason::MissingServiceAccount);
    assert_eq!(
        err.message,
        "spec.serviceAccountName: ServiceAccount team-a/opa does not exist; create it (its OPA runs as it) or fix the name"
    );
    assert!(
        !calls.iter().any(|c| c.method == Method::PATCH && c.path.contains("/serviceaccounts/")),
        "a server-side apply would create it: {calls:#?}"
    );
}

#[tokio::test]
async fn the_role_annotation_follows_the_service_account() {
    use edict::operator::wiring;
    let (client, server) = api_server(echo);
    let first = wiring::apply(&client, None, &desired_with_role("opa"), &wiring::Applied::default())
        .await
        .expect("applied");
    assert_eq!(first.service_account.as_deref(), Some("opa"));
    // The System now names another ServiceAccount: the old one loses edict's annotation.
    let second = wiring::apply(&client, None, &desired_with_role("opa-v2"), &first).await.expect("applied");
    assert_eq!(second.role_arn.as_deref(), Some("arn:aws:iam::111122223333:role/edict/edict-c1-team-a-api"));
    drop(client);
    let calls = server.await.expect("server");
    let patches: Vec<&Call> =
        calls.iter().filter(|c| c.method == Method::PATCH && c.path.contains("/serviceaccounts/")).collect();
    let paths: Vec<&str> = patches.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/api/v1/namespaces/team-a/serviceaccounts/opa",
            "/api/v1/namespaces/team-a/serviceaccounts/opa-v2",
            "/api/v1/namespaces/team-a/serviceaccounts/opa",
        ]
    );
    assert_eq!(
        patches[0].body["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::111122223333:role/edict/edict-c1-team-a-api"
    );
    assert!(patches[2].body["metadata"].get("annotations").is_none(), "released: {}", patches[2].body);
    for p in &patches {
        assert!(p.query.contains("fieldManager=edict"), "{}", p.query);
    }
}

#[tokio::test]
async fn deleting_a_system_removes_what_edict_wrote_then_the_finalizer() {
    let store = tempfile::tempdir().expect("tempdir");
    let mut engine = engine_with(store.path(), acme_systems());
    let all = [
        ObjectKey::new("acme-payments", "payments-cluster"),
        ObjectKey::new("acme-shop", "storefront-envoy"),
        ObjectKey::new("acme-data", "batch-api"),
    ];
    engine.reconcile(&all).await;
    let (client, server) = api_server(echo);
    engine.sync(&client).await;
    let live = |sys: &str| store.path().join(format!("bundles/acme/c1/{sys}/bundle.tar.gz"));
    assert!(live("acme-data/batch-api").exists());

    // The user deletes batch-api: the API server sets deletionTimestamp (edict's finalizer holds it).
    let deleting = batch_api().deleting().located();
    let affected: Vec<ObjectKey> = engine.apply(Change::Apply(Box::new(deleting))).into_iter().collect();
    assert!(affected.iter().all(|k| k.name != "storefront-envoy"), "{affected:?}");
    engine.reconcile(&affected).await;
    assert_eq!(engine.retiring(), vec![ObjectKey::new("acme-data", "batch-api")]);
    let before = {
        let (client2, server2) = api_server(echo);
        engine.sync(&client2).await;
        drop(client2);
        server2.await.expect("server")
    };
    assert!(engine.retiring().is_empty(), "cleanup finished");
    assert!(!live("acme-data/batch-api").exists(), "its bundle is gone");
    let left = edict::registry::store::ObjectStore::list(
        &edict::registry::store::DirStore::new(store.path().to_path_buf()),
        "bundles/acme/c1/acme-data/batch-api/",
    )
    .await
    .expect("list");
    assert!(left.is_empty(), "its history is gone too: {left:?}");
    assert!(live("acme-shop/storefront-envoy").exists() && live("acme-payments/payments-cluster").exists());
    let steps: Vec<(Method, &str)> = before.iter().map(|c| (c.method.clone(), c.path.as_str())).collect();
    assert_eq!(
        steps,
        [
            (Method::GET, "/api/v1/namespaces/acme-data/configmaps/batch-api-opa-config"),
            (Method::DELETE, "/api/v1/namespaces/acme-data/configmaps/batch-api-opa-config"),
            (Method::PATCH, "/apis/edict.dev/v1alpha1/namespaces/acme-data/systems/batch-api"),
        ]
    );
    let release = &before[2].body;
    assert!(release["metadata"].get("finalizers").is_none(), "applied without the finalizer: {release}");
    assert!(!engine.statuses().systems.contains_key("acme-data/batch-api"));

    // The deletion that follows is not a second cleanup.
    let after = engine.apply(Change::Delete(Kind::System, ObjectKey::new("acme-data", "batch-api")));
    assert!(after.is_empty() && engine.retiring().is_empty());
    drop(client);
    server.await.expect("server");
}

#[tokio::test]
async fn cleanup_leaves_a_config_map_edict_did_not_write() {
    let store = tempfile::tempdir().expect("tempdir");
    let mut engine =
        engine_with(store.path(), [acme().located(), batch_api().uid("uid-batch-api").located()]);
    engine.apply(Change::Delete(Kind::System, ObjectKey::new("acme-data", "batch-api")));
    let (client, server) = api_server(|c| {
        if c.method == Method::GET && c.path.contains("/configmaps/") {
            // Same name, but the user's.
            (
                200,
                serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "batch-api-opa-config", "namespace": "acme-data"}}),
            )
        } else {
            echo(c)
        }
    });
    engine.sync(&client).await;
    drop(client);
    let calls = server.await.expect("server");
    assert!(!calls.iter().any(|c| c.method == Method::DELETE), "{calls:#?}");
    assert!(
        !calls.iter().any(|c| c.path.ends_with("/systems/batch-api")),
        "no finalizer to remove on an object already gone: {calls:#?}"
    );
    assert!(engine.retiring().is_empty());
}

#[tokio::test]
async fn an_unavailable_api_server_is_retried_and_said_in_status() {
    let store = tempfile::tempdir().expect("tempdir");
    let mut engine = engine_with(
        store.path(),
        [acme().located(), storefront_envoy().uid("uid-storefront-envoy").located()],
    );
    let key = ObjectKey::new("acme-shop", "storefront-envoy");
    engine.reconcile(std::slice::from_ref(&key)).await;
    let (client, server) = api_server(|c| {
        if c.path.contains("/configmaps/") {
            (
                503,
                serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "ServiceUnavailable", "code": 503, "message": "etcd is away"}),
            )
        } else {
            echo(c)
        }
    });
    engine.sync(&client).await;
    let status = engine.statuses().systems["acme-shop/storefront-envoy"].clone();
    let ready = &status.conditions[0];
    assert_eq!(
        (ready.type_.as_str(), ready.status, ready.reason.as_str()),
        ("Ready", edict::api::ConditionStatus::False, "Unavailable")
    );
    assert!(ready.message.contains("ConfigMap acme-shop/storefront-envoy-opa-config"), "{}", ready.message);
    let reconciling = status.conditions.iter().find(|c| c.type_ == "Reconciling").expect("Reconciling");
    let stalled = status.conditions.iter().find(|c| c.type_ == "Stalled").expect("Stalled");
    assert_eq!(reconciling.status, edict::api::ConditionStatus::True, "a passing failure is in progress");
    assert_eq!(stalled.status, edict::api::ConditionStatus::False);
    assert!(status.revision.is_some(), "the bundle itself was published");
    let next = engine.next_retry().expect("a retry is scheduled");
    assert!(next > std::time::Instant::now(), "with back-off");
    drop(client);
    server.await.expect("server");

    // The API server is back: the retry applies it and the System is Ready.
    let due = engine.due(next);
    assert_eq!(due, vec![key.clone()]);
    engine.reconcile(&due).await;
    let (client, server) = api_server(echo);
    engine.sync(&client).await;
    drop(client);
    server.await.expect("server");
    let status = &engine.statuses().systems["acme-shop/storefront-envoy"];
    assert_eq!(status.conditions[0].status, edict::api::ConditionStatus::True, "{:?}", status.conditions);
    assert!(engine.next_retry().is_none());
}

/// A permission edict lacks is not a passing failure: the System is Stalled with the permission
/// the API server names (it is looked for again, with back-off, since nothing announces a grant).
#[tokio::test]
async fn a_forbidden_write_stalls_with_the_missing_permission() {
    let store = tempfile::tempdir().expect("tempdir");
    let mut engine = engine_with(
        store.path(),
        [acme().located(), storefront_envoy().uid("uid-storefront-envoy").located()],
    );
    let key = ObjectKey::new("acme-shop", "storefront-envoy");
    engine.reconcile(std::slice::from_ref(&key)).await;
    let refused = r#"configmaps "storefront-envoy-opa-config" is forbidden: User "system:serviceaccount:edict-system:edict" cannot patch resource "configmaps" in API group "" in the namespace "acme-shop""#;
    let (client, server) = api_server(move |c| {
        if c.path.contains("/configmaps/") {
            (
                403,
                serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403, "message": refused}),
            )
        } else {
            echo(c)
        }
    });
    engine.sync(&client).await;
    drop(client);
    server.await.expect("server");
    let status = engine.statuses().systems["acme-shop/storefront-envoy"].clone();
    let ready = &status.conditions[0];
    assert_eq!((ready.status, ready.reason.as_str()), (edict::api::ConditionStatus::False, "Forbidden"));
    assert!(ready.message.contains("cannot patch resource \"configmaps\""), "{}", ready.message);
    assert!(
        ready.message.starts_with("ConfigMap acme-shop/storefront-envoy-opa-config: "),
        "{}",
        ready.message
    );
    let stalled = status.conditions.iter().find(|c| c.type_ == "Stalled").expect("Stalled");
    assert_eq!(stalled.status, edict::api::ConditionStatus::True, "waits for a person");
    assert!(engine.next_retry().is_some_and(|at| at > std::time::Instant::now()), "looked for again, later");
    assert_eq!(edict::metrics::category("Forbidden"), "kubernetes");
}

#[tokio::test]
async fn namespace_labels_move_systems_into_a_tenant() {
    let store = tempfile::tempdir().expect("tempdir");
    let mut engine = Engine::new("c1", store.path().to_path_buf());
    let beta = Tenant::test("beta")
        .admin_namespace("beta-admin")
        .namespaces([])
        .namespaces_labelled("edict.dev/tenant", "beta");
    for located in [beta.located(), System::test("shop", "web").system_type(SystemType::Custom).located()] {
        engine.apply(Change::Apply(Box::new(located)));
    }
    let key = ObjectKey::new("shop", "web");
    engine.reconcile(std::slice::from_ref(&key)).await;
    let status = |engine: &mut Engine| engine.statuses().systems["shop/web"].conditions[0].clone();
    assert_eq!(status(&mut engine).reason, "NoTenant");

    let labels = |v: &str| Some([("edict.dev/tenant".to_string(), v.to_string())].into_iter().collect());
    let affected: Vec<ObjectKey> =
        engine.apply(Change::Namespace("shop".into(), labels("beta"))).into_iter().collect();
    assert_eq!(affected, vec![key.clone()]);
    engine.reconcile(&affected).await;
    let ready = status(&mut engine);
    assert_eq!((ready.status, ready.reason.as_str()), (edict::api::ConditionStatus::True, "Published"));
    assert_eq!(engine.statuses().tenants["beta"].systems, 1);
    assert!(store.path().join("bundles/beta/c1/shop/web/bundle.tar.gz").exists());

    // Relabeling to the same value changes nothing; another value takes the System out again.
    assert!(engine.apply(Change::Namespace("shop".into(), labels("beta"))).is_empty());
    let affected: Vec<ObjectKey> =
        engine.apply(Change::Namespace("shop".into(), labels("gamma"))).into_iter().collect();
    engine.reconcile(&affected).await;
    assert_eq!(status(&mut engine).reason, "NoTenant");
    // A re-list without the namespace forgets its labels.
    engine.apply(Change::Namespace("shop".into(), labels("beta")));
    let affected: Vec<ObjectKey> =
        engine.apply(Change::NamespaceResync(BTreeSet::new())).into_iter().collect();
    assert_eq!(affected, vec![key]);
}

#[tokio::test]
async fn a_status_only_update_rebuilds_nothing() {
    let store = tempfile::tempdir().expect("tempdir");
    let mut engine = engine_with(
        store.path(),
        [acme().located(), payments_cluster().uid("uid-payments-cluster").located()],
    );
    let written = payments_cluster()
        .uid("uid-payments-cluster")
        .status(edict::api::SystemStatus { revision: Some("abc".into()), ..Default::default() })
        .finalized();
    assert!(
        engine.apply(Change::Apply(Box::new(written.clone().located()))).is_empty(),
        "edict's own writes come back as events"
    );
    let relabelled = written.labels([("tier", "gold")]).located();
    assert_eq!(engine.apply(Change::Apply(Box::new(relabelled))).len(), 1, "a label change is a real change");
}

#[tokio::test]
async fn a_refused_finalizer_is_retried_with_back_off_not_in_a_loop() {
    let store = tempfile::tempdir().expect("tempdir");
    let mut engine = engine_with(store.path(), acme_systems());
    let forbidden = |c: &Call| {
        if c.path.contains("/systems/") {
            (
                403,
                serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403, "message": "systems is forbidden"}),
            )
        } else {
            echo(c)
        }
    };
    let (client, server) = api_server(forbidden);
    engine.sync(&client).await;
    // Nothing else may be attempted until the back-off has passed.
    assert!(!engine.has_kube_work(), "no busy loop on a refused finalizer");
    let next = engine.next_retry().expect("scheduled");
    assert!(next > std::time::Instant::now());
    engine.sync(&client).await;
    drop(client);
    let calls = server.await.expect("server");
    let attempts = calls.iter().filter(|c| c.path.contains("/systems/")).count();
    assert_eq!(attempts, 1, "the first refusal stops the round, the second sync waits: {calls:#?}");
}

#[tokio::test]
async fn a_restarted_operator_replaces_bundles_its_embedded_store_kept() {
    // The embedded store's bundles outlive the process; its index does not.
    let store = tempfile::tempdir().expect("tempdir");
    let key = ObjectKey::new("acme-shop", "storefront-envoy");
    let live = store.path().join("bundles/acme/c1/acme-shop/storefront-envoy/bundle.tar.gz");
    let mut first = engine_with(
        store.path(),
        [acme().located(), storefront_envoy().uid("uid-storefront-envoy").located()],
    );
    first.reconcile(std::slice::from_ref(&key)).await;
    let before = std::fs::read(&live).expect("published");
    drop(first);

    // While it was down, the System changed.
    let mut restarted = Engine::new("c1", store.path().to_path_buf());
    for located in
        [acme().located(), storefront_envoy().options(json!({"changed": true})).generation(2).located()]
    {
        restarted.apply(Change::Apply(Box::new(located)));
    }
    restarted.reconcile(std::slice::from_ref(&key)).await;
    let status = &restarted.statuses().systems["acme-shop/storefront-envoy"];
    assert_eq!(status.conditions[0].status, edict::api::ConditionStatus::True, "{:?}", status.conditions);
    assert_ne!(std::fs::read(&live).expect("live"), before, "the new bundle replaced the old one");
}

#[tokio::test]
async fn a_standby_keeps_its_embedded_store_current_and_plans_no_writes() {
    let store = tempfile::tempdir().expect("tempdir");
    let mut follower = Engine::new("c1", store.path().to_path_buf()).following();
    let mut affected = BTreeSet::new();
    for located in [acme().located(), storefront_envoy().located(), batch_api().located()] {
        affected.extend(follower.apply(Change::Apply(Box::new(located))));
    }
    let keys: Vec<ObjectKey> = affected.into_iter().collect();
    follower.reconcile(&keys).await;
    assert!(
        store.path().join("bundles/acme/c1/acme-shop/storefront-envoy/bundle.tar.gz").exists(),
        "its bundle API serves what the leader's does"
    );
    assert!(!follower.has_kube_work(), "no finalizer, ConfigMap or annotation from a standby");
    let batch = store.path().join("bundles/acme/c1/acme-data/batch-api");
    assert!(batch.join("bundle.tar.gz").exists());
    follower.apply(Change::Delete(Kind::System, ObjectKey::new("acme-data", "batch-api")));
    assert!(follower.retiring().is_empty(), "the leader cleans up, not a standby");
    follower.reconcile(&[]).await;
    assert!(!batch.join("bundle.tar.gz").exists(), "a standby serves no bundle of a deleted System");
    assert!(store.path().join("bundles/acme/c1/acme-shop/storefront-envoy/bundle.tar.gz").exists());
    let (client, server) = api_server(echo);
    follower.sync(&client).await;
    drop(client);
    assert!(server.await.expect("server").is_empty(), "a standby makes no call");
}

/// A replica's store may hold bundles of Systems deleted while it was down: once every list is
/// complete, it drops them, and keeps the others.
#[tokio::test]
async fn a_replica_drops_from_its_store_what_no_longer_exists() {
    let store = tempfile::tempdir().expect("tempdir");
    let mut before = engine_with(store.path(), acme_systems());
    let all: Vec<ObjectKey> = before
        .statuses()
        .systems
        .keys()
        .map(|k| {
            let (ns, name) = k.split_once('/').expect("ns/name");
            ObjectKey::new(ns, name)
        })
        .collect();
    before.reconcile(&all).await;
    drop(before);
    let live = |name: &str, ns: &str| store.path().join(format!("bundles/acme/c1/{ns}/{name}/bundle.tar.gz"));
    assert!(live("batch-api", "acme-data").exists());

    // Restarted as a standby; batch-api was deleted meanwhile.
    let mut restarted = Engine::new("c1", store.path().to_path_buf()).following();
    for located in [acme().located(), payments_cluster().located(), storefront_envoy().located()] {
        restarted.apply(Change::Apply(Box::new(located)));
    }
    restarted.prune_embedded().await;
    assert!(!live("batch-api", "acme-data").exists(), "a deleted System's bundle is dropped");
    let left = walk_files(&store.path().join("bundles/acme/c1/acme-data/batch-api"));
    assert!(left.is_empty(), "its revisions too: {left:?}");
    assert!(
        live("storefront-envoy", "acme-shop").exists() && live("payments-cluster", "acme-payments").exists()
    );
}

/// Every file under `dir` (none when it does not exist).
fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.path().is_dir() {
            out.extend(walk_files(&entry.path()));
        } else {
            out.push(entry.path());
        }
    }
    out
}

fn held_by(holder: &str, version: u32) -> serde_json::Value {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    serde_json::json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "edict-leader", "namespace": "edict-system", "resourceVersion": version.to_string()},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 1, "renewTime": now}})
}

fn fast_lease() -> leader::LeaseConfig {
    let mut cfg = leader::LeaseConfig::new("edict-system", "pod-a");
    cfg.retry = std::time::Duration::from_millis(20);
    cfg.duration = std::time::Duration::from_millis(200);
    cfg
}

#[tokio::test]
async fn a_passing_api_error_does_not_lose_the_lease_but_a_lasting_one_does() {
    use std::sync::atomic::{AtomicU32, Ordering};
    let gets = std::sync::Arc::new(AtomicU32::new(0));
    let counter = gets.clone();
    let (client, server) = api_server(move |c| {
        if c.method == Method::GET {
            // The third renewal fails; the others find the lease ours; from the sixth on, every one fails.
            let n = counter.fetch_add(1, Ordering::SeqCst);
            if n == 2 || n >= 5 {
                return (
                    500,
                    serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 500, "message": "etcd timeout"}),
                );
            }
            return (200, held_by("pod-a", n));
        }
        (200, c.body.clone())
    });
    let started = std::time::Instant::now();
    let (task, mut lost) = leader::keep(kube::Api::namespaced(client, "edict-system"), fast_lease());
    lost.changed().await.expect("lost");
    let took = started.elapsed();
    assert!(*lost.borrow());
    assert!(gets.load(Ordering::SeqCst) >= 8, "one failed renewal was not the end: {gets:?}");
    assert!(took >= std::time::Duration::from_millis(250), "held through the first failure: {took:?}");
    task.await.expect("task");
    server.abort();
}

#[tokio::test]
async fn another_holder_ends_leadership_at_the_next_renewal() {
    let (client, _server) = api_server(|_| (200, held_by("pod-b", 1)));
    let (task, mut lost) = leader::keep(kube::Api::namespaced(client, "edict-system"), fast_lease());
    tokio::time::timeout(std::time::Duration::from_secs(2), lost.changed())
        .await
        .expect("in time")
        .expect("lost");
    assert!(*lost.borrow());
    task.await.expect("task");
}

/// The initial lists arrive in pages (500 objects each from a real API server), the Policies
/// last: the operator runs no round before every list is complete, so no System is built
/// without the Policies of a later page, and what it then builds is what a full view builds.
#[tokio::test]
async fn no_round_runs_before_the_last_page_of_every_list() {
    use edict::operator::rounds::Rounds;
    use edict::sources::manifest::Object;
    use futures::StreamExt;
    use kube::runtime::watcher::Event;
    use std::time::{Duration, Instant};

    let (mut tenants, mut stacks, mut systems, mut policies) = (vec![], vec![], vec![], vec![]);
    for located in all_examples() {
        match located.object {
            Object::Tenant(o) => tenants.push(o),
            Object::Stack(o) => stacks.push(o),
            Object::System(o) => systems.push(o),
            Object::Policy(o) => policies.push(o),
        }
    }
    assert!(policies.len() >= 4, "{} policies", policies.len());

    // What the watches send, as kube's watcher gives it: Init, a page, …, InitDone.
    async fn sent<K: kube::Resource + Clone + Send + 'static>(
        events: Vec<Event<K>>,
        kind: Kind,
        wrap: fn(K) -> Object,
    ) -> Vec<Change> {
        let stream = futures::stream::iter(events.into_iter().map(Ok));
        edict::operator::watch::changes(stream, kind, wrap).collect().await
    }
    fn page<K: Clone>(all: &[K]) -> Vec<Event<K>> {
        all.iter().cloned().map(Event::InitApply).collect()
    }
    fn whole<K>(mut events: Vec<Event<K>>) -> Vec<Event<K>> {
        events.insert(0, Event::Init);
        events.push(Event::InitDone);
        events
    }
    let (first_page, last_page) = policies.split_at(policies.len() / 2);
    let mut policy_events = page(first_page);
    policy_events.extend(page(last_page));
    let mut policy_changes = sent(whole(policy_events), Kind::Policy, Object::Policy).await;
    // The API server pauses between the two pages of Policies.
    let after_pause = policy_changes.split_off(1 + first_page.len());
    let mut before_pause: Vec<Change> =
        vec![Change::Listing("Namespace"), Change::NamespaceResync(BTreeSet::new())];
    before_pause.extend(sent(whole(page(&tenants)), Kind::Tenant, Object::Tenant).await);
    before_pause.extend(sent(whole(page(&stacks)), Kind::Stack, Object::Stack).await);
    before_pause.extend(sent(whole(page(&systems)), Kind::System, Object::System).await);
    before_pause.extend(policy_changes);
    assert!(matches!(after_pause.last(), Some(Change::Resync(Kind::Policy, _))), "{after_pause:?}");

    let store = tempfile::tempdir().expect("tempdir");
    let mut engine = Engine::new("c1", store.path().to_path_buf());
    let mut rounds = Rounds::new();
    let mut pending = BTreeSet::new();
    let t0 = Instant::now();
    let mut now = t0;
    for change in before_pause {
        now += Duration::from_millis(5);
        rounds.observe(&change, now);
        pending.extend(engine.apply(change));
    }
    // The API server takes a while for the next page: long past the quiet time and the bound.
    now += Duration::from_secs(2);
    assert_eq!(
        rounds.due(),
        None,
        "a round would build from a partial view: waiting for {:?}",
        rounds.waiting_for()
    );
    assert_eq!(rounds.waiting_for(), vec!["Policy"]);
    for change in after_pause {
        now += Duration::from_millis(5);
        rounds.observe(&change, now);
        pending.extend(engine.apply(change));
    }
    let due = rounds.due().expect("a round is due once every list is complete");
    assert!(due <= now + edict::operator::rounds::QUIET);
    rounds.started();
    let keys: Vec<ObjectKey> = std::mem::take(&mut pending).into_iter().collect();
    engine.reconcile(&keys).await;

    // The same cluster seen whole at once builds the same bundles.
    let reference_store = tempfile::tempdir().expect("tempdir");
    let mut reference = Engine::new("c1", reference_store.path().to_path_buf());
    let mut all = BTreeSet::new();
    for located in all_examples() {
        all.extend(reference.apply(Change::Apply(Box::new(located))));
    }
    reference.reconcile(&all.into_iter().collect::<Vec<_>>()).await;
    let (built, expected) = (engine.statuses(), reference.statuses());
    assert_eq!(built.systems.len(), 3);
    for (key, status) in &expected.systems {
        assert!(status.revision.is_some(), "{key} built in the reference");
        assert_eq!(built.systems[key].revision, status.revision, "{key}");
    }
}

/// Events name their object with its uid (`kubectl describe` lists an event under an object
/// only when `regarding.uid` matches).
#[tokio::test]
async fn events_carry_the_uid_of_their_object() {
    let store = tempfile::tempdir().expect("tempdir");
    let mut engine = Engine::new("c1", store.path().to_path_buf());
    for located in [acme().located(), storefront_envoy().uid("uid-of-storefront-envoy").located()] {
        engine.apply(Change::Apply(Box::new(located)));
    }
    let mut notices = vec![status_writer::Notice {
        kind: "System",
        namespace: "acme-shop".into(),
        name: "storefront-envoy".into(),
        warning: true,
        reason: "InvalidRego".into(),
        message: "spec.rego:3:1: rego_parse_error: unexpected eof token".into(),
        uid: None,
    }];
    engine.with_uids(&mut notices);
    assert_eq!(notices[0].uid.as_deref(), Some("uid-of-storefront-envoy"));

    let (client, mut handle) = mock();
    let verifier = tokio::spawn(async move {
        let (req, send) = handle.next_request().await.expect("one request");
        assert_eq!(req.method(), Method::POST);
        assert!(req.uri().path().ends_with("/namespaces/acme-shop/events"), "{}", req.uri());
        let event = body(req).await;
        assert_eq!(event["regarding"]["uid"], "uid-of-storefront-envoy", "{event:#}");
        assert_eq!(event["regarding"]["kind"], "System");
        assert_eq!(event["type"], "Warning");
        respond(send, 201, event);
    });
    let reporter =
        kube::runtime::events::Reporter { controller: "edict".into(), instance: Some("test".into()) };
    let recorder = kube::runtime::events::Recorder::new(client, reporter);
    status_writer::publish(&recorder, &notices).await;
    drop(recorder);
    verifier.await.expect("verifier");
}

/// Status does not wait for a System: a Tenant, its Stacks and their Policies get status when
/// nothing binds them, a broken Policy of a Stack that selects no System stalls it, and the
/// Tenant's counts follow deletes.
#[tokio::test]
async fn objects_no_system_touches_get_status_and_counts_follow_deletes() {
    let store = tempfile::tempdir().expect("tempdir");
    let mut engine = Engine::new("c1", store.path().to_path_buf());
    // A Rego parse error: the operand after `+` is missing.
    let broken = r#"package stacks.kubernetes_baseline.proxies

proxy_images := {"envoyproxy/envoy", "nginx", "haproxy", "traefik"}

deny contains msg if {
	some container in input.request.object.spec.containers
	image := split(container.image, ":")[0]
	image in proxy_images +
	msg := sprintf("container %q runs proxy %q", [container.name, image])
}
"#;
    let objects = [
        acme().located(),
        Stack::test("acme-platform", "kubernetes-baseline")
            .selects("env", "prod*")
            .selects("env", "staging")
            .excludes("baseline", "opt-out")
            .located(),
        Policy::test("acme-platform", "restrict-proxies")
            .for_stack("kubernetes-baseline")
            .rego(broken)
            .located(),
        Stack::test("acme-platform", "edge-network-guard")
            .system_type(SystemType::Envoy)
            .selects("tier", "edge")
            .selects("tier", "public-*")
            .located(),
        Policy::test("acme-platform", "untrusted-networks").for_stack("edge-network-guard").located(),
    ];
    let mut stacks = 0;
    for located in objects {
        if matches!(located.object, edict::sources::manifest::Object::Stack(_)) {
            stacks += 1;
        }
        let affected = engine.apply(Change::Apply(Box::new(located)));
        assert!(affected.is_empty(), "no System exists: {affected:?}");
    }
    assert!(stacks >= 2, "{stacks} stacks");
    engine.reconcile(&[]).await;
    let statuses = engine.statuses();
    assert!(statuses.systems.is_empty());
    let tenant = &statuses.tenants["acme"];
    assert_eq!(tenant.stacks, stacks as u32, "{tenant:?}");
    let policy = &statuses.policies["acme-platform/restrict-proxies"].conditions[0];
    assert_eq!((policy.reason.as_str(), policy.status), ("InvalidRego", edict::api::ConditionStatus::False));
    let stack = &statuses.stacks["acme-platform/kubernetes-baseline"];
    let ready = &stack.conditions[0];
    assert_eq!(ready.status, edict::api::ConditionStatus::False, "{stack:?}");
    assert!(ready.message.contains("restrict-proxies"), "{}", ready.message);

    engine.apply(Change::Delete(Kind::Stack, ObjectKey::new("acme-platform", "kubernetes-baseline")));
    let after = engine.statuses();
    assert_eq!(after.tenants["acme"].stacks, stacks as u32 - 1);
    assert!(!after.stacks.contains_key("acme-platform/kubernetes-baseline"));
}

/// A restart or failover with nothing changed writes no status: the new leader takes the
/// statuses the objects show as written, and each condition keeps its `lastTransitionTime`.
#[tokio::test]
async fn a_restart_with_nothing_changed_writes_no_status() {
    let store = tempfile::tempdir().expect("tempdir");
    let mut first = Engine::new("c1", store.path().to_path_buf());
    let mut keys = BTreeSet::new();
    for located in all_examples() {
        keys.extend(first.apply(Change::Apply(Box::new(located))));
    }
    let keys: Vec<ObjectKey> = keys.into_iter().collect();
    first.reconcile(&keys).await;
    // Finalizers and each System's ConfigMap.
    let (client, server) = api_server(echo);
    first.sync(&client).await;
    drop(client);
    let wired = server.await.expect("server");
    assert!(wired.iter().any(|c| c.path.contains("/configmaps/")), "{wired:#?}");
    let before = first.statuses();
    assert_eq!(before.systems.len(), 3);
    assert!(
        before.systems.values().all(|s| s.config_map.is_some() && s.wiring_digest.is_some()),
        "{before:#?}"
    );
    fn files(dir: &std::path::Path, out: &mut Vec<(std::path::PathBuf, std::time::SystemTime, u64)>) {
        for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
            let meta = entry.metadata().expect("metadata");
            if meta.is_dir() {
                files(&entry.path(), out);
            } else {
                out.push((entry.path(), meta.modified().expect("mtime"), meta.len()));
            }
        }
        out.sort();
    }
    let mut stored = Vec::new();
    files(store.path(), &mut stored);
    assert!(stored.iter().any(|(p, _, _)| p.to_string_lossy().contains("/commits/")), "{stored:#?}");

    // What the new leader's watches show: the objects with the statuses the first one wrote,
    // a few seconds later.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let mut restarted = Engine::new("c1", store.path().to_path_buf());
    for mut located in all_examples() {
        let key = located.object.key().to_string();
        match &mut located.object {
            edict::sources::manifest::Object::Tenant(o) => {
                o.status = before
                    .tenants
                    .get(o.metadata.name.clone().unwrap_or_default().as_str())
                    .map(|s| (**s).clone())
            }
            edict::sources::manifest::Object::Stack(o) => {
                o.status = before.stacks.get(key.as_str()).map(|s| (**s).clone())
            }
            edict::sources::manifest::Object::System(o) => {
                o.status = before.systems.get(key.as_str()).map(|s| (**s).clone());
                o.metadata.finalizers = Some(vec![edict::operator::wiring::FINALIZER.to_string()]);
            }
            edict::sources::manifest::Object::Policy(o) => {
                o.status = before.policies.get(key.as_str()).map(|s| (**s).clone())
            }
        }
        restarted.apply(Change::Apply(Box::new(located)));
    }
    restarted.adopt_observed_statuses();
    restarted.reconcile(&keys).await;
    assert!(!restarted.has_kube_work(), "no finalizer, ConfigMap or annotation to apply again");
    let after = restarted.statuses();
    assert_eq!(after, before, "same statuses, transition times included");
    let mut restored = Vec::new();
    files(store.path(), &mut restored);
    assert_eq!(restored, stored, "nothing published, nothing appended to the commit log");
    assert!(status_writer::notices(&restarted.written, &after).is_empty(), "no event either");

    let (client, mut handle) = mock();
    let verifier = tokio::spawn(async move {
        let call = handle.next_request().await.map(|(req, _)| format!("{} {}", req.method(), req.uri()));
        assert_eq!(call, None, "nothing may be written");
    });
    assert!(restarted.sync(&client).await.is_empty());
    let failures = status_writer::write(&client, &restarted.written, &after).await;
    drop(client);
    assert!(failures.is_empty(), "{failures:?}");
    verifier.await.expect("verifier");
}

/// A ConfigMap edict wrote and someone deleted comes back: at once when the watch says it is
/// gone, and after a restart when the list of edict's ConfigMaps lacks it. Its own writes
/// coming back through the watch start no round.
#[tokio::test]
async fn a_config_map_deleted_by_hand_is_written_again() {
    let store = tempfile::tempdir().expect("tempdir");
    let mut engine = engine_with(store.path(), acme_systems());
    let keys: Vec<ObjectKey> =
        ["acme-payments/payments-cluster", "acme-shop/storefront-envoy", "acme-data/batch-api"]
            .iter()
            .map(|k| {
                let (ns, n) = k.split_once('/').expect("key");
                ObjectKey::new(ns, n)
            })
            .collect();
    let present: BTreeSet<ObjectKey> = [
        ("acme-payments", "payments-cluster-opa-config"),
        ("acme-shop", "storefront-envoy-opa-config"),
        ("acme-data", "batch-api-opa-config"),
    ]
    .iter()
    .map(|(ns, n)| ObjectKey::new(*ns, *n))
    .collect();
    assert!(engine.apply(Change::OwnedConfigMaps(BTreeSet::new())).is_empty(), "nothing wired yet");
    engine.reconcile(&keys).await;
    let (client, server) = api_server(echo);
    engine.sync(&client).await;
    drop(client);
    let calls = server.await.expect("server");
    assert_eq!(calls.iter().filter(|c| c.path.contains("/configmaps/")).count(), 3, "{calls:#?}");

    // The watch shows edict's own writes: nothing to do.
    let mut rounds = edict::operator::rounds::Rounds::new();
    for kind in Kind::ALL {
        rounds.observe(&Change::Resync(kind, BTreeSet::new()), std::time::Instant::now());
    }
    rounds.observe(&Change::NamespaceResync(BTreeSet::new()), std::time::Instant::now());
    assert!(rounds.synced());
    rounds.started();
    for key in &present {
        let change = Change::OwnedConfigMap(key.clone(), true);
        rounds.observe(&change, std::time::Instant::now());
        assert!(engine.apply(change).is_empty());
    }
    assert!(rounds.due().is_none(), "edict's own ConfigMap writes start no round");
    engine.reconcile(&keys).await;
    assert!(!engine.has_kube_work());

    // Deleted by hand: that System is wired again, and only its ConfigMap is written.
    let payments_map = ObjectKey::new("acme-payments", "payments-cluster-opa-config");
    let gone = Change::OwnedConfigMap(payments_map.clone(), false);
    rounds.observe(&gone, std::time::Instant::now());
    assert!(rounds.due().is_some(), "a deletion starts a round");
    let affected: Vec<ObjectKey> = engine.apply(gone).into_iter().collect();
    assert_eq!(affected, [ObjectKey::new("acme-payments", "payments-cluster")]);
    engine.reconcile(&affected).await;
    assert!(engine.has_kube_work());
    let (client, server) = api_server(echo);
    engine.sync(&client).await;
    drop(client);
    let calls = server.await.expect("server");
    let written: Vec<String> = calls
        .iter()
        .filter(|c| c.path.contains("/configmaps/"))
        .map(|c| format!("{} {}", c.method, c.path))
        .collect();
    assert_eq!(written, ["PATCH /api/v1/namespaces/acme-payments/configmaps/payments-cluster-opa-config"]);

    // Gone while no replica led: the list after a restart lacks it.
    let mut without = present.clone();
    without.remove(&ObjectKey::new("acme-shop", "storefront-envoy-opa-config"));
    let affected: Vec<ObjectKey> = engine.apply(Change::OwnedConfigMaps(without)).into_iter().collect();
    assert_eq!(affected, [ObjectKey::new("acme-shop", "storefront-envoy")]);
    engine.reconcile(&affected).await;
    assert!(engine.has_kube_work());
}

/// The multi-cluster view (`edict systems` / `edict stacks`): after a round, the Tenant's index
/// lists every System with its live revision, publish time and Stacks, and every Stack's item
/// with the Systems bound to it, one query each. A selector change rewrites the Stack's item, a
/// restart with nothing changed writes none, and a deleted Stack's item and bindings go.
#[tokio::test]
async fn the_tenant_index_lists_every_system_and_stack_for_the_multi_cluster_view() {
    let store = tempfile::tempdir().expect("tempdir");
    let mut engine = Engine::new("c1", store.path().to_path_buf());
    let mut keys = BTreeSet::new();
    for located in all_examples() {
        keys.extend(engine.apply(Change::Apply(Box::new(located))));
    }
    engine.reconcile(&keys.into_iter().collect::<Vec<_>>()).await;
    // What another process (the CLI) reads from the embedded index.
    let index = || edict::registry::Registry::embedded(store.path()).index().clone();
    let systems = index().systems("embedded").await.expect("systems");
    let listed: Vec<(&str, Vec<&str>)> = systems
        .iter()
        .map(|s| {
            (
                s.id.as_str(),
                s.live.as_ref().map(|l| l.stacks.iter().map(String::as_str).collect()).unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            // A custom System: the kubernetes Stack does not apply to it.
            ("c1/acme-data/batch-api", vec![]),
            ("c1/acme-payments/payments-cluster", vec!["acme-platform/kubernetes-baseline"]),
            ("c1/acme-shop/storefront-envoy", vec!["acme-platform/edge-network-guard"]),
        ]
    );
    assert!(systems.iter().all(|s| s.live.as_ref().is_some_and(|l| l.published.is_some())), "{systems:#?}");
    let stacks = index().stacks("embedded").await.expect("stacks");
    let listed: Vec<(&str, Option<&str>, Vec<&str>)> = stacks
        .iter()
        .map(|s| {
            let kind = s.record.as_ref().map(|r| r.stack_type.as_str());
            (s.id.as_str(), kind, s.systems.iter().map(String::as_str).collect())
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("c1/acme-platform/edge-network-guard", Some("envoy"), vec!["c1/acme-shop/storefront-envoy"]),
            (
                "c1/acme-platform/kubernetes-baseline",
                Some("kubernetes"),
                vec!["c1/acme-payments/payments-cluster"]
            ),
        ]
    );
    let version = |stacks: &[edict::registry::index::StackListing], id: &str| {
        stacks.iter().find(|s| s.id == id).and_then(|s| s.record.as_ref()).map(|r| r.version)
    };
    let baseline = "c1/acme-platform/kubernetes-baseline";
    assert_eq!(version(&stacks, baseline), Some(1));

    // The baseline Stack now selects nothing: its item is rewritten, the Systems unbound.
    let mut changed = objects("stacks.yaml");
    for located in &mut changed {
        if let manifest::Object::Stack(s) = &mut located.object
            && s.metadata.name.as_deref() == Some("kubernetes-baseline")
        {
            s.spec.selector = serde_json::from_value(json!({"edict.dev/none": ["x"]})).expect("selector");
        }
    }
    let mut keys = BTreeSet::new();
    for located in changed {
        keys.extend(engine.apply(Change::Apply(Box::new(located))));
    }
    engine.reconcile(&keys.into_iter().collect::<Vec<_>>()).await;
    let stacks = index().stacks("embedded").await.expect("stacks");
    assert_eq!(version(&stacks, baseline), Some(2));
    let bound = stacks.iter().find(|s| s.id == baseline).map(|s| s.systems.clone());
    assert_eq!(bound, Some(vec![]), "{stacks:#?}");

    // A restart with nothing changed: the Stacks' items are read, none written.
    let mut restarted = Engine::new("c1", store.path().to_path_buf());
    let mut keys = BTreeSet::new();
    for located in all_examples().into_iter().filter(|l| !matches!(l.object, manifest::Object::Stack(_))) {
        keys.extend(restarted.apply(Change::Apply(Box::new(located))));
    }
    for located in objects("stacks.yaml") {
        let located = match located.object {
            manifest::Object::Stack(mut s) if s.metadata.name.as_deref() == Some("kubernetes-baseline") => {
                s.spec.selector = serde_json::from_value(json!({"edict.dev/none": ["x"]})).expect("selector");
                Located { object: manifest::Object::Stack(s), ..located }
            }
            _ => located,
        };
        keys.extend(restarted.apply(Change::Apply(Box::new(located))));
    }
    restarted.reconcile(&keys.into_iter().collect::<Vec<_>>()).await;
    let after = index().stacks("embedded").await.expect("stacks");
    assert_eq!(version(&after, baseline), Some(2), "nothing rewritten");
    assert_eq!(version(&after, "c1/acme-platform/edge-network-guard"), Some(1));

    // The edge Stack deleted: its item and its bindings go.
    let edge = ObjectKey::new("acme-platform", "edge-network-guard");
    let keys = restarted.apply(Change::Delete(Kind::Stack, edge));
    restarted.reconcile(&keys.into_iter().collect::<Vec<_>>()).await;
    let after = index().stacks("embedded").await.expect("stacks");
    assert!(after.iter().all(|s| s.id != "c1/acme-platform/edge-network-guard"), "{after:#?}");
}
