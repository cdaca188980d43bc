//! Leader election on a `coordination.k8s.io/v1` Lease: only the holder writes. A standby
//! takes over once the holder has not renewed for the lease duration; a holder that stops
//! cleanly releases the lease so a standby takes over at once.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

/// How leadership is held.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// The Lease's name.
    pub name: String,
    /// Its namespace (the operator's own).
    pub namespace: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a lease lasts without renewal.
    pub duration: Duration,
    /// How often the holder renews and a standby looks.
    pub retry: Duration,
}

impl LeaseConfig {
    /// The defaults: a 10 s lease renewed every 2 s, so a standby takes over within 12 s.
    pub fn new(namespace: &str, identity: &str) -> Self {
        LeaseConfig {
            name: "edict-leader".into(),
            namespace: namespace.into(),
            identity: identity.into(),
            duration: Duration::from_secs(10),
            retry: Duration::from_secs(2),
        }
    }
}

/// What to do with the Lease as it is now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// There is no Lease: create it, held by us.
    Create,
    /// We hold it: renew it.
    Renew,
    /// Its holder stopped renewing (or released it): take it over.
    TakeOver,
    /// Someone else holds it.
    Follow(String),
}

/// Decide, from the Lease as read at `now`. Pure.
pub fn step(lease: Option<&LeaseSpec>, me: &str, now: Timestamp) -> Step {
    let Some(spec) = lease else { return Step::Create };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder == me {
        return Step::Renew;
    }
    let duration = spec.lease_duration_seconds.unwrap_or(0).max(0) as i64;
    let renewed = spec.renew_time.as_ref().map(|t| t.0);
    let expired = match renewed {
        Some(t) => t.as_second() + duration < now.as_second(),
        None => true,
    };
    if holder.is_empty() || expired { Step::TakeOver } else { Step::Follow(holder) }
}

fn spec(me: &str, duration: Duration, transitions: i32, acquired: Option<MicroTime>) -> LeaseSpec {
    let now = MicroTime(Timestamp::now());
    LeaseSpec {
        holder_identity: Some(me.to_string()),
        lease_duration_seconds: Some(duration.as_secs() as i32),
        acquire_time: Some(acquired.unwrap_or_else(|| now.clone())),
        renew_time: Some(now),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    }
}

/// One round: read the Lease, act, and say whether we lead afterwards.
pub async fn round(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<bool, kube::Error> {
    let current = api.get_opt(&cfg.name).await?;
    let decided = step(current.as_ref().and_then(|l| l.spec.as_ref()), &cfg.identity, Timestamp::now());
    let result = match (&decided, current) {
        (Step::Create, _) => {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(cfg.name.clone()), ..ObjectMeta::default() },
                spec: Some(spec(&cfg.identity, cfg.duration, 0, None)),
            };
            api.create(&PostParams::default(), &lease).await.map(|_| true)
        }
        (Step::Renew | Step::TakeOver, Some(mut lease)) => {
            let old = lease.spec.clone().unwrap_or_default();
            let transitions = old.lease_transitions.unwrap_or(0) + i32::from(decided == Step::TakeOver);
            let acquired = if decided == Step::Renew { old.acquire_time } else { None };
            lease.spec = Some(spec(&cfg.identity, cfg.duration, transitions, acquired));
            // The resourceVersion read above makes this a compare-and-swap: two standbys
            // taking over at once cannot both win.
            api.replace(&cfg.name, &PostParams::default(), &lease).await.map(|_| true)
        }
        _ => Ok(false),
    };
    match result {
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        other => other,
    }
}

/// Keep renewing the lease in the background. The receiver turns `true` once leadership is
/// lost: another replica holds the lease, or renewals kept failing until the lease would lapse
/// for the others (less one renewal period, so that this replica stops before they start).
pub fn keep(
    api: Api<Lease>,
    cfg: LeaseConfig,
) -> (tokio::task::JoinHandle<()>, tokio::sync::watch::Receiver<bool>) {
    let (lost_tx, lost) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        let mut renewed = std::time::Instant::now();
        loop {
            tokio::time::sleep(cfg.retry).await;
            match round(&api, &cfg).await {
                Ok(true) => renewed = std::time::Instant::now(),
                Ok(false) => break,
                Err(e) => {
                    tracing::warn!("renewing lease {}/{}: {e}", cfg.namespace, cfg.name);
                    if renewed.elapsed() + cfg.retry >= cfg.duration {
                        break;
                    }
                }
            }
        }
        let _ = lost_tx.send(true);
    });
    (task, lost)
}

/// Give the lease up (on shutdown) so a standby takes over without waiting for it to expire.
pub async fn release(client: Client, cfg: &LeaseConfig) -> Result<(), kube::Error> {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    if let Some(mut lease) = api.get_opt(&cfg.name).await?
        && lease.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) == Some(cfg.identity.as_str())
    {
        if let Some(s) = lease.spec.as_mut() {
            s.holder_identity = None;
        }
        api.replace(&cfg.name, &PostParams::default(), &lease).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed_secs_ago: i64, duration: i32) -> LeaseSpec {
        let renew = Timestamp::from_second(1_000_000 - renewed_secs_ago).expect("time");
        LeaseSpec {
            holder_identity: (!holder.is_empty()).then(|| holder.to_string()),
            lease_duration_seconds: Some(duration),
            renew_time: Some(MicroTime(renew)),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn decisions() {
        let now = Timestamp::from_second(1_000_000).expect("time");
        assert_eq!(step(None, "a", now), Step::Create);
        assert_eq!(step(Some(&lease("a", 3, 10)), "a", now), Step::Renew);
        assert_eq!(step(Some(&lease("b", 3, 10)), "a", now), Step::Follow("b".into()));
        assert_eq!(step(Some(&lease("b", 11, 10)), "a", now), Step::TakeOver, "b stopped renewing");
        assert_eq!(step(Some(&lease("", 1, 10)), "a", now), Step::TakeOver, "released");
    }
}
