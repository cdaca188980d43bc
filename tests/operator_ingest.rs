//! OPA reports reaching the operator: each OPA authenticates with its ServiceAccount's token
//! (audience `edict`), checked with a TokenReview on the (mock) API server, and may report only
//! for the Systems that run as it; what it reports shows in the System's status.
#![cfg(feature = "aws")]

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::kube::{Call, api_server};
use edict::ingest::{Denied, Ingest, IngestError, Limits, TenantStores};
use edict::model::ObjectKey;
use edict::operator::Engine;
use edict::operator::reports::{ReporterMap, TokenReviews};
use edict::operator::watch::Change;
use edict::sources::manifest;

const PAYMENTS: &str = "acme-payments/payments-cluster";

/// The API server's TokenReview answers: `opa-token` is the payments System's OPA (it runs as
/// ServiceAccount `opa`), `web-token` another ServiceAccount, `old-token` expired.
fn token_reviews(call: &Call) -> (u16, serde_json::Value) {
    assert_eq!(call.path, "/apis/authentication.k8s.io/v1/tokenreviews", "only TokenReviews: {call:?}");
    assert_eq!(call.body["spec"]["audiences"], serde_json::json!(["edict"]), "audience edict");
    let status = match call.body["spec"]["token"].as_str() {
        Some("opa-token") => serde_json::json!({"authenticated": true, "audiences": ["edict"],
            "user": {"username": "system:serviceaccount:acme-payments:opa"}}),
        Some("web-token") => serde_json::json!({"authenticated": true, "audiences": ["edict"],
            "user": {"username": "system:serviceaccount:acme-payments:web"}}),
        _ => serde_json::json!({"authenticated": false, "error": "token has expired"}),
    };
    let mut review = call.body.clone();
    review["status"] = status;
    (201, review)
}

fn report(revision: &str) -> String {
    let captured = std::fs::read_to_string(common::root().join("tests/fixtures/opa-wire/status-active.json"))
        .expect("fixture");
    captured
        .replace("ad04ca06ddc608fa1ec8768d110ccb81c8cd81c4f060aa19631a0c885aa4c8b1", revision)
        .replace("\"system_id\":\"local/", "\"system_id\":\"c1/")
}

#[tokio::test]
async fn an_opa_reports_for_its_own_system_only_and_its_state_shows_in_status() {
    let store = tempfile::tempdir().expect("tempdir");
    let (client, server) = api_server(token_reviews);
    let reporters = ReporterMap::default();
    let ingest = Arc::new(Ingest::new(
        edict::ingest::Sink::of(&edict::registry::Registry::embedded(store.path())),
        TokenReviews::new(client.clone(), reporters.clone()),
        Limits::default(),
        Duration::from_secs(600),
    ));
    let mut engine = Engine::new("c1", store.path().to_path_buf()).with_reports(
        ingest.clone(),
        reporters.clone(),
        TenantStores::default(),
    );
    let mut keys = std::collections::BTreeSet::new();
    for f in ["tenant.yaml", "stacks.yaml", "systems.yaml"] {
        let text = std::fs::read_to_string(common::root().join("examples/acme").join(f)).expect("example");
        for mut located in manifest::parse("", &text).objects {
            located.origin = Default::default();
            keys.extend(engine.apply(Change::Apply(Box::new(located))));
        }
    }
    let keys: Vec<ObjectKey> = keys.into_iter().collect();
    engine.reconcile(&keys).await;
    let now = SystemTime::now();
    assert!(engine.refresh_fleet(now), "every System gets a fleet summary");
    assert!(reporters.read().expect("map").contains_key("c1/acme-payments/payments-cluster"));
    let before = engine.statuses();
    let payments = &before.systems[PAYMENTS];
    let live = payments.conditions.iter().find(|c| c.type_ == "Live").expect("a Live condition");
    assert_eq!((live.status, live.reason.as_str()), (edict::api::ConditionStatus::Unknown, "NoOpas"));
    let revision = payments.revision.clone().expect("published");

    // The System's own OPA: accepted; twice, but reviewed once (cached for the token's life).
    let body = report(&revision);
    for _ in 0..2 {
        ingest.record_status(body.as_bytes(), None, Some("opa-token"), now).await.expect("accepted");
    }
    assert!(engine.refresh_fleet(now));
    assert!(!engine.refresh_fleet(now), "nothing new: no status to write");
    let after = engine.statuses();
    let payments = &after.systems[PAYMENTS];
    assert_eq!(payments.opas.as_ref().map(|o| o.live.as_str()), Some("1/1"));
    let live = payments.conditions.iter().find(|c| c.type_ == "Live").expect("Live");
    assert_eq!((live.status, live.reason.as_str()), (edict::api::ConditionStatus::True, "Live"), "{live:?}");

    // Another ServiceAccount of the namespace, an expired token, no token, another System.
    let refused = |r: Result<_, IngestError>| match r {
        Err(IngestError::Denied(d)) => d,
        other => panic!("expected a refusal, got {other:?}"),
    };
    let web = refused(ingest.record_status(body.as_bytes(), None, Some("web-token"), now).await);
    assert!(
        matches!(&web, Denied::Forbidden(m) if m.contains("acme-payments:web") && m.contains("acme-payments:opa")),
        "{web:?}"
    );
    let old = refused(ingest.record_status(body.as_bytes(), None, Some("old-token"), now).await);
    assert!(matches!(&old, Denied::Unauthenticated(m) if m.contains("expired")), "{old:?}");
    let none = refused(ingest.record_status(body.as_bytes(), None, None, now).await);
    assert!(matches!(none, Denied::Unauthenticated(_)));
    let elsewhere = body.replace("c1/acme-payments/payments-cluster", "c1/acme-payments/nope");
    let nope = refused(ingest.record_status(elsewhere.as_bytes(), None, Some("opa-token"), now).await);
    assert!(matches!(nope, Denied::Forbidden(_)));
    assert_eq!(ingest.counters().rejected_requests, 4);

    drop(client);
    drop(engine);
    drop(ingest);
    let calls = server.await.expect("server");
    assert_eq!(calls.len(), 3, "one review per token: opa, web, old (opa's was cached): {calls:#?}");
}

