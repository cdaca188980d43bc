//! The requests every operation is built from: consistent reads and paged queries (counted in
//! the read statistics), versioned updates and deletes with their conflict diagnosis, and
//! transactions.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem};

use super::DynamoIndex;
use super::errors::{TRANSIENT_REASONS, TxFailure, build_error, contended};
use super::items::{Decoder, Item, key, n, names, s};
use super::keys::{GSI1, GSI1PK, GSI1SK, PK, SK, VERSION};
use crate::registry::index::{
    CommitRecord, IndexError, MAX_TRANSACTION_ITEMS, ReadOp, Result, commit_id, expected_text,
};

/// A random number (from the standard library's per-hasher random keys; nothing here needs
/// more than that).
fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new().build_hasher().finish()
}

impl DynamoIndex {
    pub(super) async fn get_item(&self, op: ReadOp, pk: String, sk: &str) -> Result<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .consistent_read(true)
            .send()
            .await;
        match out {
            Ok(out) => {
                self.stats.record(op, 1, u64::from(out.item.is_some()));
                Ok(out.item)
            }
            Err(e) => {
                self.stats.record(op, 1, 0);
                Err(self.error("GetItem", e))
            }
        }
    }

    /// Query one partition (of the table, or of `GSI1` with `gsi`), optionally restricted to a
    /// sort-key prefix, following pages until done or `limit` items.
    pub(super) async fn query(&self, op: ReadOp, q: Query<'_>) -> Result<Vec<Item>> {
        let (pk_attr, sk_attr) = if q.gsi { (GSI1PK, GSI1SK) } else { (PK, SK) };
        let mut items = Vec::new();
        let mut start = None;
        let (mut requests, mut read) = (0u64, 0u64);
        let result = loop {
            let remaining = q.limit.map(|l| l.saturating_sub(items.len()));
            if remaining == Some(0) {
                break Ok(());
            }
            let page = match (remaining, self.page_size) {
                (Some(r), Some(p)) => Some(r.min(p as usize)),
                (Some(r), None) => Some(r),
                (None, p) => p.map(|p| p as usize),
            };
            let mut condition = "#pk = :pk".to_string();
            let mut values = HashMap::from([(":pk".to_string(), s(q.pk.clone()))]);
            if let Some(prefix) = q.sk_prefix {
                condition.push_str(" AND begins_with(#sk, :prefix)");
                values.insert(":prefix".into(), s(prefix));
            }
            if let Some((low, high)) = &q.sk_between {
                condition.push_str(" AND #sk BETWEEN :low AND :high");
                values.insert(":low".into(), s(low));
                values.insert(":high".into(), s(high));
            }
            let mut attr_names = names(&[("#pk", pk_attr)]);
            if q.sk_prefix.is_some() || q.sk_between.is_some() {
                attr_names.insert("#sk".into(), sk_attr.into());
            }
            let mut request = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression(condition)
                .set_expression_attribute_names(Some(attr_names))
                .set_expression_attribute_values(Some(values))
                .scan_index_forward(q.forward)
                .set_exclusive_start_key(start.take())
                .set_limit(page.map(|p| i32::try_from(p).unwrap_or(i32::MAX)));
            if q.gsi {
                request = request.index_name(GSI1);
            } else {
                request = request.consistent_read(true);
            }
            requests += 1;
            match request.send().await {
                Ok(out) => {
                    let page_items = out.items.unwrap_or_default();
                    read += u64::try_from(out.scanned_count).unwrap_or(0).max(page_items.len() as u64);
                    items.extend(page_items);
                    start = out.last_evaluated_key.filter(|k| !k.is_empty());
                    if start.is_none() {
                        break Ok(());
                    }
                }
                Err(e) => break Err(self.error("Query", e)),
            }
        };
        self.stats.record(op, requests, read);
        result.map(|()| items)
    }

    /// What a failed condition on a versioned item means: `NotFound` or `Conflict` with what
    /// the table holds now.
    async fn diagnose(&self, what: String, pk: String, sk: &str, expected: Option<u64>) -> IndexError {
        let found = match self.get_item(ReadOp::Maintenance, pk, sk).await {
            Ok(Some(item)) => Some(
                Decoder::new(&item)
                    .u64(VERSION)
                    .map_or_else(|_| "an unversioned item".into(), |v| format!("version {v}")),
            ),
            Ok(None) => None,
            Err(e) => Some(format!("unknown ({e})")),
        };
        match (expected, found) {
            (Some(_), None) => IndexError::NotFound { what },
            (expected, found) => IndexError::Conflict {
                what,
                expected: expected_text(expected),
                found: found.unwrap_or_else(|| "absent".into()),
            },
        }
    }

    /// `SET` `fields` and the next version on the item, if it is at `expected` (absent for
    /// `None`). Returns the new version.
    pub(super) async fn versioned_update(
        &self,
        what: String,
        pk: String,
        sk: &'static str,
        fields: Vec<(&'static str, AttributeValue)>,
        expected: Option<u64>,
    ) -> Result<u64> {
        let version = expected.map_or(1, |v| v + 1);
        let mut attr_names = HashMap::new();
        let mut values = HashMap::new();
        let mut sets = Vec::new();
        for (i, (attr, value)) in fields.into_iter().chain([(VERSION, n(version))]).enumerate() {
            attr_names.insert(format!("#a{i}"), attr.to_string());
            values.insert(format!(":a{i}"), value);
            sets.push(format!("#a{i} = :a{i}"));
        }
        let condition = match expected {
            None => {
                attr_names.insert("#pk".into(), PK.into());
                "attribute_not_exists(#pk)"
            }
            Some(v) => {
                attr_names.insert("#v".into(), VERSION.into());
                values.insert(":expected".into(), n(v));
                "#v = :expected"
            }
        };
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(pk.clone(), sk)))
            .update_expression(format!("SET {}", sets.join(", ")))
            .condition_expression(condition)
            .set_expression_attribute_names(Some(attr_names))
            .set_expression_attribute_values(Some(values))
            .send()
            .await;
        match result {
            Ok(_) => Ok(version),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {
                Err(self.diagnose(what, pk, sk, expected).await)
            }
            Err(e) => Err(self.error("UpdateItem", e)),
        }
    }

    /// Delete a versioned item: at `expected`, or whatever is there for `None`.
    pub(super) async fn versioned_delete(
        &self,
        what: String,
        pk: String,
        sk: &'static str,
        expected: Option<u64>,
    ) -> Result<()> {
        let mut request =
            self.client.delete_item().table_name(&self.table).set_key(Some(key(pk.clone(), sk)));
        if let Some(v) = expected {
            request = request
                .condition_expression("#v = :expected")
                .expression_attribute_names("#v", VERSION)
                .expression_attribute_values(":expected", n(v));
        }
        match request.send().await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {
                Err(self.diagnose(what, pk, sk, expected).await)
            }
            Err(e) => Err(self.error("DeleteItem", e)),
        }
    }

    /// Check a version expectation before a multi-step delete.
    pub(super) async fn check_version(
        &self,
        what: String,
        pk: String,
        sk: &'static str,
        expected: Option<u64>,
    ) -> Result<()> {
        let Some(expected) = expected else { return Ok(()) };
        let item = self.get_item(ReadOp::Maintenance, pk, sk).await?;
        let found = match &item {
            Some(item) => Some(Decoder::new(item).u64(VERSION)?),
            None => None,
        };
        match found {
            Some(v) if v == expected => Ok(()),
            Some(v) => Err(IndexError::Conflict {
                what,
                expected: expected_text(Some(expected)),
                found: format!("version {v}"),
            }),
            None => Err(IndexError::NotFound { what }),
        }
    }

    /// One `TransactWriteItems` call.
    pub(super) async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<(), TxFailure> {
        if items.is_empty() {
            return Ok(());
        }
        let err = match self.client.transact_write_items().set_transact_items(Some(items)).send().await {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        let reasons = match err.as_service_error() {
            Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => {
                let mut reasons: Vec<String> = cancelled
                    .cancellation_reasons()
                    .iter()
                    .map(|r| r.code().unwrap_or("None").to_string())
                    .collect();
                if reasons.is_empty() {
                    // "Transaction cancelled, please refer cancellation reasons for specific
                    // reasons [None, ConditionalCheckFailed]"
                    let message = cancelled.message().unwrap_or_default();
                    if let (Some(open), Some(close)) = (message.rfind('['), message.rfind(']'))
                        && open < close
                    {
                        reasons = message[open + 1..close].split(',').map(|r| r.trim().to_string()).collect();
                    }
                }
                reasons
            }
            _ => return Err(TxFailure::Other(self.error("TransactWriteItems", err))),
        };
        if reasons.iter().any(|r| TRANSIENT_REASONS.contains(&r.as_str())) {
            return Err(TxFailure::Contended(reasons));
        }
        if reasons.iter().any(|r| r == "ConditionalCheckFailed") {
            return Err(TxFailure::Conditions(reasons));
        }
        Err(TxFailure::Other(IndexError::Misconfigured {
            table: self.table.clone(),
            op: "TransactWriteItems",
            code: "TransactionCanceledException".into(),
            message: format!("transaction cancelled: [{}]", reasons.join(", ")),
        }))
    }

    /// Run unconditional writes in transactions of at most [`MAX_TRANSACTION_ITEMS`].
    pub(super) async fn transact_chunks(&self, items: Vec<TransactWriteItem>) -> Result<()> {
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            let chunk: Vec<_> = items.by_ref().take(MAX_TRANSACTION_ITEMS).collect();
            match self.transact(chunk).await {
                Ok(()) => {}
                Err(TxFailure::Other(e)) => return Err(e),
                Err(TxFailure::Contended(reasons)) => return Err(contended(&self.table, &reasons)),
                Err(TxFailure::Conditions(reasons)) => {
                    return Err(IndexError::Conflict {
                        what: format!("a batch of writes to table {}", self.table),
                        expected: "no conditions".into(),
                        found: format!("failed conditions [{}]", reasons.join(", ")),
                    });
                }
            }
        }
        Ok(())
    }

    pub(super) fn put(
        &self,
        item: Item,
        condition: Option<(&str, HashMap<String, String>)>,
    ) -> Result<TransactWriteItem> {
        let mut put = Put::builder().table_name(&self.table).set_item(Some(item));
        if let Some((expression, attr_names)) = condition {
            put = put.condition_expression(expression).set_expression_attribute_names(Some(attr_names));
        }
        Ok(TransactWriteItem::builder().put(put.build().map_err(build_error)?).build())
    }

    pub(super) fn delete(&self, key: Item) -> Result<TransactWriteItem> {
        let delete =
            Delete::builder().table_name(&self.table).set_key(Some(key)).build().map_err(build_error)?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    /// Write a commit log entry at `sequence` unless an entry is there
    /// ([`IndexError::Conflict`]).
    pub(super) async fn put_commit_item(
        &self,
        tenant: &str,
        sequence: u64,
        record: &CommitRecord,
    ) -> Result<()> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(Self::commit_item(tenant, sequence, record)?))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Err(IndexError::Conflict {
                what: format!("commit {sequence} of tenant {tenant}"),
                expected: "absent".into(),
                found: "an existing entry".into(),
            }),
            Err(e) => Err(self.error("PutItem", e)),
        }
    }

    /// The id of an entry made at `time`: see [`commit_id`], with a random draw below the
    /// milliseconds, after every id this index used.
    pub(super) fn next_commit_id(&self, time: SystemTime) -> u64 {
        let mut last = self.last_commit.load(Ordering::Relaxed);
        loop {
            let id = commit_id(time, random(), last);
            match self.last_commit.compare_exchange_weak(last, id, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return id,
                Err(now) => last = now,
            }
        }
    }
}

/// A query of one partition.
pub(super) struct Query<'a> {
    pub(super) gsi: bool,
    pub(super) pk: String,
    pub(super) sk_prefix: Option<&'a str>,
    /// Sort keys from the first to the second, both included.
    pub(super) sk_between: Option<(String, String)>,
    pub(super) forward: bool,
    pub(super) limit: Option<usize>,
}
