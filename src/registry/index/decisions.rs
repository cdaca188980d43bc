//! What the index keeps of recorded decisions: one item per stored decision object (a batch, or
//! the part of a batch in one UTC hour) and per-minute counters of each System.
//!
//! | Item | `PK` | `SK` | Other attributes |
//! |---|---|---|---|
//! | decision batch | `T#<t>#DEC#<sys>` | `B#<to>#<batch id>` | `systemId`, `batchId`, `key`, `from`, `to`, `events`, `allowed`, `denied`, `expiresAt` |
//! | decision minute | `T#<t>#MIN#<sys>#<shard>` | `M#<YYYY-MM-DDTHH:MM>` | `systemId`, `minute`, `total`, `allowed`, `denied`, `tier#<n>`, `source#<source>`, `expiresAt` |
//!
//! - "The decisions of System X between T1 and T2" is one `Query` on `T#<t>#DEC#<sys>` with
//!   `SK BETWEEN B#<T1> AND B#<T2 + 1 h>`: a batch is sorted by its last decision (`to`), and
//!   spans at most an hour (one hourly partition), so every batch holding decisions of the
//!   range sorts in it; the few that end after T2 but start after it too are dropped.
//! - Counters are `ADD`s, one update per minute a batch spans, in the same transaction as the
//!   batch item, which is written only if absent: a batch OPA sends again (after a 5xx) is
//!   counted once, and the counts always equal the decisions indexed.
//! - A System's counters are spread over [`MINUTE_SHARDS`] partitions (the batch id picks one),
//!   so one busy System's writes do not all land on one partition; reading a range is one
//!   `Query` per shard, summed.
//! - Both items carry `expiresAt` (epoch seconds, the table's TTL): the Tenant's
//!   `retention.decisionDays` after the batch's last decision. DynamoDB deletes expired items
//!   lazily, so reads leave out items already expired.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::{IndexError, Result, format_timestamp};

/// The partitions a System's per-minute counters are spread over.
pub const MINUTE_SHARDS: u32 = 4;

/// The longest time one batch item may span: stored decision objects are hourly.
pub const MAX_BATCH_SPAN: Duration = Duration::from_secs(3600);

/// A stored decision object, as indexed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionBatch {
    /// The System (`<cluster>/<namespace>/<name>`).
    pub system: String,
    /// The batch's id (the object's name without `.json.gz`: a hash of its decision ids).
    pub batch_id: String,
    /// The object's key in the Tenant's store.
    pub key: String,
    /// The time of its first decision.
    pub from: SystemTime,
    /// The time of its last decision.
    pub to: SystemTime,
    /// Decisions in it.
    pub events: u64,
    /// Of those, allowed.
    pub allowed: u64,
    /// Of those, denied.
    pub denied: u64,
    /// When the index forgets it (`None`: never), to the second (DynamoDB's TTL is in epoch
    /// seconds; every index keeps it so).
    pub expires: Option<SystemTime>,
}

impl DecisionBatch {
    /// Check what every index checks before recording a batch.
    pub(crate) fn check(&self) -> Result<()> {
        super::check_id("system", &self.system)?;
        super::check_id("batch", &self.batch_id)?;
        let span = self.to.duration_since(self.from).map_err(|_| IndexError::Invalid {
            what: format!("decision batch {}", self.batch_id),
            message: "its last decision is before its first".into(),
        })?;
        if span > MAX_BATCH_SPAN {
            return Err(IndexError::Invalid {
                what: format!("decision batch {}", self.batch_id),
                message: format!("it spans {span:?}; a batch item covers at most one hour"),
            });
        }
        Ok(())
    }

    /// Its sort key within the System's batches: its last decision's time, then its id.
    pub(crate) fn sort_key(&self) -> Result<String> {
        Ok(format!("{}#{}", format_timestamp(self.to)?, self.batch_id))
    }

    /// Whether it holds decisions between `from` and `to`.
    pub(crate) fn overlaps(&self, from: SystemTime, to: SystemTime) -> bool {
        self.from <= to && self.to >= from
    }
}

/// `time` without its fraction of a second, as the TTL attribute keeps it.
pub(crate) fn to_the_second(time: SystemTime) -> SystemTime {
    let secs = time.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    std::time::UNIX_EPOCH + Duration::from_secs(secs)
}

