//! The HTTP side of `edict run --local`: OPA's bundle service protocol over the object store,
//! the status of every object, and health.
//!
//! `GET /bundles/...` answers with the object's bytes and a strong `ETag`; a request whose
//! `If-None-Match` names the current tag gets `304 Not Modified`, as OPA's bundle plugin expects.

use std::sync::{Arc, RwLock};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::status::Statuses;
use crate::store::ObjectStore;

/// What the handlers share.
#[derive(Clone, Debug)]
pub struct ServerState {
    /// Where bundles are read from.
    pub store: Arc<dyn ObjectStore>,
    /// The latest status of every object.
    pub statuses: Arc<RwLock<Arc<Statuses>>>,
}

/// The router: `/bundles/*`, `/v1/status`, `/healthz`, `/readyz`.
pub fn router(state: ServerState) -> Router {
    Router::new()
        .route("/bundles/{*path}", get(bundle))
        .route("/v1/status", get(status))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .with_state(state)
}

async fn bundle(State(state): State<ServerState>, Path(path): Path<String>, headers: HeaderMap) -> Response {
    let key = format!("bundles/{path}");
    match state.store.get(&key).await {
        Ok(Some(object)) => {
            let etag = format!("\"{}\"", object.meta.etag);
            let matches = headers
                .get(header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
            let tag = HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"\""));
            if matches {
                return (StatusCode::NOT_MODIFIED, [(header::ETAG, tag)]).into_response();
            }
            (
                StatusCode::OK,
                [(header::ETAG, tag), (header::CONTENT_TYPE, HeaderValue::from_static("application/gzip"))],
                Body::from(object.bytes),
            )
                .into_response()
        }
        Ok(None) => (StatusCode::NOT_FOUND, format!("no bundle at {key}\n")).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}

async fn status(State(state): State<ServerState>) -> Response {
    let body = match state.statuses.read() {
        Ok(s) => serde_json::to_vec_pretty(&**s).unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}
