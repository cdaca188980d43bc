//! Reading recorded decisions back: a System's decision objects in a time range, each event
//! summarised as people read a decision (time, allowed or denied, tier, deciding sources,
//! message), and per-minute counts. What `edict decisions` and `edict stats` print.
//!
//! Only the partitions that overlap the range are read (`dt=…/hour=…` in the key), so asking
//! for the last hour reads one or two hours of objects, not the System's whole history.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::Value;

use super::SystemKey;
use super::decisions::{hour_partition, parse_rfc3339, read_ndjson_gz};
use crate::registry::store::{ObjectStore, StoreError};

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
        let allowed = result["allowed"].as_bool().or_else(|| response["allowed"].as_bool());
        let tier = result["tier"]
            .as_u64()
            .or_else(|| result["headers"]["x-edict-tier"].as_str().and_then(|t| t.parse().ok()));
        let decided_by = result["decided_by"]
            .as_array()
            .map(|all| {
                all.iter()
                    .map(|d| match (d["source"].as_str(), d["name"].as_str()) {
                        (Some(source), Some(name)) if !name.is_empty() => format!("{source}/{name}"),
                        (Some(source), _) => source.to_string(),
                        _ => d.to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default();
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
    store: &dyn ObjectStore,
    system: &SystemKey,
    since: Option<SystemTime>,
) -> Result<Vec<Value>, QueryError> {
    events_of_shard(store, system, since, None).await
}

/// [`events`] of one shard: with `Some((i, n))`, only the stored objects at positions `i`,
/// `i + n`, `i + 2n`, … of the System's sorted object keys, so that `n` processes together read
/// every object once (a replay split over machines).
pub async fn events_of_shard(
    store: &dyn ObjectStore,
    system: &SystemKey,
    since: Option<SystemTime>,
    shard: Option<(usize, usize)>,
) -> Result<Vec<Value>, QueryError> {
    let prefix = prefix(system);
    let first_hour = since.map(hour_partition);
    let mut keys = store.list(&prefix).await?;
    // Keys sort by partition (`dt=YYYY-MM-DD/hour=HH`): skip whole hours before `since`.
    keys.retain(|k| {
        let partition = k[prefix.len()..].rsplit_once('/').map_or("", |(p, _)| p);
        first_hour.as_deref().is_none_or(|first| partition >= first)
    });
    keys.sort();
    if let Some((index, count)) = shard.filter(|(_, n)| *n > 0) {
        keys = keys.into_iter().enumerate().filter(|(i, _)| i % count == index).map(|(_, k)| k).collect();
    }
    let mut out = Vec::new();
    for key in keys {
        let Some(object) = store.get(&key).await? else { continue };
        let events = read_ndjson_gz(&object.bytes)
            .map_err(|e| QueryError::Corrupt { key: key.clone(), message: e.to_string() })?;
        out.extend(events.into_iter().filter(|e| {
            let at = e["timestamp"].as_str().and_then(parse_rfc3339);
            since.is_none_or(|since| at.is_some_and(|at| at >= since))
        }));
    }
    out.sort_by(|a, b| a["timestamp"].as_str().cmp(&b["timestamp"].as_str()));
    Ok(out)
}

/// Counts of one minute.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Minute {
    /// Decisions.
    pub total: u64,
    /// Allowed.
    pub allowed: u64,
    /// Denied.
    pub denied: u64,
    /// By deciding tier (`9` is the default decision).
    pub by_tier: BTreeMap<u64, u64>,
    /// By deciding source.
    pub by_source: BTreeMap<String, u64>,
}

/// Per-minute counts of `decisions`, keyed by the minute (`YYYY-MM-DDTHH:MM`, UTC).
pub fn per_minute(decisions: &[Recorded]) -> BTreeMap<String, Minute> {
    let mut out: BTreeMap<String, Minute> = BTreeMap::new();
    for d in decisions {
        let minute = d.time.get(..16).unwrap_or(&d.time).to_string();
        let m = out.entry(minute).or_default();
        m.total += 1;
        match d.allowed {
            Some(true) => m.allowed += 1,
            Some(false) => m.denied += 1,
            None => {}
        }
        if let Some(tier) = d.tier {
            *m.by_tier.entry(tier).or_default() += 1;
        }
        for source in &d.decided_by {
            *m.by_source.entry(source.clone()).or_default() += 1;
        }
    }
    out
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
    fn minutes_count_outcomes_tiers_and_sources() {
        let d = |time: &str, allowed: bool, tier: u64| Recorded {
            time: time.into(),
            decision_id: String::new(),
            allowed: Some(allowed),
            tier: Some(tier),
            decided_by: vec!["stack/ns/base".into()],
            message: String::new(),
            revision: None,
            erased: vec![],
        };
        let minutes = per_minute(&[
            d("2026-11-30T17:01:40Z", false, 3),
            d("2026-11-30T17:01:59Z", true, 4),
            d("2026-11-30T17:02:00Z", false, 3),
        ]);
        let first = &minutes["2026-11-30T17:01"];
        assert_eq!((first.total, first.allowed, first.denied), (2, 1, 1));
        assert_eq!(first.by_tier, BTreeMap::from([(3, 1), (4, 1)]));
        assert_eq!(minutes["2026-11-30T17:02"].by_source["stack/ns/base"], 1);
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
