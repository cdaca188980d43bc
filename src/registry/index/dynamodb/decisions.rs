//! Decision batches and per-minute counters in the table (layout in
//! [`crate::registry::index::decisions`]): the batch item and its counter updates in one
//! transaction, conditional on the batch item being new; reads by sort-key range.

use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};

use super::DynamoIndex;
use super::errors::{TxFailure, build_error, contended};
use super::items::{Decoder, Item, key, n, names, s};
use super::keys::{
    BATCH_PREFIX, MINUTE_PREFIX, SOURCE_PREFIX, TIER_PREFIX, TTL_ATTRIBUTE, decisions_pk, minutes_pk,
};
use super::requests::Query;
use crate::registry::index::decisions::{MINUTE_SHARDS, batch_range, expired, minute_of, shard_of};
use crate::registry::index::{
    DecisionBatch, IndexError, MAX_TRANSACTION_ITEMS, MinuteCounts, ReadOp, Result, check_id,
    format_timestamp,
};

fn epoch_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl DynamoIndex {
    pub(super) async fn put_decisions(
        &self,
        tenant: &str,
        batch: &DecisionBatch,
        minutes: &BTreeMap<String, MinuteCounts>,
    ) -> Result<bool> {
        batch.check()?;
        if minutes.len() + 1 > MAX_TRANSACTION_ITEMS {
            return Err(IndexError::Invalid {
                what: format!("decision batch {}", batch.batch_id),
                message: format!("it spans {} minutes", minutes.len()),
            });
        }
        let mut item =
            key(decisions_pk(tenant, &batch.system), format!("{BATCH_PREFIX}{}", batch.sort_key()?));
        item.insert("itemType".into(), s("decision-batch"));
        item.insert("tenant".into(), s(tenant));
        item.insert("systemId".into(), s(&batch.system));
        item.insert("batchId".into(), s(&batch.batch_id));
        item.insert("key".into(), s(&batch.key));
        item.insert("from".into(), s(format_timestamp(batch.from)?));
        item.insert("to".into(), s(format_timestamp(batch.to)?));
        item.insert("events".into(), n(batch.events));
        item.insert("allowed".into(), n(batch.allowed));
        item.insert("denied".into(), n(batch.denied));
        if let Some(at) = batch.expires {
            item.insert(TTL_ATTRIBUTE.into(), n(epoch_seconds(at)));
        }
        let mut writes =
            vec![self.put(item, Some(("attribute_not_exists(#pk)", names(&[("#pk", super::PK)]))))?];
        let shard = shard_of(&batch.batch_id);
        for (minute, counts) in minutes {
            writes.push(self.minute_update(tenant, &batch.system, shard, minute, counts, batch.expires)?);
        }
        match self.transact(writes).await {
            Ok(()) => Ok(true),
            // Only the batch item has a condition: it is there, so are its counts.
            Err(TxFailure::Conditions(_)) => Ok(false),
            Err(TxFailure::Contended(reasons)) => Err(contended(&self.table, &reasons)),
            Err(TxFailure::Other(e)) => Err(e),
        }
    }

    /// `ADD` a minute's counts to its counter item (created by the first `ADD`).
    fn minute_update(
        &self,
        tenant: &str,
        system: &str,
        shard: u32,
        minute: &str,
        counts: &MinuteCounts,
        expires: Option<SystemTime>,
    ) -> Result<TransactWriteItem> {
        let mut attr_names = HashMap::new();
        let mut values = HashMap::new();
        let mut adds = Vec::new();
        let counters = [
            ("total".to_string(), counts.total),
            ("allowed".into(), counts.allowed),
            ("denied".into(), counts.denied),
        ]
        .into_iter()
        .chain(counts.by_tier.iter().map(|(t, c)| (format!("{TIER_PREFIX}{t}"), *c)))
        .chain(counts.by_source.iter().map(|(src, c)| (format!("{SOURCE_PREFIX}{src}"), *c)));
        for (i, (attr, count)) in counters.enumerate() {
            attr_names.insert(format!("#c{i}"), attr);
            values.insert(format!(":c{i}"), n(count));
            adds.push(format!("#c{i} :c{i}"));
        }
        let mut sets = Vec::new();
        for (i, (attr, value)) in [
            ("itemType", s("decision-minute")),
            ("tenant", s(tenant)),
            ("systemId", s(system)),
            ("minute", s(minute)),
        ]
        .into_iter()
        .chain(expires.map(|at| (TTL_ATTRIBUTE, n(epoch_seconds(at)))))
        .enumerate()
        {
            attr_names.insert(format!("#s{i}"), attr.to_string());
            values.insert(format!(":s{i}"), value);
            sets.push(format!("#s{i} = :s{i}"));
        }
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(minutes_pk(tenant, system, shard), format!("{MINUTE_PREFIX}{minute}"))))
            .update_expression(format!("SET {} ADD {}", sets.join(", "), adds.join(", ")))
            .set_expression_attribute_names(Some(attr_names))
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(build_error)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    pub(super) async fn get_decision_batches(
        &self,
        tenant: &str,
        system: &str,
        from: SystemTime,
        to: SystemTime,
    ) -> Result<Vec<DecisionBatch>> {
        check_id("system", system)?;
        let (low, high) = batch_range(from, to)?;
        let q = Query {
            gsi: false,
            pk: decisions_pk(tenant, system),
            sk_prefix: None,
            sk_between: Some((format!("{BATCH_PREFIX}{low}"), format!("{BATCH_PREFIX}{high}"))),
            forward: true,
            limit: None,
        };
        let now = SystemTime::now();
        let mut out = Vec::new();
        for item in self.query(ReadOp::DecisionBatches, q).await? {
            let batch = decision_batch(&item)?;
            if batch.overlaps(from, to) && !expired(batch.expires, now) {
                out.push(batch);
            }
        }
        Ok(out)
    }

    pub(super) async fn get_decision_minutes(
        &self,
        tenant: &str,
        system: &str,
        from: SystemTime,
        to: SystemTime,
    ) -> Result<BTreeMap<String, MinuteCounts>> {
        check_id("system", system)?;
        let (first, last) = (minute_of(from)?, minute_of(to)?);
        let now = SystemTime::now();
        let mut out: BTreeMap<String, MinuteCounts> = BTreeMap::new();
        for shard in 0..MINUTE_SHARDS {
            let q = Query {
                gsi: false,
                pk: minutes_pk(tenant, system, shard),
                sk_prefix: None,
                sk_between: Some((format!("{MINUTE_PREFIX}{first}"), format!("{MINUTE_PREFIX}{last}"))),
                forward: true,
                limit: None,
            };
            for item in self.query(ReadOp::DecisionMinutes, q).await? {
                let (minute, counts, expires) = minute_counts(&item)?;
                if !expired(expires, now) {
                    out.entry(minute).or_default().add(&counts);
                }
            }
        }
        Ok(out)
    }
}

