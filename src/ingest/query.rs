//! Reading recorded decisions back: a System's decision objects in a time range, each event
//! summarised as people read a decision (time, allowed or denied, tier, deciding sources,
//! message), and per-minute counts. What `edict decisions` and `edict stats` print.
//!
//! The objects holding the range are found with one query of the Tenant's index, so asking for
//! the last hour reads one or two hours of objects, not the System's whole history; per-minute
//! counts come from the index's counters alone.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::Value;

use super::decisions::{Outcome, parse_rfc3339, read_ndjson_gz};
use super::{Sink, SystemKey};
use crate::registry::index::MinuteCounts;
use crate::registry::store::StoreError;

/// One recorded decision, as people read it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Recorded {
    /// When OPA decided (RFC 3339, as OPA wrote it).
    pub time: String,
    /// OPA's id of the decision.
    pub decision_id: String,
    /// Whether the request was allowed (`None` when the result does not say).
    pub allowed: Option<bool>,
    /// The tier that decided (1–9, see the README's precedence table), when the answer says.
    pub tier: Option<u64>,
    /// The sources that decided (`stack/ns/name`, `system`), when the answer says.
    pub decided_by: Vec<String>,
    /// The deciding messages.
    pub message: String,
    /// The bundle revision OPA decided with.
    pub revision: Option<String>,
    /// JSON pointers of the input that were erased before the decision was sent.
    pub erased: Vec<String>,
}

impl Recorded {
    /// Summarise one decision-log event. The answer's shape depends on the System's type
    /// (an AdmissionReview, Envoy's answer, or edict's outcome for custom Systems).
    pub fn of(event: &Value) -> Recorded {
        let result = &event["result"];
        let response = &result["response"];
        let Outcome { allowed, tier, decided_by } = Outcome::of(event);
        let message = match &result["messages"] {
            Value::Array(m) => m.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("; "),
            _ => response["status"]["message"]
                .as_str()
                .or_else(|| result["body"].as_str())
                .unwrap_or_default()
                .to_string(),
        };
        let revision = event["bundles"]
            .as_object()
            .and_then(|b| b.values().find_map(|v| v["revision"].as_str()))
            .map(String::from);
        Recorded {
            time: event["timestamp"].as_str().unwrap_or_default().to_string(),
            decision_id: event["decision_id"].as_str().unwrap_or_default().to_string(),
            allowed,
            tier,
            decided_by,
            message,
            revision,
            erased: event["erased"]
                .as_array()
                .map(|e| e.iter().filter_map(Value::as_str).map(String::from).collect())
                .unwrap_or_default(),
        }
    }
}

/// The prefix of a System's decision objects.
pub fn prefix(system: &SystemKey) -> String {
    format!(
        "decisions/{}/{}/{}/{}/",
        system.tenant, system.cluster, system.system.namespace, system.system.name
    )
}

