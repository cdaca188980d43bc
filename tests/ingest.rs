//! `POST /status` and `POST /logs` on edict's server, fed the requests a real OPA 1.9 sent
//! (`tests/fixtures/opa-wire/`), with a directory store in a temporary directory.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use edict::api::ConditionStatus;
use edict::ingest::decisions::read_ndjson_gz;
use edict::ingest::{Denied, Ingest, Limits, ServedSystems, Sink, SystemKey, query};
use edict::registry::store::{DirStore, ObjectMeta, ObjectStore, Precondition, StoreError, StoredObject};
use edict::server::{ServerState, router};
use serde_json::{Value, json};
use tower::ServiceExt;

const OLD_REVISION: &str = "ad04ca06ddc608fa1ec8768d110ccb81c8cd81c4f060aa19631a0c885aa4c8b1";
const NEW_REVISION: &str = "95220d66ab12aa0d1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f607182";
const DECISIONS: &str = "decisions/acme/local/acme-payments/payments-cluster/";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/opa-wire/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).expect("gzip");
    gz.finish().expect("gzip")
}

fn payments() -> SystemKey {
    SystemKey::new("acme", "local", "acme-payments", "payments-cluster")
}

/// A directory store that fails every write while `down` is set, as S3 does in an outage.
#[derive(Debug)]
struct FlakyStore {
    inner: DirStore,
    down: AtomicBool,
}

#[async_trait]
impl ObjectStore for FlakyStore {
    async fn put(
        &self,
        key: &str,
        bytes: &[u8],
        precondition: Precondition,
    ) -> Result<ObjectMeta, StoreError> {
        if self.down.load(Ordering::SeqCst) {
            let message = "connection refused".into();
            return Err(StoreError::Service {
                op: "PutObject",
                key: key.into(),
                code: "Unreachable".into(),
                message,
            });
        }
        self.inner.put(key, bytes, precondition).await
    }
    async fn get(&self, key: &str) -> Result<Option<StoredObject>, StoreError> {
        self.inner.get(key).await
    }
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        self.inner.head(key).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list(prefix).await
    }
}

/// edict's router with ingestion into a store in a temporary directory.
struct Server {
    _dir: tempfile::TempDir,
    store: Arc<FlakyStore>,
    sink: Sink,
    ingest: Arc<Ingest>,
    app: axum::Router,
}

impl Server {
    fn new() -> Self {
        Self::with(ServedSystems::new([payments()]), Limits::default())
    }

    fn with(reporters: impl edict::ingest::Reporters + 'static, limits: Limits) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(FlakyStore { inner: DirStore::new(dir.path()), down: AtomicBool::new(false) });
        let sink = Sink::in_memory(store.clone());
        let ingest = Arc::new(Ingest::new(sink.clone(), reporters, limits, Duration::from_secs(600)));
        let state = ServerState {
            store: store.clone(),
            statuses: Default::default(),
            ingest: Some(ingest.clone()),
            changes: Default::default(),
        };
        Server { _dir: dir, store, sink, ingest, app: router(state) }
    }

    /// POST `body` to `path` with the headers OPA sent in the capture `headers_fixture`
    /// (`Host` and `Content-Length` aside), overridden by `extra`.
    async fn post(&self, path: &str, headers_fixture: &str, body: Vec<u8>, extra: &[(&str, &str)]) -> Answer {
        let captured: Value = serde_json::from_slice(&fixture(headers_fixture)).expect("headers");
        let mut request = Request::post(path);
        for (name, value) in captured["headers"].as_object().expect("headers object") {
            if !["Host", "Content-Length"].contains(&name.as_str()) && !extra.iter().any(|(n, _)| n == name) {
                request = request.header(name, value.as_str().expect("header value"));
            }
        }
        for (name, value) in extra.iter().filter(|(_, v)| !v.is_empty()) {
            request = request.header(*name, *value);
        }
        let response = self.app.clone().oneshot(request.body(Body::from(body)).expect("request")).await;
        Answer::read(response.expect("infallible")).await
    }

    async fn status(&self, fixture_name: &str) -> Answer {
        self.post("/status", "status-request-headers.json", fixture(fixture_name), &[]).await
    }

