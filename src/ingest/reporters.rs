//! Who may report for which System.
//!
//! Every report names its System in `labels.system_id` (`<cluster>/<namespace>/<name>`, set by
//! the OPA configuration edict renders) and arrives with the OPA's bearer token, if any. A
//! [`Reporters`] decides whether that reporter may report for that System, and resolves the
//! System to the [`SystemKey`] its reports are stored under.
//!
//! What exists today is [`ServedSystems`], for `edict run --local`: it listens on loopback
//! and accepts reports for the Systems it serves, whatever the token. The operator's rule
//! (DESIGN §4, issue 11 item 2) is NOT implemented yet: a `Reporters` that checks the token
//! with a TokenReview (audience `edict`, cached for the token's life) and allows only the
//! ServiceAccount the System names, in the System's namespace, answering
//! [`Denied::Unauthenticated`] for no, expired or invalid tokens and [`Denied::Forbidden`]
//! for another ServiceAccount or namespace.

use std::collections::BTreeMap;

use super::SystemKey;

/// Decides whether a reporter may report for a System (asynchronous: the operator asks the
/// API server who holds a token).
#[async_trait::async_trait]
pub trait Reporters: Send + Sync {
    /// The System `system_id` names, when the reporter holding `bearer` (the token of an
    /// `Authorization: Bearer` header) may report for it.
    async fn allows(&self, system_id: &str, bearer: Option<&str>) -> Result<SystemKey, Denied>;
}

#[async_trait::async_trait]
impl<F> Reporters for F
where
    F: Fn(&str, Option<&str>) -> Result<SystemKey, Denied> + Send + Sync,
{
    async fn allows(&self, system_id: &str, bearer: Option<&str>) -> Result<SystemKey, Denied> {
        self(system_id, bearer)
    }
}

/// Why a report is refused.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum Denied {
    /// No token, or a token that does not authenticate (HTTP 401).
    #[error("not authenticated: {0}")]
    Unauthenticated(String),
    /// The reporter may not report for this System, or the System is unknown (HTTP 403).
    #[error("forbidden: {0}")]
    Forbidden(String),
}

/// The Systems a `run --local` edict serves: any reporter may report for them, none for others.
#[derive(Clone, Debug, Default)]
pub struct ServedSystems {
    by_id: BTreeMap<String, SystemKey>,
}

impl ServedSystems {
    /// The given Systems.
    pub fn new(systems: impl IntoIterator<Item = SystemKey>) -> Self {
        ServedSystems { by_id: systems.into_iter().map(|k| (k.system_id(), k)).collect() }
    }
}

#[async_trait::async_trait]
impl Reporters for ServedSystems {
    async fn allows(&self, system_id: &str, _bearer: Option<&str>) -> Result<SystemKey, Denied> {
        self.by_id
            .get(system_id)
            .cloned()
            .ok_or_else(|| Denied::Forbidden(format!("edict serves no System {system_id}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_local_edict_accepts_reports_for_the_systems_it_serves_only() {
        let payments = SystemKey::new("acme", "local", "acme-payments", "payments-cluster");
        let served = ServedSystems::new([payments.clone()]);
        assert_eq!(served.allows("local/acme-payments/payments-cluster", None).await, Ok(payments));
        assert_eq!(
            served.allows("local/acme-payments/nope", Some("token")).await,
            Err(Denied::Forbidden("edict serves no System local/acme-payments/nope".into()))
        );
    }

    #[tokio::test]
    async fn a_closure_is_a_reporters() {
        let only_with_token = |id: &str, bearer: Option<&str>| match bearer {
            Some("t") => SystemKey::parse("acme", id).ok_or_else(|| Denied::Forbidden(id.into())),
            _ => Err(Denied::Unauthenticated("no token".into())),
        };
        assert!(only_with_token.allows("c/ns/s", Some("t")).await.is_ok());
        assert_eq!(
            only_with_token.allows("c/ns/s", None).await,
            Err(Denied::Unauthenticated("no token".into()))
        );
    }
}
