//! The OPA configuration for a System: where its bundle is, how to fetch it (S3 with the web
//! identity of the OPA's ServiceAccount, or edict's own bundle server), how to verify it, and
//! which decision the OPA answers by default. Pure: the operator puts it in a ConfigMap,
//! `edict run --local` prints it.

use serde_json::{Value, json};

use crate::api::{Storage, SystemType};
use crate::bundle::BundleInput;

/// How OPA reaches the bundle.
#[derive(Clone, Debug)]
pub enum Source<'a> {
    /// The Tenant's S3 bucket, signed with the web identity token of the OPA's ServiceAccount (IRSA).
    S3(&'a Storage),
    /// An HTTP bundle server (`edict run --local`): its base URL.
    Http(&'a str),
}

/// A bundle signing key OPA must verify with.
#[derive(Clone, Debug)]
pub struct Verification<'a> {
    /// The key id (the JWT `kid`).
    pub key_id: &'a str,
    /// The PEM public key.
    pub public_key: &'a str,
    /// The signature scope (the tenant).
    pub scope: &'a str,
}

/// The path of the decision OPA answers by default (`POST /`), per system type.
pub fn default_decision(system_type: SystemType) -> &'static str {
    match system_type {
        SystemType::Kubernetes | SystemType::Envoy | SystemType::Custom => "/main/main",
    }
}

/// How often, at most, an OPA polling edict's own bundle server asks for a new bundle; it
/// sends a status report after each poll, so this is also its reporting interval.
pub const HTTP_POLL_MAX_SECONDS: u64 = 5;

/// How long an OPA waits on edict's bundle server for a new bundle (OPA's long polling): edict
/// answers as soon as the bundle changes, or with `304` just before this.
pub const LONG_POLLING_SECONDS: u64 = 30;

/// Send the OPA's status reports and decision logs to the `edict` service (edict's own server,
/// which stores decisions and shows what the OPAs run in each System's status).
pub fn report_to_edict(config: &mut Value) {
    config["status"] = json!({"service": "edict"});
    config["decision_logs"] = json!({
        "service": "edict",
        "reporting": {"min_delay_seconds": 1, "max_delay_seconds": HTTP_POLL_MAX_SECONDS},
    });
}

/// Where an OPA in the cluster finds its ServiceAccount token for edict (projected with
/// audience `edict`; the edict-opa chart mounts it).
pub const TOKEN_PATH: &str = "/var/run/secrets/edict/token";

/// Send the OPA's status reports and decision logs to the operator at `url`, authenticated
/// with the projected ServiceAccount token at [`TOKEN_PATH`] (service `edict-reports`).
pub fn report_to_operator(config: &mut Value, url: &str) {
    config["services"]["edict-reports"] =
        json!({"url": url.trim_end_matches('/'), "credentials": {"bearer": {"token_path": TOKEN_PATH}}});
    config["status"] = json!({"service": "edict-reports"});
    config["decision_logs"] = json!({
        "service": "edict-reports",
        "reporting": {"min_delay_seconds": 5, "max_delay_seconds": 30},
    });
}

