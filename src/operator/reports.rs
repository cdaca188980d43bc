//! Who may report to the operator. Each OPA sends its ServiceAccount's token, projected with
//! audience `edict`; the operator asks the API server who holds it (a TokenReview, cached for
//! the token's life) and takes the reports only of the Systems whose `serviceAccountName` that
//! is, in their namespace. Anything else is 401 (no, expired or foreign token) or 403 (another
//! ServiceAccount or namespace).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::PostParams;
use kube::{Api, Client};
use sha2::{Digest, Sha256};

use crate::ingest::{Denied, Reporters, SystemKey};

/// The audience an OPA's projected token must carry.
pub const AUDIENCE: &str = "edict";

/// The ServiceAccount an OPA uses when the System names none.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

/// How long a reviewed token is trusted at most (shorter when the token expires sooner).
const TRUST: Duration = Duration::from_secs(300);

/// Tokens remembered at most (expired ones are dropped first).
const CACHE: usize = 10_000;

/// A System reports may be for: where they are stored, and who may send them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reporter {
    /// The System.
    pub key: SystemKey,
    /// The ServiceAccount its OPA runs as (in the System's namespace).
    pub service_account: String,
}

/// `system_id` → who may report for it; the engine keeps it current.
pub type ReporterMap = Arc<RwLock<BTreeMap<String, Reporter>>>;

/// [`Reporters`] checked with TokenReviews.
pub struct TokenReviews {
    client: Client,
    systems: ReporterMap,
    /// sha256 of a token → its user and until when that is trusted.
    cache: Mutex<HashMap<[u8; 32], (String, SystemTime)>>,
}

impl TokenReviews {
    /// Reviews through `client`, for the Systems in `systems`.
    pub fn new(client: Client, systems: ReporterMap) -> Self {
        TokenReviews { client, systems, cache: Mutex::new(HashMap::new()) }
    }

    /// The user a token authenticates as, for audience `edict`.
    async fn user(&self, token: &str, now: SystemTime) -> Result<String, Denied> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some((user, until)) = self.cache.lock().unwrap_or_else(PoisonError::into_inner).get(&digest)
            && *until > now
        {
            return Ok(user.clone());
        }
        let review = TokenReview {
            spec: TokenReviewSpec { token: token.to_string(), audiences: Some(vec![AUDIENCE.to_string()]) },
            ..TokenReview::default()
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let reviewed = api.create(&PostParams::default(), &review).await.map_err(|e| {
            Denied::Unauthenticated(format!("the token could not be reviewed (TokenReview): {e}"))
        })?;
        let user = authenticated(reviewed.status.unwrap_or_default())?;
        let until = now + trust(token, now);
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= CACHE {
            cache.retain(|_, (_, until)| *until > now);
        }
        if cache.len() < CACHE {
            cache.insert(digest, (user.clone(), until));
        }
        Ok(user)
    }
}

/// The user of a review's status, when it authenticates for audience `edict`.
fn authenticated(status: k8s_openapi::api::authentication::v1::TokenReviewStatus) -> Result<String, Denied> {
    if status.authenticated != Some(true) {
        let why = status.error.unwrap_or_else(|| "the API server does not accept it".into());
        return Err(Denied::Unauthenticated(format!("token not authenticated: {why}")));
    }
    if !status.audiences.unwrap_or_default().iter().any(|a| a == AUDIENCE) {
        return Err(Denied::Unauthenticated(format!("the token is not for audience {AUDIENCE}")));
    }
    status
        .user
        .and_then(|u| u.username)
        .ok_or_else(|| Denied::Unauthenticated("the token names no user".into()))
}

/// How long a reviewed token is trusted from `now`: until its `exp` (read, not verified: the
/// TokenReview did that), at most [`TRUST`]; not at all once expired.
fn trust(token: &str, now: SystemTime) -> Duration {
    match expiry(token) {
        Some(exp) => exp.duration_since(now).unwrap_or(Duration::ZERO).min(TRUST),
        None => TRUST,
    }
}

/// A JWT's `exp`.
fn expiry(token: &str) -> Option<SystemTime> {
    let payload = token.split('.').nth(1)?;
    let bytes =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let exp = serde_json::from_slice::<serde_json::Value>(&bytes).ok()?["exp"].as_u64()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(exp))
}

/// Who may report for `reporter`'s System.
fn expected_user(reporter: &Reporter) -> String {
    format!("system:serviceaccount:{}:{}", reporter.key.system.namespace, reporter.service_account)
}

#[async_trait::async_trait]
impl Reporters for TokenReviews {
    async fn allows(&self, system_id: &str, bearer: Option<&str>) -> Result<SystemKey, Denied> {
        let Some(token) = bearer else {
            return Err(Denied::Unauthenticated(format!(
                "no bearer token: mount the ServiceAccount token projected with audience {AUDIENCE}"
            )));
        };
        let reporter = self.systems.read().unwrap_or_else(PoisonError::into_inner).get(system_id).cloned();
        let Some(reporter) = reporter else {
            return Err(Denied::Forbidden(format!("no System {system_id} in this cluster")));
        };
        let user = self.user(token, SystemTime::now()).await?;
        let expected = expected_user(&reporter);
        if user != expected {
            return Err(Denied::Forbidden(format!(
                "{user} may not report for System {}: its OPA runs as {expected}",
                reporter.key.system
            )));
        }
        Ok(reporter.key)
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::authentication::v1::{TokenReviewStatus, UserInfo};

    use super::*;

    fn status(authenticated: bool, audiences: &[&str], user: &str) -> TokenReviewStatus {
        TokenReviewStatus {
            authenticated: Some(authenticated),
            audiences: Some(audiences.iter().map(|a| a.to_string()).collect()),
            user: Some(UserInfo { username: Some(user.into()), ..UserInfo::default() }),
            error: (!authenticated).then(|| "token has expired".into()),
        }
    }

    #[test]
    fn only_an_authenticated_token_for_edict_names_a_user() {
        let sa = "system:serviceaccount:team-a:opa";
        assert_eq!(authenticated(status(true, &["edict"], sa)), Ok(sa.to_string()));
        let expired = authenticated(status(false, &["edict"], sa)).unwrap_err();
        assert_eq!(expired, Denied::Unauthenticated("token not authenticated: token has expired".into()));
        let foreign = authenticated(status(true, &["https://kubernetes.default.svc"], sa)).unwrap_err();
        assert!(matches!(foreign, Denied::Unauthenticated(m) if m.contains("audience edict")));
    }

    #[test]
    fn a_token_is_trusted_until_it_expires_at_most() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"exp":1060}"#);
        assert_eq!(trust(&format!("h.{claims}.s"), now), Duration::from_secs(60));
        let gone = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"exp":900}"#);
        assert_eq!(trust(&format!("h.{gone}.s"), now), Duration::ZERO, "expired: not trusted");
        let later = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"exp":99999}"#);
        assert_eq!(trust(&format!("h.{later}.s"), now), TRUST, "at most TRUST");
        assert_eq!(trust("not-a-jwt", now), TRUST);
    }

    #[test]
    fn the_system_service_account_in_its_namespace_may_report() {
        let reporter =
            Reporter { key: SystemKey::new("acme", "c1", "team-a", "api"), service_account: "opa".into() };
        assert_eq!(expected_user(&reporter), "system:serviceaccount:team-a:opa");
    }
}