    async fn logs(&self, body: Vec<u8>, extra: &[(&str, &str)]) -> Answer {
        self.post("/logs", "decision-logs-request-headers.json", body, extra).await
    }

    async fn stored(&self) -> Vec<String> {
        self.store.list("decisions/").await.expect("list")
    }
}

/// A response's status, `Retry-After` and body text.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    retry_after: Option<String>,
    text: String,
}

impl Answer {
    async fn read(response: Response<Body>) -> Self {
        let status = response.status();
        let retry_after =
            response.headers().get("retry-after").map(|v| v.to_str().unwrap_or_default().to_string());
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body");
        Answer { status, retry_after, text: String::from_utf8_lossy(&bytes).into_owned() }
    }
}

#[tokio::test]
async fn status_reports_as_opa_sends_them_show_which_revision_the_opa_runs_and_why_it_refused_the_new_one() {
    let server = Server::new();
    for name in ["status-starting.json", "status-active.json"] {
        let answer = server.status(name).await;
        assert_eq!(answer.status, StatusCode::OK, "{name}: {answer:?}");
    }
    let now = SystemTime::now();
    let interval = Duration::from_secs(10);
    let live = server.ingest.summary(&payments(), Some(OLD_REVISION), now, interval).live_condition();
    assert_eq!((live.status, live.reason.as_str()), (ConditionStatus::True, "Live"), "{live:?}");

    // edict publishes a revision OPA's compiler refuses; OPA keeps the old one and says why.
    assert_eq!(server.status("status-activation-failed.json").await.status, StatusCode::OK);
    let summary = server.ingest.summary(&payments(), Some(NEW_REVISION), now, interval);
    assert_eq!((summary.reporting, summary.on_live, summary.failed), (1, 0, 1));
    let live = summary.live_condition();
    assert_eq!((live.status, live.reason.as_str()), (ConditionStatus::False, "Degraded"));
    assert_eq!(
        live.message,
        "0/1 OPA runs the live revision 95220d66ab12; 1 failed: rego_type_error: count: invalid argument(s) \
         (/stacks/kubernetes_baseline/superusers/superusers.rego:8:2)"
    );
    assert_eq!(server.ingest.counters().status_reports, 3);
    assert!(server.stored().await.is_empty(), "status is not stored as objects");
}

#[tokio::test]
async fn a_gzip_decision_batch_is_acknowledged_once_stored_as_ndjson_and_a_resent_batch_is_stored_once() {
    let server = Server::new();
    let plain = fixture("decision-logs-batch.json");
    let answer = server.logs(gzip(&plain), &[]).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");

    let keys = server.stored().await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0].starts_with(&format!("{DECISIONS}dt=2026-11-30/hour=17/")), "{}", keys[0]);
    let object = server.store.get(&keys[0]).await.expect("get").expect("stored");
    let events: Vec<Value> = serde_json::from_slice(&plain).expect("fixture");
    assert_eq!(read_ndjson_gz(&object.bytes).expect("gzip NDJSON"), events);

    // OPA did not hear the answer and sends the same batch again: 200, nothing new.
    assert_eq!(server.logs(gzip(&plain), &[]).await.status, StatusCode::OK);
    assert_eq!(server.stored().await, keys);
    let counters = server.ingest.counters();
    assert_eq!((counters.accepted_events, counters.stored_events, counters.duplicate_events), (4, 2, 2));
    assert_eq!((counters.remasked_events, counters.rejected_requests), (0, 0));

    // Indexed once, counted once: the per-minute counts are the two decisions OPA made.
    let since = SystemTime::UNIX_EPOCH;
    let read = query::events(&server.sink, &payments(), Some(since)).await.expect("read back");
    assert_eq!(read, events);
    let minutes = query::minutes(&server.sink, &payments(), since).await.expect("minutes");
    let (total, allowed, denied) =
        minutes.values().fold((0, 0, 0), |(t, a, d), m| (t + m.total, a + m.allowed, d + m.denied));
    assert_eq!((total, allowed, denied), (2, 1, 1), "{minutes:?}");
    assert!(minutes.keys().all(|m| m.starts_with("2026-11-30T17:")), "{minutes:?}");
}

