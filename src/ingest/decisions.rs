//! OPA's Decision Log API batches (`POST /logs`): decode, check, re-mask, and lay out for storage.
//!
//! A body is a JSON array of decision events, gzip-compressed when `Content-Encoding: gzip`
//! (as OPA sends it). Each event must carry `decision_id` and `timestamp`; everything else is
//! kept as OPA sent it, unknown fields included, so that what is stored is what OPA logged (the
//! fields of OPA 0.6x–1.x: `labels`, `bundles`, `path`, `input`, `result`, `erased`, `masked`,
//! `nd_builtin_cache`, `metrics`, `req_id`, `requested_by`, ...; older ones had `revision`).
//!
//! Stored layout ([`objects`]): gzip NDJSON under
//! `decisions/<tenant>/<cluster>/<namespace>/<system>/dt=YYYY-MM-DD/hour=HH/<batch id>.json.gz`,
//! one object per UTC hour the batch's events fall in (Hive-style partitions that Athena, Spark
//! and DuckDB read in place). The batch id hashes the sorted decision ids, so a batch OPA
//! resends after a failure maps to the same keys and is stored once.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::SystemKey;
use crate::bundle::masks::DEFAULT_KUBERNETES_MASKS;
use crate::registry::index::decisions::minute_of;
use crate::registry::index::{DecisionBatch, MinuteCounts, format_timestamp, parse_timestamp};

/// Secret fields that are write-only in the API but may reach an admission webhook; the
/// `kubernetes_baseline` example Stack masks them beside [`DEFAULT_KUBERNETES_MASKS`].
pub const SECRET_STRING_DATA: [&str; 2] =
    ["/input/request/object/stringData", "/input/request/oldObject/stringData"];

/// The pointers that must be absent from a stored Secret admission event: the default
/// Kubernetes masks (Secret data, and annotations, where `kubectl apply` keeps a copy of the
/// data) and `stringData`.
pub fn secret_pointers() -> impl Iterator<Item = &'static str> {
    DEFAULT_KUBERNETES_MASKS.into_iter().chain(SECRET_STRING_DATA)
}

/// One decision event: the fields edict reads, and the whole event as OPA sent it.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// OPA's `decision_id`.
    pub decision_id: String,
    /// OPA's `timestamp`, in UTC.
    pub timestamp: SystemTime,
    /// The event itself, every field kept.
    pub value: Value,
}

/// Why a batch is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// A `Content-Encoding` other than gzip or identity.
    #[error("unsupported Content-Encoding {0:?}: OPA sends gzip")]
    UnsupportedEncoding(String),
    /// `Content-Encoding: gzip` on a body that is not gzip.
    #[error("body is not gzip although Content-Encoding says so: {0}")]
    NotGzip(String),
    /// The body decompresses to more than the limit.
    #[error("decompressed body is larger than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body is not JSON.
    #[error("body is not JSON: {0}")]
    NotJson(String),
    /// The body is JSON but not an array.
    #[error("body is not a JSON array of decision events")]
    NotAnArray,
    /// An event lacks a field or has it in the wrong form.
    #[error("event {index}: {problem}")]
    Event {
        /// The event's position in the batch.
        index: usize,
        /// What is wrong with it.
        problem: String,
    },
    /// Events of one batch name different Systems, or none.
    #[error("{0}")]
    System(String),
}

/// Decode a `POST /logs` body: gunzip when `encoding` says gzip (at most `max_decoded`
/// bytes), parse the JSON array, and check each event's `decision_id` and `timestamp`.
pub fn decode(body: &[u8], encoding: Option<&str>, max_decoded: usize) -> Result<Vec<Event>, DecodeError> {
    let encoding = encoding.map(str::trim).filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case("identity"));
    let json = match encoding {
        None => {
            if body.len() > max_decoded {
                return Err(DecodeError::TooLarge { limit: max_decoded });
            }
            std::borrow::Cow::Borrowed(body)
        }
        Some(e) if e.eq_ignore_ascii_case("gzip") || e.eq_ignore_ascii_case("x-gzip") => {
            std::borrow::Cow::Owned(gunzip(body, max_decoded)?)
        }
        Some(other) => return Err(DecodeError::UnsupportedEncoding(other.to_string())),
    };
    let value: Value = serde_json::from_slice(&json).map_err(|e| DecodeError::NotJson(e.to_string()))?;
    let Value::Array(values) = value else { return Err(DecodeError::NotAnArray) };
    values.into_iter().enumerate().map(|(index, value)| event(index, value)).collect()
}