/// After a restart, a System's status keeps what it said of its OPAs until they have had time
/// to report again: a restart does not flip every System to "no OPA reports".
#[tokio::test]
async fn a_restart_keeps_what_statuses_said_of_their_opas_until_they_report_again() {
    let store = tempfile::tempdir().expect("tempdir");
    let (client, _server) = api_server(token_reviews);
    let fresh = || {
        let reporters = ReporterMap::default();
        let ingest = Arc::new(Ingest::new(
            edict::ingest::Sink::of(&edict::registry::Registry::embedded(store.path())),
            TokenReviews::new(client.clone(), reporters.clone()),
            Limits::default(),
            Duration::from_secs(600),
        ));
        (
            Engine::new("c1", store.path().to_path_buf()).with_reports(
                ingest.clone(),
                reporters,
                TenantStores::default(),
            ),
            ingest,
        )
    };
    let load = |engine: &mut Engine, statuses: Option<&edict::engine::status::Statuses>| {
        let mut keys = std::collections::BTreeSet::new();
        for f in ["tenant.yaml", "stacks.yaml", "systems.yaml"] {
            let text =
                std::fs::read_to_string(common::root().join("examples/acme").join(f)).expect("example");
            for mut located in manifest::parse("", &text).objects {
                located.origin = Default::default();
                if let (Some(s), manifest::Object::System(o)) = (statuses, &mut located.object) {
                    o.status = s.systems.get(located_key(o).as_str()).map(|s| (**s).clone());
                }
                keys.extend(engine.apply(Change::Apply(Box::new(located))));
            }
        }
        keys.into_iter().collect::<Vec<ObjectKey>>()
    };
    let (mut first, ingest) = fresh();
    let keys = load(&mut first, None);
    first.reconcile(&keys).await;
    let now = SystemTime::now();
    first.refresh_fleet(now);
    let revision = first.statuses().systems[PAYMENTS].revision.clone().expect("published");
    ingest.record_status(report(&revision).as_bytes(), None, Some("opa-token"), now).await.expect("accepted");
    first.refresh_fleet(now);
    let before = first.statuses();
    assert_eq!(before.systems[PAYMENTS].opas.as_ref().map(|o| o.live.as_str()), Some("1/1"));

    let (mut restarted, _) = fresh();
    let keys = load(&mut restarted, Some(&before));
    restarted.adopt_observed_statuses();
    restarted.reconcile(&keys).await;
    let later = now + Duration::from_secs(5);
    restarted.refresh_fleet(later);
    let after = restarted.statuses();
    assert_eq!(
        after.systems[PAYMENTS].opas, before.systems[PAYMENTS].opas,
        "kept while the OPAs report again"
    );
    // Once the OPAs had three reporting intervals and this one did not report: it aged out.
    assert!(restarted.refresh_fleet(now + Duration::from_secs(120)));
    let aged = restarted.statuses();
    assert_eq!(aged.systems[PAYMENTS].opas.as_ref().map(|o| o.live.as_str()), Some("0/0"));
}

fn located_key(o: &edict::api::System) -> String {
    format!(
        "{}/{}",
        o.metadata.namespace.clone().unwrap_or_default(),
        o.metadata.name.clone().unwrap_or_default()
    )
}