#[tokio::test]
async fn when_the_store_fails_opa_is_told_to_retry_and_the_resent_batch_is_stored_once() {
    let server = Server::new();
    let body = gzip(&fixture("decision-logs-batch.json"));
    server.store.down.store(true, Ordering::SeqCst);
    let answer = server.logs(body.clone(), &[]).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{answer:?}");
    assert_eq!(answer.retry_after.as_deref(), Some("5"));
    assert!(answer.text.contains("send again later"), "{}", answer.text);
    assert!(server.stored().await.is_empty());

    server.store.down.store(false, Ordering::SeqCst);
    assert_eq!(server.logs(body.clone(), &[]).await.status, StatusCode::OK);
    assert_eq!(server.logs(body, &[]).await.status, StatusCode::OK);
    assert_eq!(server.stored().await.len(), 1);
    assert_eq!(server.ingest.counters().stored_events, 2);
}

#[tokio::test]
async fn a_secret_event_opa_did_not_mask_is_stored_without_its_data() {
    let server = Server::new();
    let batch = json!([{
        "labels": {"id": "o1", "system_id": "local/acme-payments/payments-cluster", "tenant": "acme"},
        "decision_id": "d-secret", "timestamp": "2026-11-30T17:05:00Z", "path": "main/main",
        "input": {"request": {"kind": {"kind": "Secret"}, "operation": "CREATE",
            "object": {"metadata": {"name": "db"}, "data": {"password": "aHVudGVyMg=="}}}},
        "result": {"response": {"allowed": true}},
    }]);
    let answer = server.logs(gzip(batch.to_string().as_bytes()), &[]).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let keys = server.stored().await;
    let object = server.store.get(&keys[0]).await.expect("get").expect("stored");
    let stored = read_ndjson_gz(&object.bytes).expect("ndjson");
    assert_eq!(stored[0]["input"]["request"]["object"], json!({"metadata": {"name": "db"}}));
    assert_eq!(stored[0]["erased"], json!(["/input/request/object/data"]));
    assert!(!String::from_utf8_lossy(&object.bytes).contains("aHVudGVyMg"));
    assert_eq!(server.ingest.counters().remasked_events, 1);
}

