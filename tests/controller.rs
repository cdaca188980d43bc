//! The operator without a cluster: the engine fed by watch changes (pure), and the calls it
//! makes to the API server, checked against a mock API server (the ApiServerVerifier pattern).
#![cfg(feature = "aws")]

mod common;

use std::collections::BTreeSet;

use edict::controller::watch::Change;
use edict::controller::{Engine, leader, status_writer};
use edict::index::ObjectKey;
use edict::manifest::{self, Located};
use http::{Method, Request, Response};
use kube::client::Body;

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
    let gone: Vec<ObjectKey> = engine.apply(Change::Resync("System", present)).into_iter().collect();
    assert_eq!(gone, vec![ObjectKey::new("acme-data", "batch-api")]);
}

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn mock() -> (kube::Client, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(service, "default"), handle)
}

async fn body(req: Request<Body>) -> serde_json::Value {
    let bytes = req.into_body().collect_bytes().await.expect("body");
    serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null)
}

fn respond(send: tower_test::mock::SendResponse<Response<Body>>, code: u16, json: serde_json::Value) {
    send.send_response(
        Response::builder().status(code).body(Body::from(json.to_string().into_bytes())).expect("response"),
    );
}

#[tokio::test]
async fn statuses_are_applied_server_side_and_only_when_changed() {
    let store = tempfile::tempdir().expect("tempdir");
    let mut engine = Engine::new("c1", store.path().to_path_buf());
    for located in all_examples() {
        engine.apply(Change::Apply(Box::new(located)));
    }
    let keys = vec![ObjectKey::new("acme-shop", "storefront-envoy")];
    engine.reconcile(&keys).await;
    let new = engine.statuses();
    let mut old = new.clone();
    // Only one System differs from what was written before.
    old.systems.get_mut("acme-shop/storefront-envoy").expect("system").stack_count = 99;

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