/// Whether an item with this expiry is gone at `now`.
pub(crate) fn expired(expires: Option<SystemTime>, now: SystemTime) -> bool {
    expires.is_some_and(|at| at <= now)
}

/// The sort keys bounding the batches that may hold decisions between `from` and `to`.
pub(crate) fn batch_range(from: SystemTime, to: SystemTime) -> Result<(String, String)> {
    let last = to.checked_add(MAX_BATCH_SPAN).unwrap_or(to);
    // `~` sorts after every character of a batch id (hex), so the bound includes every id.
    Ok((format_timestamp(from)?, format!("{}~", format_timestamp(last)?)))
}

/// Decisions of one minute (or summed over many).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinuteCounts {
    /// Decisions.
    pub total: u64,
    /// Allowed.
    pub allowed: u64,
    /// Denied.
    pub denied: u64,
    /// By deciding tier (`9` is the default decision).
    pub by_tier: BTreeMap<u64, u64>,
    /// By deciding source (`stack/<ns>/<name>`, `system`).
    pub by_source: BTreeMap<String, u64>,
}

impl MinuteCounts {
    /// Add `other`'s counts to these.
    pub fn add(&mut self, other: &MinuteCounts) {
        self.total += other.total;
        self.allowed += other.allowed;
        self.denied += other.denied;
        for (tier, n) in &other.by_tier {
            *self.by_tier.entry(*tier).or_default() += n;
        }
        for (source, n) in &other.by_source {
            *self.by_source.entry(source.clone()).or_default() += n;
        }
    }
}

/// The minute of a time, as counters are keyed (`YYYY-MM-DDTHH:MM`, UTC).
pub fn minute_of(time: SystemTime) -> Result<String> {
    Ok(format_timestamp(time)?[..16].to_string())
}

/// The counter shard a batch's counts go to.
pub fn shard_of(batch_id: &str) -> u32 {
    let hash = batch_id.bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    hash % MINUTE_SHARDS
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    fn batch(from: u64, to: u64) -> DecisionBatch {
        DecisionBatch {
            system: "c1/ns/web".into(),
            batch_id: "ab12".into(),
            key: "decisions/…".into(),
            from: UNIX_EPOCH + Duration::from_secs(from),
            to: UNIX_EPOCH + Duration::from_secs(to),
            events: 1,
            allowed: 1,
            denied: 0,
            expires: None,
        }
    }

    #[test]
    fn a_batch_spans_at_most_an_hour_and_ends_after_it_starts() {
        assert!(batch(0, 3600).check().is_ok());
        assert!(matches!(batch(0, 3601).check(), Err(IndexError::Invalid { .. })));
        assert!(matches!(batch(10, 9).check(), Err(IndexError::Invalid { .. })));
    }

    #[test]
    fn the_range_holds_every_batch_that_overlaps_it() {
        let at = |s| UNIX_EPOCH + Duration::from_secs(s);
        let (low, high) = batch_range(at(7200), at(7300)).unwrap();
        // Ends inside; ends within an hour after (may start inside); ends before.
        for (b, inside) in
            [(batch(7000, 7250), true), (batch(7290, 10_000), true), (batch(3600, 7199), false)]
        {
            let sk = b.sort_key().unwrap();
            assert_eq!(sk >= low && sk <= high, inside, "{sk} in [{low}, {high}]");
            assert_eq!(b.overlaps(at(7200), at(7300)), inside);
        }
        // Sorted in but starting after the range: dropped by `overlaps`.
        assert!(!batch(7400, 7500).overlaps(at(7200), at(7300)));
    }

    #[test]
    fn counts_add_up_and_minutes_are_utc() {
        let mut a = MinuteCounts { total: 2, allowed: 1, denied: 1, ..Default::default() };
        a.by_tier.insert(3, 1);
        let mut b = a.clone();
        b.by_source.insert("system".into(), 2);
        a.add(&b);
        assert_eq!((a.total, a.allowed, a.denied, a.by_tier[&3], a.by_source["system"]), (4, 2, 2, 2, 2));
        assert_eq!(minute_of(UNIX_EPOCH + Duration::from_secs(1_735_787_045)).unwrap(), "2025-01-02T03:04");
        assert!((0..100).map(|i| shard_of(&format!("{i:x}"))).all(|s| s < MINUTE_SHARDS));
    }
}