#[tokio::test]
async fn bad_input_gets_a_clear_400_stores_nothing_and_the_server_keeps_serving() {
    let server = Server::new();
    let plain = fixture("decision-logs-batch.json");
    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("not gzip", plain.clone(), "not gzip"),
        ("not JSON", gzip(b"<html>"), "not JSON"),
        ("no decision_id", gzip(br#"[{"timestamp":"2026-11-30T17:01:40Z"}]"#), "event 0: has no decision_id"),
        ("not an array", gzip(b"{}"), "not a JSON array"),
    ];
    for (what, body, says) in cases {
        let answer = server.logs(body, &[]).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{what}: {answer:?}");
        assert!(answer.text.contains(says), "{what}: {}", answer.text);
    }
    let no_labels =
        server.post("/status", "status-request-headers.json", br#"{"bundles":{}}"#.to_vec(), &[]).await;
    assert_eq!(no_labels.status, StatusCode::BAD_REQUEST);
    assert!(no_labels.text.contains("no labels"), "{}", no_labels.text);
    let not_json = server.post("/status", "status-request-headers.json", b"oops".to_vec(), &[]).await;
    assert_eq!(not_json.status, StatusCode::BAD_REQUEST);
    let brotli = server.logs(plain.clone(), &[("Content-Encoding", "br")]).await;
    assert_eq!(brotli.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    assert!(server.stored().await.is_empty());
    assert_eq!(server.ingest.counters().rejected_requests, 7);
    assert_eq!(server.logs(gzip(&plain), &[]).await.status, StatusCode::OK, "still serving");
    assert_eq!(
        server.logs(plain, &[("Content-Encoding", "")]).await.status,
        StatusCode::OK,
        "plain JSON too"
    );
}

#[tokio::test]
async fn reports_for_a_system_edict_does_not_serve_are_forbidden() {
    let server = Server::new();
    let other = fixture("decision-logs-batch.json");
    let other = String::from_utf8(other).expect("utf-8").replace("payments-cluster\"", "nope\"");
    let answer = server.logs(gzip(other.as_bytes()), &[]).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{answer:?}");
    assert!(answer.text.contains("local/acme-payments/nope"), "{}", answer.text);
    let status = String::from_utf8(fixture("status-active.json")).expect("utf-8").replacen(
        r#""system_id":"local/acme-payments/payments-cluster""#,
        r#""system_id":"local/acme-payments/nope""#,
        1,
    );
    assert!(status.contains("acme-payments/nope"), "the fixture names the System in labels.system_id");
    let answer = server.post("/status", "status-request-headers.json", status.into_bytes(), &[]).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{answer:?}");
    assert!(server.stored().await.is_empty());
}

#[tokio::test]
async fn a_reporter_that_needs_a_token_answers_401_without_one() {
    let needs_token = |id: &str, bearer: Option<&str>| match bearer {
        Some("test-token-123") if id == payments().system_id() => Ok(payments()),
        Some(_) => Err(Denied::Forbidden(format!("this token may not report for {id}"))),
        None => Err(Denied::Unauthenticated("no bearer token".into())),
    };
    let server = Server::with(needs_token, Limits::default());
    assert_eq!(server.status("status-active.json").await.status, StatusCode::OK, "the captured token");
    let body = fixture("status-active.json");
    let anonymous =
        server.post("/status", "status-request-headers.json", body.clone(), &[("Authorization", "")]);
    let anonymous = anonymous.await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{anonymous:?}");
    let wrong =
        server.post("/status", "status-request-headers.json", body, &[("Authorization", "Bearer other")]);
    assert_eq!(wrong.await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_with_413() {
    let server = Server::new();
    let huge = vec![b'['; 50 << 20];
    let answer = server.logs(huge, &[("Content-Encoding", "")]).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", answer.text);

    let small = Server::with(
        ServedSystems::new([payments()]),
        Limits { max_body: 16 << 10, max_decoded: 64 << 10, ..Limits::default() },
    );
    assert_eq!(
        small.status("status-active.json").await.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "a 59 KB report"
    );
    let bomb = gzip(&vec![b' '; 1 << 20]);
    assert_eq!(small.logs(bomb, &[]).await.status, StatusCode::PAYLOAD_TOO_LARGE, "1 MiB once decompressed");
    assert_eq!(small.ingest.counters().rejected_requests, 2);
    assert!(small.stored().await.is_empty());
}

#[tokio::test]
async fn opa_partition_paths_are_accepted_and_a_server_without_ingestion_answers_404() {
    let server = Server::new();
    assert_eq!(
        server
            .post("/status/", "status-request-headers.json", fixture("status-active.json"), &[])
            .await
            .status,
        StatusCode::OK
    );
    let batch = gzip(&fixture("decision-logs-batch.json"));
    assert_eq!(
        server.post("/logs/edict", "decision-logs-request-headers.json", batch.clone(), &[]).await.status,
        StatusCode::OK
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let state = ServerState {
        store: Arc::new(DirStore::new(dir.path())),
        statuses: Default::default(),
        ingest: None,
        changes: Default::default(),
    };
    let request =
        Request::post("/logs").header("Content-Encoding", "gzip").body(Body::from(batch)).expect("request");
    let answer = router(state).oneshot(request).await.expect("infallible");
    assert_eq!(answer.status(), StatusCode::NOT_FOUND);
}

/// Backpressure: when as many batches are being stored as the limit allows, one more is
/// answered 429 with `Retry-After` (OPA keeps it and backs off), counted, and nothing is stored.
#[tokio::test]
async fn a_batch_beyond_the_batches_in_flight_gets_429_and_is_kept_by_opa() {
    let server =
        Server::with(ServedSystems::new([payments()]), Limits { max_in_flight: 0, ..Limits::default() });
    let batch = gzip(&fixture("decision-logs-batch.json"));
    let answer = server.post("/logs", "decision-logs-request-headers.json", batch, &[]).await;
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS, "{}", answer.text);
    assert_eq!(answer.retry_after.as_deref(), Some("1"));
    let counters = server.ingest.counters();
    assert_eq!((counters.busy_requests, counters.stored_events), (1, 0));
}