/// Why recorded decisions could not be read.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The index failed.
    #[error(transparent)]
    Index(#[from] crate::registry::index::IndexError),
    /// A stored object is not gzip NDJSON.
    #[error("decision object {key}: {message}")]
    Corrupt {
        /// Its key.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// The decision events `system` recorded from `since` on (all of them for `None`), oldest
/// first, as stored (every field OPA sent).
pub async fn events(
    sink: &Sink,
    system: &SystemKey,
    since: Option<SystemTime>,
) -> Result<Vec<Value>, QueryError> {
    events_of_shard(sink, system, since, None).await
}

/// How far ahead of this clock an OPA's clock may be and its decisions still be read.
const CLOCK_SKEW: Duration = Duration::from_secs(86_400);

/// [`events`] of one shard: with `Some((i, n))`, only the stored objects at positions `i`,
/// `i + n`, `i + 2n`, … of the System's sorted object keys, so that `n` processes together read
/// every object once (a replay split over machines). The objects are found with one query of
/// the index, not by listing the store.
pub async fn events_of_shard(
    sink: &Sink,
    system: &SystemKey,
    since: Option<SystemTime>,
    shard: Option<(usize, usize)>,
) -> Result<Vec<Value>, QueryError> {
    let mut out = Vec::new();
    for key in objects_of_shard(sink, system, since, shard).await? {
        out.extend(object_events(sink, &key, since).await?);
    }
    out.sort_by(|a, b| a["timestamp"].as_str().cmp(&b["timestamp"].as_str()));
    Ok(out)
}

/// The keys of the stored objects holding `system`'s decisions from `since` on, sorted, those
/// of one shard only with `Some((i, n))` (see [`events_of_shard`]): one query of the index.
pub async fn objects_of_shard(
    sink: &Sink,
    system: &SystemKey,
    since: Option<SystemTime>,
    shard: Option<(usize, usize)>,
) -> Result<Vec<String>, QueryError> {
    let from = since.unwrap_or(SystemTime::UNIX_EPOCH);
    let to = SystemTime::now() + CLOCK_SKEW;
    let batches = sink.index.decision_batches(&sink.index_tenant, &system.system_id(), from, to).await?;
    let mut keys: Vec<String> = batches.into_iter().map(|b| b.key).collect();
    keys.sort();
    if let Some((index, count)) = shard.filter(|(_, n)| *n > 0) {
        keys = keys.into_iter().enumerate().filter(|(i, _)| i % count == index).map(|(_, k)| k).collect();
    }
    Ok(keys)
}

/// The events of one stored object made from `since` on, in the order OPA sent them (none
/// when the object is gone).
pub async fn object_events(
    sink: &Sink,
    key: &str,
    since: Option<SystemTime>,
) -> Result<Vec<Value>, QueryError> {
    let Some(object) = sink.store.get(key).await? else { return Ok(Vec::new()) };
    let mut events = read_ndjson_gz(&object.bytes)
        .map_err(|e| QueryError::Corrupt { key: key.to_string(), message: e.to_string() })?;
    events.retain(|e| {
        let at = e["timestamp"].as_str().and_then(parse_rfc3339);
        since.is_none_or(|since| at.is_some_and(|at| at >= since))
    });
    Ok(events)
}

/// The per-minute counts of `system`'s decisions from `from` to now (keyed `YYYY-MM-DDTHH:MM`,
/// UTC), from the index's counters: no decision object is read.
pub async fn minutes(
    sink: &Sink,
    system: &SystemKey,
    from: SystemTime,
) -> Result<BTreeMap<String, MinuteCounts>, QueryError> {
    let to = SystemTime::now() + CLOCK_SKEW;
    Ok(sink.index.decision_minutes(&sink.index_tenant, &system.system_id(), from, to).await?)
}

/// `30s`, `15m`, `24h`, `7d` as a duration.
pub fn parse_age(text: &str) -> Option<Duration> {
    let text = text.trim();
    let unit = text.chars().last()?;
    let n: u64 = text[..text.len() - unit.len_utf8()].parse().ok()?;
    let secs = match unit {
        's' => n,
        'm' => n * 60,
        'h' => n * 3600,
        'd' => n * 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn decisions_of_each_system_type_read_alike() {
        let admission = json!({
            "timestamp": "2026-11-30T17:01:40.06Z", "decision_id": "a",
            "bundles": {"payments-cluster": {"revision": "ad04"}},
            "result": {"response": {"allowed": false, "status": {"message": "no privileged containers"}}},
            "erased": ["/input/request/object/data"],
        });
        let r = Recorded::of(&admission);
        assert_eq!((r.allowed, r.tier, r.message.as_str()), (Some(false), None, "no privileged containers"));
        assert_eq!(r.revision.as_deref(), Some("ad04"));
        assert_eq!(r.erased, ["/input/request/object/data"]);

        let envoy = json!({"timestamp": "t", "result": {"allowed": true, "headers": {"x-edict-tier": "8"}, "body": ""}});
        let r = Recorded::of(&envoy);
        assert_eq!((r.allowed, r.tier), (Some(true), Some(8)));

        let custom = json!({"timestamp": "t", "result": {
            "allowed": false, "tier": 3, "messages": ["b", "c"],
            "decided_by": [{"source": "stack", "name": "ns/base"}, {"source": "system", "name": ""}],
        }});
        let r = Recorded::of(&custom);
        assert_eq!((r.allowed, r.tier, r.message.as_str()), (Some(false), Some(3), "b; c"));
        assert_eq!(r.decided_by, ["stack/ns/base", "system"]);
    }

    #[test]
    fn ages_read_as_people_write_them() {
        assert_eq!(parse_age("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_age("24h"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_age("7d"), Some(Duration::from_secs(604_800)));
        assert_eq!(parse_age("1w"), None);
        assert_eq!(parse_age("h"), None);
    }
}
