//! A mock Kubernetes API server (the ApiServerVerifier pattern): requests are recorded and
//! answered by a function, so a test states the calls a reconcile must make.

use http::{Method, Request, Response};
use kube::client::Body;

pub type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

pub fn mock() -> (kube::Client, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(service, "default"), handle)
}

pub async fn body(req: Request<Body>) -> serde_json::Value {
    let bytes = req.into_body().collect_bytes().await.expect("body");
    serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null)
}

pub fn respond(send: tower_test::mock::SendResponse<Response<Body>>, code: u16, json: serde_json::Value) {
    send.send_response(
        Response::builder().status(code).body(Body::from(json.to_string().into_bytes())).expect("response"),
    );
}

/// One request the operator made to the (mock) API server.
#[derive(Debug)]
pub struct Call {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub body: serde_json::Value,
}

impl Call {
    pub fn is(&self, method: &Method, path: &str) -> bool {
        self.method == *method && self.path == path
    }
}

pub fn not_found() -> (u16, serde_json::Value) {
    (
        404,
        serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}),
    )
}

/// A mock API server answering every request with `answer`, recording them all; the calls come
/// back when the client is dropped.
pub fn api_server(
    answer: impl Fn(&Call) -> (u16, serde_json::Value) + Send + 'static,
) -> (kube::Client, tokio::task::JoinHandle<Vec<Call>>) {
    let (client, mut handle) = mock();
    let server = tokio::spawn(async move {
        let mut calls = Vec::new();
        while let Some((req, send)) = handle.next_request().await {
            let method = req.method().clone();
            let path = req.uri().path().to_string();
            let query = req.uri().query().unwrap_or_default().to_string();
            let call = Call { method, path, query, body: body(req).await };
            let (code, json) = answer(&call);
            respond(send, code, json);
            calls.push(call);
        }
        calls
    });
    (client, server)
}

/// What a real API server returns for a patch or a get: the body, with a name and namespace.
pub fn echo(call: &Call) -> (u16, serde_json::Value) {
    let mut out = call.body.clone();
    if out.is_null() {
        let parts: Vec<&str> = call.path.split('/').collect();
        let (kind, api) = if call.path.contains("/serviceaccounts/") {
            ("ServiceAccount", "v1")
        } else if call.path.contains("/configmaps/") {
            ("ConfigMap", "v1")
        } else {
            ("System", "edict.dev/v1alpha1")
        };
        out = serde_json::json!({"apiVersion": api, "kind": kind, "metadata": {
            "name": parts.last(), "namespace": parts.get(parts.len().saturating_sub(3))}});
        if kind == "ConfigMap" {
            out["metadata"]["labels"] = serde_json::json!({"app.kubernetes.io/managed-by": "edict"});
        }
    }
    // The API server answers with the whole object: a System has its spec.
    if out["kind"] == "System" && out.get("spec").is_none() {
        out["spec"] = serde_json::json!({"type": "custom"});
    }
    (200, out)
}