/// OPA's configuration (as JSON, which is valid YAML) for the System `input` describes.
pub fn render(input: &BundleInput, source: &Source<'_>, verification: Option<&Verification<'_>>) -> Value {
    let (service, resource) = match source {
        Source::S3(storage) => {
            let url = match &storage.s3.endpoint {
                Some(endpoint) => format!("{}/{}", endpoint.trim_end_matches('/'), storage.s3.bucket),
                None if storage.s3.force_path_style => {
                    format!("https://s3.{}.amazonaws.com/{}", storage.region, storage.s3.bucket)
                }
                None => format!("https://{}.s3.{}.amazonaws.com", storage.s3.bucket, storage.region),
            };
            let service = json!({
                "url": url,
                "credentials": {"s3_signing": {"web_identity_credentials": {
                    "aws_region": storage.region,
                    "session_name": format!("opa-{}-{}", input.system.namespace, input.system.name),
                }}},
            });
            let prefix = storage.s3.prefix.trim_matches('/');
            let resource =
                if prefix.is_empty() { input.live_key() } else { format!("{prefix}/{}", input.live_key()) };
            (service, resource)
        }
        Source::Http(url) => (json!({"url": url.trim_end_matches('/')}), input.live_key()),
    };
    // A local bundle server is for following edits as they happen; S3 is polled more gently.
    let (min, max) = match source {
        Source::S3(_) => (10, 30),
        Source::Http(_) => (1, HTTP_POLL_MAX_SECONDS),
    };
    let mut bundle = json!({
        "service": "edict",
        "resource": resource,
        "persist": true,
        "polling": {"min_delay_seconds": min, "max_delay_seconds": max},
    });
    if let Source::Http(_) = source {
        // edict's own server long-polls: a new bundle reaches a waiting OPA as it is published.
        bundle["polling"]["long_polling_timeout_seconds"] = json!(LONG_POLLING_SECONDS);
    }
    let mut config = json!({
        "services": {"edict": service},
        "labels": {
            "tenant": input.tenant,
            "system_id": input.system_id(),
            "system_type": input.system_type.as_str(),
        },
        "default_decision": default_decision(input.system_type),
    });
    if let Some(v) = verification {
        bundle["signing"] = json!({"keyid": v.key_id, "scope": v.scope});
        config["keys"] = json!({ v.key_id: {"algorithm": "ES256", "key": v.public_key} });
    }
    config["bundles"] = json!({ input.system.name.clone(): bundle });
    config
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{DynamoDbStorage, S3Storage};
    use crate::model::ObjectKey;

    fn input() -> BundleInput {
        BundleInput::new("acme", "prod-eu", ObjectKey::new("team-a", "api"), SystemType::Kubernetes)
    }

    fn storage(endpoint: Option<&str>) -> Storage {
        Storage {
            region: "eu-west-1".into(),
            s3: S3Storage {
                bucket: "acme-bundles".into(),
                prefix: "prod/".into(),
                endpoint: endpoint.map(String::from),
                force_path_style: false,
                sse_kms: true,
            },
            dynamodb: DynamoDbStorage { table: "t".into(), endpoint: None, create: false },
            kms: None,
        }
    }

    #[test]
    fn s3_with_web_identity_and_signing() {
        let s = storage(None);
        let v = Verification {
            key_id: "alias/sign",
            public_key: "-----BEGIN PUBLIC KEY-----\n...",
            scope: "acme",
        };
        let c = render(&input(), &Source::S3(&s), Some(&v));
        assert_eq!(c["services"]["edict"]["url"], "https://acme-bundles.s3.eu-west-1.amazonaws.com");
        let wi = &c["services"]["edict"]["credentials"]["s3_signing"]["web_identity_credentials"];
        assert_eq!(wi["aws_region"], "eu-west-1");
        let b = &c["bundles"]["api"];
        assert_eq!(b["resource"], "prod/bundles/acme/prod-eu/team-a/api/bundle.tar.gz");
        assert_eq!(b["signing"]["keyid"], "alias/sign");
        assert_eq!(b["signing"]["scope"], "acme");
        assert_eq!(c["keys"]["alias/sign"]["algorithm"], "ES256");
        assert_eq!(c["default_decision"], "/main/main");
        assert_eq!(c["labels"]["system_id"], "prod-eu/team-a/api");
    }

    #[test]
    fn endpoints_and_local_servers() {
        let s = storage(Some("http://127.0.0.1:9000/"));
        let c = render(&input(), &Source::S3(&s), None);
        assert_eq!(c["services"]["edict"]["url"], "http://127.0.0.1:9000/acme-bundles");
        assert!(c.get("keys").is_none() && c["bundles"]["api"].get("signing").is_none());
        let c = render(&input(), &Source::Http("http://127.0.0.1:8181/"), None);
        assert_eq!(c["services"]["edict"], json!({"url": "http://127.0.0.1:8181"}));
        assert_eq!(c["bundles"]["api"]["resource"], "bundles/acme/prod-eu/team-a/api/bundle.tar.gz");
    }
}