/// Decompress a gzip body (one or more members) of at most `limit` bytes once decompressed.
pub fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    // A plain loop: `read_to_end` through `Take` zeroes spare capacity up to the limit.
    let mut out = Vec::with_capacity(body.len().saturating_mul(8).min(limit));
    let mut decoder = flate2::read::MultiGzDecoder::new(body);
    let mut chunk = [0u8; 32 << 10];
    loop {
        let n = match decoder.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(DecodeError::NotGzip(e.to_string())),
        };
        if out.len() + n > limit {
            return Err(DecodeError::TooLarge { limit });
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

fn event(index: usize, value: Value) -> Result<Event, DecodeError> {
    let problem = |problem: String| DecodeError::Event { index, problem };
    if !value.is_object() {
        return Err(problem("is not a JSON object".into()));
    }
    let text = |field: &str| value.get(field).and_then(Value::as_str).filter(|s| !s.is_empty());
    let decision_id = text("decision_id").ok_or_else(|| problem("has no decision_id".into()))?.to_string();
    let raw = text("timestamp").ok_or_else(|| problem(format!("{decision_id} has no timestamp")))?;
    let timestamp = parse_rfc3339(raw)
        .filter(|t| format_timestamp(*t).is_ok())
        .ok_or_else(|| problem(format!("{decision_id} has timestamp {raw:?}, not RFC 3339 in 1970-9999")))?;
    Ok(Event { decision_id, timestamp, value })
}

/// Parse RFC 3339 with `Z` or a `±HH:MM` offset (Go writes either), 0–9 fractional digits.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    if let Some(t) = parse_timestamp(s) {
        return Some(t);
    }
    let (base, offset) = s.split_at_checked(s.len().checked_sub(6)?)?;
    let (sign, hh, mm) = (offset.get(..1)?, offset.get(1..3)?, offset.get(4..)?);
    if offset.get(3..4)? != ":" || !(hh.bytes().chain(mm.bytes())).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let shift = Duration::from_secs(hh.parse::<u64>().ok()? * 3600 + mm.parse::<u64>().ok()? * 60);
    let local = parse_timestamp(&format!("{base}Z"))?;
    match sign {
        "+" => local.checked_sub(shift),
        "-" => local.checked_add(shift),
        _ => None,
    }
}

/// The System the batch's events name in `labels.system_id` (all of them must agree).
pub fn system_id(events: &[Event]) -> Result<Option<&str>, DecodeError> {
    let mut found: Option<&str> = None;
    for (index, event) in events.iter().enumerate() {
        let id = event.value.pointer("/labels/system_id").and_then(Value::as_str).ok_or_else(|| {
            DecodeError::Event {
                index,
                problem: format!(
                    "{} has no labels.system_id (the OPA configuration edict renders sets it)",
                    event.decision_id
                ),
            }
        })?;
        match found {
            Some(first) if first != id => {
                return Err(DecodeError::System(format!(
                    "one batch names two Systems: {first} and {id} (event {index})"
                )));
            }
            _ => found = Some(id),
        }
    }
    Ok(found)
}

/// Defence in depth: erase [`secret_pointers`] from an admission event about a Secret when
/// OPA left them in (its masks were not applied), listing them in the event's `erased`.
/// Returns whether anything was erased.
pub fn remask_secret(event: &mut Value) -> bool {
    if event.pointer("/input/request/kind/kind").and_then(Value::as_str) != Some("Secret") {
        return false;
    }
    let mut erased = Vec::new();
    for pointer in secret_pointers() {
        let Some((parent, field)) = pointer.rsplit_once('/') else { continue };
        let removed = event.pointer_mut(parent).and_then(Value::as_object_mut).and_then(|o| o.remove(field));
        if removed.is_some() {
            erased.push(pointer);
        }
    }
    if erased.is_empty() {
        return false;
    }
    let Some(object) = event.as_object_mut() else { return false };
    let list = object.entry("erased").or_insert_with(|| Value::Array(Vec::new()));
    if !list.is_array() {
        *list = Value::Array(vec![list.take()]);
    }
    if let Value::Array(list) = list {
        for pointer in erased {
            if !list.iter().any(|p| p.as_str() == Some(pointer)) {
                list.push(Value::String(pointer.to_string()));
            }
        }
    }
    true
}

/// What a decision decided, read from its `result`: the answer's shape depends on the
/// System's type (an AdmissionReview, Envoy's answer, or edict's outcome for custom Systems).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Whether the request was allowed (`None` when the result does not say).
    pub allowed: Option<bool>,
    /// The tier that decided (1–9), when the answer says.
    pub tier: Option<u64>,
    /// The sources that decided (`stack/ns/name`, `system`), when the answer says.
    pub decided_by: Vec<String>,
}

