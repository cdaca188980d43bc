//! The HTTP side of `edict run --local`: OPA's bundle service protocol over the object store,
//! the status of every object, and health.
//!
//! `GET /bundles/...` answers with the object's bytes and a strong `ETag`; a request whose
//! `If-None-Match` names the current tag gets `304 Not Modified`, as OPA's bundle plugin expects.
//!
//! `POST /status` and `POST /logs` (also with OPA's optional `/<partition>` suffix) take OPA's
//! Status API reports and Decision Log API batches when the server has an [`Ingest`]. OPA counts
//! only `200 OK` as delivered; any other answer makes it keep a decision batch and send it again,
//! which is what `503` (with `Retry-After`) asks for when the store fails.

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::engine::status::Statuses;
use crate::ingest::decisions::DecodeError;
use crate::ingest::{Denied, Ingest, IngestError, Limits};
use crate::registry::store::{KeyChanges, ObjectStore};

/// Seconds OPA is asked to wait before sending a batch again when the store failed.
const RETRY_AFTER_SECONDS: &str = "5";

/// What the handlers share.
#[derive(Clone, Debug)]
pub struct ServerState {
    /// Where bundles are read from.
    pub store: Arc<dyn ObjectStore>,
    /// The latest status of every object.
    pub statuses: Arc<RwLock<Arc<Statuses>>>,
    /// Where OPA status reports and decision logs go; `None` answers them `404`.
    pub ingest: Option<Arc<Ingest>>,
    /// Which bundles changed, for requests that long-poll.
    pub changes: Arc<KeyChanges>,
}

/// The router: `/bundles/*`, `/v1/status`, `/status`, `/logs`, `/healthz`, `/readyz`.
pub fn router(state: ServerState) -> Router {
    let max_body = state.ingest.as_ref().map_or(Limits::default(), |i| i.limits()).max_body;
    let limit = || DefaultBodyLimit::max(max_body);
    Router::new()
        .route("/bundles/{*path}", get(bundle))
        .route("/v1/status", get(status))
        .route("/status", post(status_report).layer(limit()))
        .route("/status/", post(status_report).layer(limit()))
        .route("/status/{partition}", post(status_report).layer(limit()))
        .route("/logs", post(decision_logs).layer(limit()))
        .route("/logs/", post(decision_logs).layer(limit()))
        .route("/logs/{partition}", post(decision_logs).layer(limit()))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .with_state(state)
}

/// The longest a bundle request may wait for a change (OPA's `long_polling_timeout_seconds`
/// is capped to this).
pub const MAX_WAIT: Duration = Duration::from_secs(300);

/// The content type that tells OPA this server long-polls (OPA then keeps sending
/// `Prefer: …;wait=N`; with `application/gzip` it falls back to plain polling).
const LONG_POLLING: &str = "application/vnd.openpolicyagent.bundles";

/// `GET /bundles/…`: the bundle with a strong `ETag`; `304` when `If-None-Match` names it.
/// With OPA's long polling (`Prefer: modes=snapshot,delta;wait=N`), a request whose tag is
/// current waits until the bundle changes (answered at once) or about N seconds pass (`304`).
async fn bundle(State(state): State<ServerState>, Path(path): Path<String>, headers: HeaderMap) -> Response {
    let key = format!("bundles/{path}");
    let seen = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).map(str::to_string);
    let wait = headers.get("prefer").and_then(|v| v.to_str().ok()).and_then(prefer_wait);
    // Answer a little before OPA's own deadline (its request times out at `wait`).
    let deadline = wait
        .map(|w| tokio::time::Instant::now() + w.min(MAX_WAIT).saturating_sub(Duration::from_millis(500)));
    let mut changed = wait.map(|_| state.changes.watch(&key));
    loop {
        let object = match state.store.get(&key).await {
            Ok(Some(object)) => object,
            Ok(None) => return (StatusCode::NOT_FOUND, format!("no bundle at {key}\n")).into_response(),
            Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
        };
        let etag = format!("\"{}\"", object.meta.etag);
        let tag = HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"\""));
        let current =
            seen.as_deref().is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
        if !current {
            let kind = if wait.is_some() { LONG_POLLING } else { "application/gzip" };
            return (
                StatusCode::OK,
                [(header::ETAG, tag), (header::CONTENT_TYPE, HeaderValue::from_static(kind))],
                Body::from(object.bytes),
            )
                .into_response();
        }
        let (Some(rx), Some(deadline)) = (changed.as_mut(), deadline) else {
            return (StatusCode::NOT_MODIFIED, [(header::ETAG, tag)]).into_response();
        };
        tokio::select! {
            woke = rx.changed() => if woke.is_err() {
                return (StatusCode::NOT_MODIFIED, [(header::ETAG, tag)]).into_response();
            },
            _ = tokio::time::sleep_until(deadline) => {
                return (StatusCode::NOT_MODIFIED, [(header::ETAG, tag)]).into_response();
            }
        }
    }
}