fn expires_of(item: &Item) -> Option<SystemTime> {
    let secs = item.get(TTL_ATTRIBUTE)?.as_n().ok()?.parse().ok()?;
    Some(UNIX_EPOCH + std::time::Duration::from_secs(secs))
}

fn decision_batch(item: &Item) -> Result<DecisionBatch> {
    let d = Decoder::new(item);
    Ok(DecisionBatch {
        system: d.str("systemId")?.to_string(),
        batch_id: d.str("batchId")?.to_string(),
        key: d.str("key")?.to_string(),
        from: d.time("from")?,
        to: d.time("to")?,
        events: d.u64("events")?,
        allowed: d.u64("allowed")?,
        denied: d.u64("denied")?,
        expires: expires_of(item),
    })
}

fn minute_counts(item: &Item) -> Result<(String, MinuteCounts, Option<SystemTime>)> {
    let d = Decoder::new(item);
    let mut counts = MinuteCounts {
        total: d.u64("total")?,
        allowed: d.u64("allowed")?,
        denied: d.u64("denied")?,
        ..MinuteCounts::default()
    };
    for (attr, value) in item {
        let count = || match value {
            AttributeValue::N(_) => d.u64(attr),
            _ => Err(IndexError::Corrupt {
                what: d.str("minute").unwrap_or("?").to_string(),
                message: format!("attribute {attr} is not a number"),
            }),
        };
        if let Some(tier) = attr.strip_prefix(TIER_PREFIX) {
            let tier = tier.parse().map_err(|_| IndexError::Corrupt {
                what: format!("decision minute {}", d.str("minute").unwrap_or("?")),
                message: format!("attribute {attr} names no tier"),
            })?;
            counts.by_tier.insert(tier, count()?);
        } else if let Some(source) = attr.strip_prefix(SOURCE_PREFIX) {
            counts.by_source.insert(source.to_string(), count()?);
        }
    }
    Ok((d.str("minute")?.to_string(), counts, expires_of(item)))
}