impl Outcome {
    /// The outcome of one decision-log event.
    pub fn of(event: &Value) -> Outcome {
        Outcome::of_result(&event["result"])
    }

    /// The outcome of a decision's result (what OPA answered, or edict's `data.main.outcome`).
    pub fn of_result(result: &Value) -> Outcome {
        let allowed = result["allowed"].as_bool().or_else(|| result["response"]["allowed"].as_bool());
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
        Outcome { allowed, tier, decided_by }
    }

    /// Count this outcome into a minute's counts.
    pub fn count(&self, minute: &mut MinuteCounts) {
        minute.total += 1;
        match self.allowed {
            Some(true) => minute.allowed += 1,
            Some(false) => minute.denied += 1,
            None => {}
        }
        if let Some(tier) = self.tier {
            *minute.by_tier.entry(tier).or_default() += 1;
        }
        for source in &self.decided_by {
            *minute.by_source.entry(source.clone()).or_default() += 1;
        }
    }
}

/// One object to store: part of a batch, one UTC hour of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchObject {
    /// The object key (see the module docs).
    pub key: String,
    /// Gzip NDJSON, one event per line, in the order OPA sent them.
    pub bytes: Vec<u8>,
    /// How many events it holds.
    pub events: usize,
    /// What the index keeps of it (without an expiry: the Tenant's retention sets it).
    pub indexed: DecisionBatch,
    /// Its decisions counted per minute ([`crate::registry::index::decisions::minute_of`]).
    pub minutes: BTreeMap<String, MinuteCounts>,
}

/// Lay a batch out as objects, one per UTC hour its events fall in, each keyed by the hash of
/// its sorted decision ids. Deterministic: the same events give the same keys and bytes.
pub fn objects(system: &SystemKey, events: &[Event]) -> Vec<BatchObject> {
    let mut hours: BTreeMap<String, Vec<&Event>> = BTreeMap::new();
    for event in events {
        hours.entry(hour_partition(event.timestamp)).or_default().push(event);
    }
    hours
        .into_iter()
        .map(|(partition, events)| {
            let id = batch_id(&events);
            let key = format!(
                "decisions/{}/{}/{}/{}/{partition}/{id}.json.gz",
                system.tenant, system.cluster, system.system.namespace, system.system.name,
            );
            let mut minutes: BTreeMap<String, MinuteCounts> = BTreeMap::new();
            let mut total = MinuteCounts::default();
            for event in &events {
                let outcome = Outcome::of(&event.value);
                // `decode` admits only timestamps that format.
                let minute = minute_of(event.timestamp).unwrap_or_default();
                outcome.count(minutes.entry(minute).or_default());
                outcome.count(&mut total);
            }
            let times = events.iter().map(|e| e.timestamp);
            let indexed = DecisionBatch {
                system: system.system_id(),
                batch_id: id,
                key: key.clone(),
                from: times.clone().min().unwrap_or(SystemTime::UNIX_EPOCH),
                to: times.max().unwrap_or(SystemTime::UNIX_EPOCH),
                events: events.len() as u64,
                allowed: total.allowed,
                denied: total.denied,
                expires: None,
            };
            BatchObject { key, bytes: ndjson_gz(&events), events: events.len(), indexed, minutes }
        })
        .collect()
}

/// `dt=YYYY-MM-DD/hour=HH` of a time, in UTC.
pub fn hour_partition(time: SystemTime) -> String {
    // `decode` admits only timestamps that format, so the fallback is never used.
    let text = format_timestamp(time).unwrap_or_else(|_| "1970-01-01T00".into());
    format!("dt={}/hour={}", &text[..10], &text[11..13])
}

/// The first 32 hex digits of sha256 over the sorted decision ids, one per line.
fn batch_id(events: &[&Event]) -> String {
    let mut ids: Vec<&str> = events.iter().map(|e| e.decision_id.as_str()).collect();
    ids.sort_unstable();
    let mut hash = Sha256::new();
    for id in ids {
        hash.update(id.as_bytes());
        hash.update(b"\n");
    }
    hex::encode(&hash.finalize()[..16])
}

fn ndjson_gz(events: &[&Event]) -> Vec<u8> {
    // Serialise first, then compress in one write: flate2 zero-fills its 32 KiB output buffer
    // on every write, and serde_json writes token by token.
    let mut ndjson = Vec::new();
    for event in events {
        // Writing a `Value` into a `Vec` cannot fail.
        let _ = serde_json::to_writer(&mut ndjson, &event.value);
        ndjson.push(b'\n');
    }
    let mut gz =
        flate2::write::GzEncoder::new(Vec::with_capacity(ndjson.len() / 8), flate2::Compression::default());
    let _ = gz.write_all(&ndjson);
    gz.finish().unwrap_or_default()
}