/// The `wait=N` (seconds) of a `Prefer` header (`modes=snapshot,delta;wait=10`), if any.
fn prefer_wait(prefer: &str) -> Option<Duration> {
    prefer
        .split([';', ','])
        .filter_map(|p| p.trim().strip_prefix("wait="))
        .find_map(|n| n.trim().parse::<u64>().ok())
        .filter(|n| *n > 0)
        .map(Duration::from_secs)
}

async fn status(State(state): State<ServerState>) -> Response {
    let body = match state.statuses.read() {
        Ok(s) => serde_json::to_vec_pretty(&**s).unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}

/// `POST /status`: record an OPA's status report in the fleet.
async fn status_report(State(state): State<ServerState>, headers: HeaderMap, body: BodyResult) -> Response {
    let (ingest, body) = match received(&state, body) {
        Ok(taken) => taken,
        Err(answer) => return *answer,
    };
    match ingest.record_status(&body, content_encoding(&headers), bearer(&headers), SystemTime::now()).await {
        Ok(_) => StatusCode::OK.into_response(),
        Err(e) => refused(e),
    }
}

/// `POST /logs`: store a decision batch; `200 OK` only once the store has it.
async fn decision_logs(State(state): State<ServerState>, headers: HeaderMap, body: BodyResult) -> Response {
    let (ingest, body) = match received(&state, body) {
        Ok(taken) => taken,
        Err(answer) => return *answer,
    };
    match ingest.store_decisions(&body, content_encoding(&headers), bearer(&headers)).await {
        Ok(_) => StatusCode::OK.into_response(),
        Err(e) => refused(e),
    }
}

type BodyResult = Result<Bytes, BytesRejection>;

/// The ingestion and the body of a report this replica takes, or the answer when it does not
/// (no ingestion here, a standby, a body over the limit or cut off).
fn received(state: &ServerState, body: BodyResult) -> Result<(&Arc<Ingest>, Bytes), Box<Response>> {
    let Some(ingest) = &state.ingest else { return Err(Box::new(not_ingesting())) };
    if !ingest.accepting() {
        return Err(Box::new(elsewhere()));
    }
    match body {
        Ok(body) => Ok((ingest, body)),
        Err(rejection) => Err(Box::new(unread(ingest, rejection))),
    }
}

/// A standby: the leader takes reports. `503` with `Retry-After` makes OPA send again, and
/// `Connection: close` makes it open a new connection, which the Service may route to the
/// leader (a kept-alive one would reach this replica again).
fn elsewhere() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [
            (header::RETRY_AFTER, HeaderValue::from_static("1")),
            (header::CONNECTION, HeaderValue::from_static("close")),
        ],
        "this replica is a standby: the leader takes OPA reports\n",
    )
        .into_response()
}

fn not_ingesting() -> Response {
    (StatusCode::NOT_FOUND, "this edict server does not ingest OPA status or decision logs\n").into_response()
}

/// A body that could not be read: over the limit (413) or cut off.
fn unread(ingest: &Ingest, rejection: BytesRejection) -> Response {
    ingest.count_rejected();
    (rejection.status(), format!("{}\n", rejection.body_text())).into_response()
}

fn content_encoding(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok())
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

fn refused(error: IngestError) -> Response {
    let code = match &error {
        IngestError::Decisions(DecodeError::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
        IngestError::Decisions(DecodeError::UnsupportedEncoding(_)) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        IngestError::Decisions(_) | IngestError::Status(_) => StatusCode::BAD_REQUEST,
        IngestError::Denied(Denied::Unauthenticated(_)) => {
            let challenge = [(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))];
            return (StatusCode::UNAUTHORIZED, challenge, format!("{error}\n")).into_response();
        }
        IngestError::Denied(Denied::Forbidden(_)) => StatusCode::FORBIDDEN,
        IngestError::Busy(_) => {
            let retry = [(header::RETRY_AFTER, HeaderValue::from_static("1"))];
            return (StatusCode::TOO_MANY_REQUESTS, retry, format!("{error}\n")).into_response();
        }
        IngestError::Store(_) | IngestError::Index(_) => {
            tracing::warn!(%error, "decision batch not stored; OPA will send it again");
            let retry = [(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS))];
            return (StatusCode::SERVICE_UNAVAILABLE, retry, format!("{error}\n")).into_response();
        }
    };
    (code, format!("{error}\n")).into_response()
}