/// Read a stored object back: the events of a gzip NDJSON object (for tests and the CLI).
pub fn read_ndjson_gz(bytes: &[u8]) -> std::io::Result<Vec<Value>> {
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(bytes).read_to_string(&mut text)?;
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).map_err(std::io::Error::other))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const LIMIT: usize = 1 << 20;

    fn fixture_batch() -> Vec<u8> {
        let path = format!("{}/tests/fixtures/opa-wire/decision-logs-batch.json", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(bytes).expect("gzip");
        gz.finish().expect("gzip")
    }

    fn system() -> SystemKey {
        SystemKey::new("acme", "local", "acme-payments", "payments-cluster")
    }

    fn event_at(id: &str, timestamp: &str) -> Value {
        json!({"decision_id": id, "timestamp": timestamp, "labels": {"system_id": "local/acme-payments/payments-cluster"}})
    }

    #[test]
    fn a_gzip_batch_as_opa_sends_it_decodes_to_its_events_with_every_field_kept() {
        let plain = fixture_batch();
        let events = decode(&gzip(&plain), Some("gzip"), LIMIT).expect("decode");
        let original: Vec<Value> = serde_json::from_slice(&plain).expect("fixture");
        assert_eq!(events.iter().map(|e| &e.value).collect::<Vec<_>>(), original.iter().collect::<Vec<_>>());
        assert_eq!(events[0].decision_id, "a906e53c-34db-45e5-8ff2-358b9cec1859");
        assert_eq!(events[1].value["requested_by"], "127.0.0.1:35494", "unknown-to-edict fields are kept");
        assert_eq!(system_id(&events), Ok(Some("local/acme-payments/payments-cluster")));
        assert_eq!(decode(&plain, None, LIMIT).expect("plain JSON is accepted too"), events);
    }

    #[test]
    fn bodies_that_are_not_gzip_json_arrays_of_events_are_refused_with_the_reason() {
        let not_gzip = decode(b"[]", Some("gzip"), LIMIT).expect_err("not gzip");
        assert!(matches!(not_gzip, DecodeError::NotGzip(_)), "{not_gzip}");
        assert!(matches!(decode(&gzip(b"{oops"), Some("gzip"), LIMIT), Err(DecodeError::NotJson(_))));
        assert_eq!(decode(b"{}", None, LIMIT), Err(DecodeError::NotAnArray));
        assert_eq!(decode(b"[]", Some("br"), LIMIT), Err(DecodeError::UnsupportedEncoding("br".into())));
        let no_id = decode(br#"[{"timestamp":"2026-11-30T17:01:40Z"}]"#, None, LIMIT).expect_err("no id");
        assert_eq!(no_id.to_string(), "event 0: has no decision_id");
        let no_time = decode(br#"[{"decision_id":"d1"}]"#, None, LIMIT).expect_err("no time");
        assert_eq!(no_time.to_string(), "event 0: d1 has no timestamp");
        let bad_time = decode(br#"[{"decision_id":"d1","timestamp":"yesterday"}]"#, None, LIMIT);
        assert!(bad_time.expect_err("bad time").to_string().contains("not RFC 3339"));
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_decompressed_limit() {
        let big = gzip(&vec![b' '; 4 * LIMIT]);
        assert!(big.len() < LIMIT / 100, "compresses well");
        assert_eq!(decode(&big, Some("gzip"), LIMIT), Err(DecodeError::TooLarge { limit: LIMIT }));
        assert_eq!(decode(&vec![b' '; LIMIT + 1], None, LIMIT), Err(DecodeError::TooLarge { limit: LIMIT }));
    }

    #[test]
    fn timestamps_with_offsets_are_read_in_utc() {
        let utc = parse_rfc3339("2026-11-30T17:01:40.5Z").expect("utc");
        assert_eq!(parse_rfc3339("2026-11-30T18:31:40.5+01:30"), Some(utc));
        assert_eq!(parse_rfc3339("2026-11-30T12:01:40.5-05:00"), Some(utc));
        assert_eq!(
            hour_partition(parse_rfc3339("2026-12-01T00:30:00+01:00").expect("t")),
            "dt=2026-11-30/hour=23"
        );
        assert_eq!(parse_rfc3339("2026-11-30T17:01:40+1:30"), None);
    }

    #[test]
    fn events_of_one_batch_must_name_one_system() {
        let body = json!([event_at("d1", "2026-11-30T17:00:00Z"), {"decision_id": "d2", "timestamp": "2026-11-30T17:00:00Z", "labels": {"system_id": "other/ns/x"}}]);
        let events = decode(body.to_string().as_bytes(), None, LIMIT).expect("decode");
        assert!(matches!(system_id(&events), Err(DecodeError::System(_))));
        let unlabelled = decode(br#"[{"decision_id":"d1","timestamp":"2026-11-30T17:00:00Z"}]"#, None, LIMIT);
        assert!(
            system_id(&unlabelled.expect("decode"))
                .expect_err("no label")
                .to_string()
                .contains("labels.system_id")
        );
    }

    #[test]
    fn the_fixture_secret_event_was_masked_by_opa_and_is_left_as_it_is() {
        let mut events = decode(&fixture_batch(), None, LIMIT).expect("decode");
        let before = events[1].value.clone();
        assert!(!remask_secret(&mut events[1].value));
        assert!(!remask_secret(&mut events[0].value), "a Pod event is not a Secret event");
        assert_eq!(events[1].value, before);
    }

    #[test]
    fn an_unmasked_secret_event_loses_its_data_before_storage_and_says_so_in_erased() {
        let mut event = json!({
            "decision_id": "d1", "timestamp": "2026-11-30T17:01:40Z",
            "input": {"request": {"kind": {"kind": "Secret"}, "object": {
                "metadata": {"name": "db", "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{..}"}},
                "data": {"password": "aHVudGVyMg=="}, "stringData": {"token": "t0k3n"}},
                "oldObject": {"metadata": {"name": "db"}, "data": {"password": "b2xk"}}}},
            "erased": ["/input/request/object/metadata/labels"],
        });
        assert!(remask_secret(&mut event));
        assert_eq!(
            event["input"]["request"],
            json!({"kind": {"kind": "Secret"}, "object": {"metadata": {"name": "db"}}, "oldObject": {"metadata": {"name": "db"}}})
        );
        assert_eq!(
            event["erased"],
            json!([
                "/input/request/object/metadata/labels",
                "/input/request/object/data",
                "/input/request/oldObject/data",
                "/input/request/object/metadata/annotations",
                "/input/request/object/stringData",
            ])
        );
        assert!(!remask_secret(&mut event), "a second pass finds nothing left");
    }

    #[test]
    fn a_batch_is_stored_under_its_hour_with_a_key_that_does_not_depend_on_event_order() {
        let events = decode(&fixture_batch(), None, LIMIT).expect("decode");
        let objects = objects(&system(), &events);
        assert_eq!(objects.len(), 1);
        let key = &objects[0].key;
        assert!(
            key.starts_with("decisions/acme/local/acme-payments/payments-cluster/dt=2026-11-30/hour=17/"),
            "{key}"
        );
        assert!(key.ends_with(".json.gz") && key.len() - key.rfind('/').unwrap_or(0) == 1 + 32 + 8, "{key}");
        assert_eq!(
            read_ndjson_gz(&objects[0].bytes).expect("ndjson"),
            events.iter().map(|e| e.value.clone()).collect::<Vec<_>>()
        );
        let reversed: Vec<Event> = events.iter().rev().cloned().collect();
        assert_eq!(super::objects(&system(), &reversed)[0].key, *key, "same decisions, same key");
        assert_eq!(super::objects(&system(), &events), objects, "same batch, same bytes");
    }

    #[test]
    fn a_batch_across_an_hour_boundary_is_split_per_hour() {
        let body = json!([
            event_at("d1", "2026-11-30T16:59:59.9Z"),
            event_at("d2", "2026-11-30T17:00:00Z"),
            event_at("d3", "2026-11-30T16:30:00Z"),
        ]);
        let events = decode(body.to_string().as_bytes(), None, LIMIT).expect("decode");
        let objects = objects(&system(), &events);
        let parts: Vec<(String, usize)> = objects
            .iter()
            .map(|o| {
                let segments: Vec<&str> = o.key.split('/').collect();
                (segments[5..7].join("/"), o.events)
            })
            .collect();
        assert_eq!(parts, [("dt=2026-11-30/hour=16".into(), 2), ("dt=2026-11-30/hour=17".into(), 1)]);
        let first = read_ndjson_gz(&objects[0].bytes).expect("ndjson");
        assert_eq!(
            first.iter().map(|e| e["decision_id"].clone()).collect::<Vec<_>>(),
            [json!("d1"), json!("d3")]
        );
    }
}
