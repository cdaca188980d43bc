//! The DynamoDB index: the single-table model of the [module docs](super), with conditional
//! writes on every versioned item, transactions for multi-item changes, and no scans.
//!
//! Errors are classified for the reconcile loop: throttling, 5xx and network failures are
//! [`IndexError::Unavailable`] (retry with back-off); a missing or misshapen table, denied access
//! or bad credentials are [`IndexError::Misconfigured`] with the table, the operation and the
//! service's code and message.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{BuildError, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, Delete, GlobalSecondaryIndex, IndexStatus,
    KeySchemaElement, KeyType, Projection, ProjectionType, Put, ScalarAttributeType, TableDescription,
    TableStatus, TimeToLiveSpecification, TimeToLiveStatus, TransactWriteItem, Update,
};

use super::{
    BindingChange, CommitRecord, IndexError, KeyState, LiveRevision, MAX_TRANSACTION_ITEMS, ReadCounters,
    ReadOp, ReadStats, Result, RevisionRecord, StackRecord, SystemRecord, TenantIndex, WrappedKey, check_id,
    check_tenant, expected_text, format_timestamp, parse_timestamp, stack_what, system_what,
};

/// The partition key attribute.
pub const PK: &str = "PK";
/// The sort key attribute.
pub const SK: &str = "SK";
/// The global secondary index.
pub const GSI1: &str = "GSI1";
/// The GSI's partition key attribute.
pub const GSI1PK: &str = "GSI1PK";
/// The GSI's sort key attribute.
pub const GSI1SK: &str = "GSI1SK";
/// The TTL attribute (epoch seconds).
pub const TTL_ATTRIBUTE: &str = "expiresAt";

const VERSION: &str = "version";
const SYSTEM_SK: &str = "SYSTEM";
const STACK_SK: &str = "STACK";
const HEAD_SK: &str = "HEAD";
const BIND_PREFIX: &str = "BIND#";
const REV_PREFIX: &str = "REV#";
const COMMIT_PREFIX: &str = "C#";
const KEY_PREFIX: &str = "KEY#";
const SYS_PREFIX: &str = "SYS#";

/// How often `append_commit` re-reads the head under contention before giving up.
const APPEND_ATTEMPTS: u32 = 40;

/// Error codes that mean "try again later".
const TRANSIENT_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "Throttling",
    "RequestLimitExceeded",
    "InternalServerError",
    "InternalFailure",
    "ServiceUnavailable",
    "TransactionConflictException",
    "TransactionInProgressException",
    "LimitExceededException",
];

/// Cancellation reasons of a transaction that mean "try again later".
const TRANSIENT_REASONS: &[&str] =
    &["TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded"];

type Item = HashMap<String, AttributeValue>;

fn system_pk(tenant: &str, system: &str) -> String {
    format!("T#{tenant}#SYS#{system}")
}

fn stack_pk(tenant: &str, stack: &str) -> String {
    format!("T#{tenant}#STK#{stack}")
}

fn revisions_pk(tenant: &str, system: &str) -> String {
    format!("T#{tenant}#REVS#{system}")
}

fn log_pk(tenant: &str) -> String {
    format!("T#{tenant}#LOG")
}

fn keys_pk(tenant: &str) -> String {
    format!("T#{tenant}#KEYS")
}

fn commit_sk(sequence: u64) -> String {
    format!("{COMMIT_PREFIX}{sequence:020}")
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([(PK.to_string(), s(pk)), (SK.to_string(), s(sk))])
}

fn names(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// An error and its sources, `: `-separated (what `DisplayErrorContext` shows, without the
/// `Debug` dump it appends).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(e) = source {
        let text = e.to_string();
        if parts.last().is_none_or(|last| !last.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ")
}

/// A transaction cancelled by contention or throttling: transient.
fn contended(table: &str, reasons: &[String]) -> IndexError {
    IndexError::Unavailable {
        table: table.to_string(),
        op: "TransactWriteItems",
        message: format!("transaction cancelled: [{}]", reasons.join(", ")),
    }
}

fn build_error(e: BuildError) -> IndexError {
    IndexError::Invalid { what: "DynamoDB request".into(), message: e.to_string() }
}

/// Whether the table existed or was created by [`DynamoIndex::ensure_table`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableState {
    /// The table was there, with the right shape.
    Existed,
    /// The table was created (with its GSI and TTL) and is active.
    Created,
}

/// The DynamoDB [`TenantIndex`].
#[derive(Debug)]
pub struct DynamoIndex {
    client: Client,
    table: String,
    page_size: Option<u32>,
    wait_timeout: Duration,
    stats: ReadCounters,
}

/// Why a transaction failed.
enum TxFailure {
    /// Cancelled because a condition failed; the reason code of each item, in order.
    Conditions(Vec<String>),
    /// Cancelled because another transaction or writer held an item, or throttled: retrying
    /// may succeed (the reason codes).
    Contended(Vec<String>),
    /// Anything else, classified.
    Other(IndexError),
}

/// The pause after the `attempt`-th lost race for a contended item: exponential up to 250 ms,
/// with full jitter.
fn contention_delay(attempt: u32) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let ceiling = (2u64 << attempt.min(7)).min(250);
    let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
    Duration::from_millis(1 + random % ceiling)
}

impl DynamoIndex {
    /// An index over `table`. Call [`DynamoIndex::ensure_table`] once before use.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoIndex {
            client,
            table: table.into(),
            page_size: None,
            wait_timeout: Duration::from_secs(300),
            stats: ReadCounters::default(),
        }
    }

    /// Read queries in pages of at most `items` (the service's 1 MB page limit applies anyway).
    pub fn with_page_size(mut self, items: u32) -> Self {
        self.page_size = Some(items.max(1));
        self
    }

    /// How long [`DynamoIndex::ensure_table`] waits for a table to become active (default 5 min).
    pub fn with_wait_timeout(mut self, timeout: Duration) -> Self {
        self.wait_timeout = timeout;
        self
    }

    /// The table.
    pub fn table(&self) -> &str {
        &self.table
    }

    fn region(&self) -> String {
        self.client.config().region().map_or_else(|| "<no region>".to_string(), |r| r.to_string())
    }

    /// Check that the table exists with the right shape: key schema `PK` (HASH) / `SK` (RANGE),
    /// string keys, `GSI1` on `GSI1PK` / `GSI1SK` projecting all attributes, TTL on
    /// `expiresAt`. A missing table is created (on demand capacity, with the GSI and TTL,
    /// waiting until it is active) when `create` is set; with `create` an existing table without
    /// TTL gets it enabled. Anything else that differs is [`IndexError::Misconfigured`] naming
    /// every difference.
    pub async fn ensure_table(&self, create: bool) -> Result<TableState> {
        let described = self.client.describe_table().table_name(&self.table).send().await;
        let description = match described {
            Ok(out) => out.table,
            Err(e) if e.code() == Some("ResourceNotFoundException") => {
                if !create {
                    return Err(IndexError::Misconfigured {
                        table: self.table.clone(),
                        op: "DescribeTable",
                        code: "ResourceNotFoundException".into(),
                        message: format!(
                            "table {} does not exist in {}; set spec.storage.dynamodb.create or create it",
                            self.table,
                            self.region()
                        ),
                    });
                }
                if self.create_table().await? {
                    self.wait_active().await?;
                    if let Some(problem) = self.ttl_problem(true).await? {
                        return Err(self.shape_error(vec![problem]));
                    }
                    return Ok(TableState::Created);
                }
                // Another replica is creating it: check what it creates.
                self.wait_active().await?;
                let out = self
                    .client
                    .describe_table()
                    .table_name(&self.table)
                    .send()
                    .await
                    .map_err(|e| self.error("DescribeTable", e))?;
                out.table
            }
            Err(e) => return Err(self.error("DescribeTable", e)),
        };
        self.check_existing(description, create).await
    }

    /// The part of [`DynamoIndex::ensure_table`] for a table that exists.
    async fn check_existing(
        &self,
        description: Option<TableDescription>,
        create: bool,
    ) -> Result<TableState> {
        let Some(description) = description else {
            return Err(IndexError::Misconfigured {
                table: self.table.clone(),
                op: "DescribeTable",
                code: "EmptyResponse".into(),
                message: "the service described no table".into(),
            });
        };
        let mut problems = shape_problems(&description);
        if let Some(status) = description.table_status()
            && !matches!(status, TableStatus::Active | TableStatus::Creating | TableStatus::Updating)
        {
            problems.push(format!("table status is {}", status.as_str()));
        }
        if !problems.is_empty() {
            return Err(self.shape_error(problems));
        }
        if !table_ready(&description) {
            self.wait_active().await?;
        }
        if let Some(problem) = self.ttl_problem(create).await? {
            return Err(self.shape_error(vec![problem]));
        }
        Ok(TableState::Existed)
    }

    fn shape_error(&self, problems: Vec<String>) -> IndexError {
        IndexError::Misconfigured {
            table: self.table.clone(),
            op: "DescribeTable",
            code: "WrongTableShape".into(),
            message: format!(
                "table {} in {} has the wrong shape: {}",
                self.table,
                self.region(),
                problems.join("; ")
            ),
        }
    }

    /// Create the table; `false` when another writer is creating it.
    async fn create_table(&self) -> Result<bool> {
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(build_error)
        };
        let key = |name: &str, key_type: KeyType| {
            KeySchemaElement::builder().attribute_name(name).key_type(key_type).build().map_err(build_error)
        };
        let gsi = GlobalSecondaryIndex::builder()
            .index_name(GSI1)
            .key_schema(key(GSI1PK, KeyType::Hash)?)
            .key_schema(key(GSI1SK, KeyType::Range)?)
            .projection(Projection::builder().projection_type(ProjectionType::All).build())
            .build()
            .map_err(build_error)?;
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr(PK)?)
            .attribute_definitions(attr(SK)?)
            .attribute_definitions(attr(GSI1PK)?)
            .attribute_definitions(attr(GSI1SK)?)
            .key_schema(key(PK, KeyType::Hash)?)
            .key_schema(key(SK, KeyType::Range)?)
            .global_secondary_indexes(gsi)
            .send()
            .await;
        match created {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("ResourceInUseException") => Ok(false),
            Err(e) => Err(self.error("CreateTable", e)),
        }
    }

    async fn wait_active(&self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + self.wait_timeout;
        let mut delay = Duration::from_millis(100);
        loop {
            let out = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(|e| self.error("DescribeTable", e))?;
            let status = out.table.as_ref().and_then(|t| t.table_status()).map_or("UNKNOWN", |s| s.as_str());
            if out.table.as_ref().is_some_and(table_ready) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(IndexError::Unavailable {
                    table: self.table.clone(),
                    op: "DescribeTable",
                    message: format!(
                        "table {} (or its index {GSI1}) is still not active ({status}) after {:?}",
                        self.table, self.wait_timeout
                    ),
                });
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    /// `None` when TTL is on `expiresAt` (enabling it first when `fix`), else what differs.
    async fn ttl_problem(&self, fix: bool) -> Result<Option<String>> {
        let out = self
            .client
            .describe_time_to_live()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| self.error("DescribeTimeToLive", e))?;
        let description = out.time_to_live_description();
        let status = description.and_then(|d| d.time_to_live_status());
        let attribute = description.and_then(|d| d.attribute_name());
        match status {
            Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
                if attribute == Some(TTL_ATTRIBUTE) =>
            {
                Ok(None)
            }
            Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling) => Ok(Some(format!(
                "TTL is on attribute {}, expected {TTL_ATTRIBUTE}",
                attribute.unwrap_or("<none>")
            ))),
            Some(TimeToLiveStatus::Disabling) => {
                Ok(Some(format!("TTL is being disabled; expected it enabled on {TTL_ATTRIBUTE}")))
            }
            _ if fix => {
                let spec = TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(TTL_ATTRIBUTE)
                    .build()
                    .map_err(build_error)?;
                self.client
                    .update_time_to_live()
                    .table_name(&self.table)
                    .time_to_live_specification(spec)
                    .send()
                    .await
                    .map_err(|e| self.error("UpdateTimeToLive", e))?;
                Ok(None)
            }
            _ => Ok(Some(format!("TTL is disabled; expected it enabled on {TTL_ATTRIBUTE}"))),
        }
    }

    /// Classify an SDK error.
    fn error<E>(&self, op: &'static str, err: SdkError<E, HttpResponse>) -> IndexError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match &err {
            SdkError::ServiceError(service) => {
                let code = service.err().code().unwrap_or("Unknown").to_string();
                let message = service.err().message().map_or_else(|| error_chain(&err), str::to_string);
                let status = service.raw().status().as_u16();
                if TRANSIENT_CODES.contains(&code.as_str()) || status >= 500 {
                    IndexError::Unavailable {
                        table: self.table.clone(),
                        op,
                        message: format!("{code}: {message}"),
                    }
                } else if code == "ResourceNotFoundException" {
                    IndexError::Misconfigured {
                        table: self.table.clone(),
                        op,
                        code,
                        message: format!(
                            "{message} (table {} in {}; does it exist? see spec.storage.dynamodb.create)",
                            self.table,
                            self.region()
                        ),
                    }
                } else {
                    IndexError::Misconfigured { table: self.table.clone(), op, code, message }
                }
            }
            SdkError::ConstructionFailure(_) => IndexError::Misconfigured {
                table: self.table.clone(),
                op,
                code: "ConstructionFailure".into(),
                message: error_chain(&err),
            },
            _ => IndexError::Unavailable { table: self.table.clone(), op, message: error_chain(&err) },
        }
    }

    async fn get_item(&self, op: ReadOp, pk: String, sk: &str) -> Result<Option<Item>> {
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
    async fn query(&self, op: ReadOp, q: Query<'_>) -> Result<Vec<Item>> {
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
            let mut attr_names = names(&[("#pk", pk_attr)]);
            if q.sk_prefix.is_some() {
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
    async fn versioned_update(
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
    async fn versioned_delete(
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
    async fn check_version(
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
    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<(), TxFailure> {
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
    async fn transact_chunks(&self, items: Vec<TransactWriteItem>) -> Result<()> {
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

    fn put(
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

    fn delete(&self, key: Item) -> Result<TransactWriteItem> {
        let delete =
            Delete::builder().table_name(&self.table).set_key(Some(key)).build().map_err(build_error)?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    /// Move the commit log head forward to `sequence` unless it is already there or beyond.
    async fn advance_head(&self, tenant: &str, sequence: u64) -> Result<()> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(log_pk(tenant), HEAD_SK)))
            .update_expression("SET #seq = :seq, #tenant = :tenant, #type = :type")
            .condition_expression("attribute_not_exists(#seq) OR #seq < :seq")
            .set_expression_attribute_names(Some(names(&[
                ("#seq", "seq"),
                ("#tenant", "tenant"),
                ("#type", "itemType"),
            ])))
            .set_expression_attribute_values(Some(HashMap::from([
                (":seq".to_string(), n(sequence)),
                (":tenant".to_string(), s(tenant)),
                (":type".to_string(), s("commit-head")),
            ])))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(()),
            Err(e) => Err(self.error("UpdateItem", e)),
        }
    }

    fn commit_item(tenant: &str, sequence: u64, record: &CommitRecord) -> Result<Item> {
        let mut item = key(log_pk(tenant), commit_sk(sequence));
        item.insert("itemType".into(), s("commit"));
        item.insert("tenant".into(), s(tenant));
        item.insert("seq".into(), n(sequence));
        item.insert("actor".into(), s(&record.actor));
        item.insert("action".into(), s(&record.action));
        item.insert("time".into(), s(format_timestamp(record.time)?));
        if let Some(system) = &record.system {
            item.insert("systemId".into(), s(system));
        }
        if let Some(revision) = &record.revision {
            item.insert("revision".into(), s(revision));
        }
        if !record.payload.is_empty() {
            item.insert("payload".into(), AttributeValue::B(Blob::new(record.payload.clone())));
        }
        if let Some(key_id) = &record.payload_key_id {
            item.insert("payloadKeyId".into(), s(key_id));
        }
        Ok(item)
    }
}

/// A query of one partition.
struct Query<'a> {
    gsi: bool,
    pk: String,
    sk_prefix: Option<&'a str>,
    forward: bool,
    limit: Option<usize>,
}

/// Whether the table and all its GSIs are active.
fn table_ready(description: &TableDescription) -> bool {
    description.table_status() == Some(&TableStatus::Active)
        && description
            .global_secondary_indexes()
            .iter()
            .all(|g| g.index_status().is_none_or(|s| *s == IndexStatus::Active))
}

/// `PK (HASH), SK (RANGE)`, hash first.
fn describe_keys(keys: &[KeySchemaElement]) -> String {
    let mut keys: Vec<&KeySchemaElement> = keys.iter().collect();
    keys.sort_by_key(|k| *k.key_type() != KeyType::Hash);
    let parts: Vec<String> =
        keys.iter().map(|k| format!("{} ({})", k.attribute_name(), k.key_type().as_str())).collect();
    if parts.is_empty() { "empty".into() } else { parts.join(", ") }
}

/// What differs between a table and the model.
fn shape_problems(description: &TableDescription) -> Vec<String> {
    let mut problems = Vec::new();
    let expected_keys = format!("{PK} (HASH), {SK} (RANGE)");
    let keys = describe_keys(description.key_schema());
    if keys != expected_keys {
        problems.push(format!("key schema is {keys}, expected {expected_keys}"));
    }
    for attr in [PK, SK, GSI1PK, GSI1SK] {
        if let Some(def) = description.attribute_definitions().iter().find(|d| d.attribute_name() == attr)
            && *def.attribute_type() != ScalarAttributeType::S
        {
            problems.push(format!("attribute {attr} has type {}, expected S", def.attribute_type().as_str()));
        }
    }
    let expected_gsi_keys = format!("{GSI1PK} (HASH), {GSI1SK} (RANGE)");
    match description.global_secondary_indexes().iter().find(|g| g.index_name() == Some(GSI1)) {
        None => problems.push(format!(
            "global secondary index {GSI1} is missing, expected one with keys {expected_gsi_keys} projecting ALL"
        )),
        Some(gsi) => {
            let keys = describe_keys(gsi.key_schema());
            if keys != expected_gsi_keys {
                problems.push(format!("index {GSI1} has keys {keys}, expected {expected_gsi_keys}"));
            }
            let projection = gsi.projection().and_then(|p| p.projection_type());
            if projection != Some(&ProjectionType::All) {
                problems.push(format!(
                    "index {GSI1} projects {}, expected ALL",
                    projection.map_or("nothing", |p| p.as_str())
                ));
            }
        }
    }
    problems
}

/// Typed access to an item's attributes; anything missing or mistyped is
/// [`IndexError::Corrupt`] naming the item and the attribute.
struct Decoder<'a> {
    item: &'a Item,
}

impl<'a> Decoder<'a> {
    fn new(item: &'a Item) -> Self {
        Decoder { item }
    }

    fn what(&self) -> String {
        let part = |a: &str| self.item.get(a).and_then(|v| v.as_s().ok()).map_or("?", |v| v.as_str());
        format!("{}/{}", part(PK), part(SK))
    }

    fn corrupt(&self, attr: &str, problem: &str) -> IndexError {
        IndexError::Corrupt { what: self.what(), message: format!("attribute {attr} {problem}") }
    }

    fn opt_str(&self, attr: &str) -> Result<Option<&'a str>> {
        match self.item.get(attr) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::S(v)) => Ok(Some(v.as_str())),
            Some(_) => Err(self.corrupt(attr, "is not a string")),
        }
    }

    fn str(&self, attr: &str) -> Result<&'a str> {
        self.opt_str(attr)?.ok_or_else(|| self.corrupt(attr, "is missing"))
    }

    fn u64(&self, attr: &str) -> Result<u64> {
        match self.item.get(attr) {
            Some(AttributeValue::N(v)) => {
                v.parse().map_err(|_| self.corrupt(attr, "is not an unsigned integer"))
            }
            Some(_) => Err(self.corrupt(attr, "is not a number")),
            None => Err(self.corrupt(attr, "is missing")),
        }
    }

    fn time(&self, attr: &str) -> Result<SystemTime> {
        parse_timestamp(self.str(attr)?).ok_or_else(|| self.corrupt(attr, "is not an RFC 3339 UTC timestamp"))
    }

    fn bytes(&self, attr: &str) -> Result<Vec<u8>> {
        match self.item.get(attr) {
            None => Ok(Vec::new()),
            Some(AttributeValue::B(b)) => Ok(b.as_ref().to_vec()),
            Some(_) => Err(self.corrupt(attr, "is not binary")),
        }
    }

    fn map(&self, attr: &str) -> Result<Option<&'a Item>> {
        match self.item.get(attr) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::M(m)) => Ok(Some(m)),
            Some(_) => Err(self.corrupt(attr, "is not a map")),
        }
    }

    fn string_map(&self, attr: &str) -> Result<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        for (k, v) in self.map(attr)?.into_iter().flatten() {
            let v = v.as_s().map_err(|_| self.corrupt(attr, &format!("has a non-string value for {k:?}")))?;
            out.insert(k.clone(), v.clone());
        }
        Ok(out)
    }

    fn number_map(&self, attr: &str) -> Result<BTreeMap<String, i64>> {
        let mut out = BTreeMap::new();
        for (k, v) in self.map(attr)?.into_iter().flatten() {
            let v = v
                .as_n()
                .ok()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| self.corrupt(attr, &format!("has a non-integer value for {k:?}")))?;
            out.insert(k.clone(), v);
        }
        Ok(out)
    }

    fn system(&self) -> Result<SystemRecord> {
        let live = match self.map("live")? {
            None => None,
            Some(live) => {
                let d = Decoder::new(live);
                let field = |a: &str| {
                    d.str(a).map(str::to_string).map_err(|_| self.corrupt("live", &format!("lacks {a}")))
                };
                Some(LiveRevision {
                    revision: field("revision")?,
                    key: field("key")?,
                    etag: field("etag")?,
                    sha256: field("sha256")?,
                    inputs: d.number_map("inputs").map_err(|_| self.corrupt("live", "has bad inputs"))?,
                })
            }
        };
        Ok(SystemRecord {
            id: self.str("systemId")?.to_string(),
            system_type: self.str("systemType")?.to_string(),
            labels: self.string_map("labels")?,
            live,
            version: self.u64(VERSION)?,
        })
    }

    fn stack(&self) -> Result<StackRecord> {
        let selector = serde_json::from_str(self.str("selector")?)
            .map_err(|e| self.corrupt("selector", &format!("is not JSON: {e}")))?;
        Ok(StackRecord {
            id: self.str("stackId")?.to_string(),
            stack_type: self.str("stackType")?.to_string(),
            selector,
            version: self.u64(VERSION)?,
        })
    }

    fn revision(&self) -> Result<RevisionRecord> {
        Ok(RevisionRecord {
            revision: self.str("revision")?.to_string(),
            key: self.str("key")?.to_string(),
            etag: self.str("etag")?.to_string(),
            size: self.u64("size")?,
            sha256: self.str("sha256")?.to_string(),
            created: self.time("createdAt")?,
        })
    }

    fn commit(&self) -> Result<CommitRecord> {
        Ok(CommitRecord {
            sequence: self.u64("seq")?,
            actor: self.str("actor")?.to_string(),
            action: self.str("action")?.to_string(),
            system: self.opt_str("systemId")?.map(str::to_string),
            revision: self.opt_str("revision")?.map(str::to_string),
            time: self.time("time")?,
            payload: self.bytes("payload")?,
            payload_key_id: self.opt_str("payloadKeyId")?.map(str::to_string),
        })
    }

    fn data_key(&self) -> Result<WrappedKey> {
        let state = self.str("state")?;
        Ok(WrappedKey {
            key_id: self.str("keyId")?.to_string(),
            ciphertext: self.bytes("ciphertext")?,
            created: self.time("createdAt")?,
            state: KeyState::parse(state).ok_or_else(|| self.corrupt("state", &format!("is {state:?}")))?,
        })
    }
}

fn live_value(live: &LiveRevision) -> AttributeValue {
    let inputs = live.inputs.iter().map(|(k, v)| (k.clone(), n(v))).collect();
    AttributeValue::M(HashMap::from([
        ("revision".to_string(), s(&live.revision)),
        ("key".to_string(), s(&live.key)),
        ("etag".to_string(), s(&live.etag)),
        ("sha256".to_string(), s(&live.sha256)),
        ("inputs".to_string(), AttributeValue::M(inputs)),
    ]))
}

#[async_trait]
impl TenantIndex for DynamoIndex {
    async fn get_system(&self, tenant: &str, system: &str) -> Result<Option<SystemRecord>> {
        check_tenant(tenant)?;
        check_id("system", system)?;
        let item = self.get_item(ReadOp::GetSystem, system_pk(tenant, system), SYSTEM_SK).await?;
        item.as_ref().map(|i| Decoder::new(i).system()).transpose()
    }

    async fn put_system(
        &self,
        tenant: &str,
        record: &SystemRecord,
        expected_version: Option<u64>,
    ) -> Result<u64> {
        check_tenant(tenant)?;
        check_id("system", &record.id)?;
        let labels = record.labels.iter().map(|(k, v)| (k.clone(), s(v))).collect();
        let fields = vec![
            ("itemType", s("system")),
            ("tenant", s(tenant)),
            ("systemId", s(&record.id)),
            ("systemType", s(&record.system_type)),
            ("labels", AttributeValue::M(labels)),
        ];
        self.versioned_update(
            system_what(tenant, &record.id),
            system_pk(tenant, &record.id),
            SYSTEM_SK,
            fields,
            expected_version,
        )
        .await
    }

    async fn set_live(
        &self,
        tenant: &str,
        system: &str,
        live: &LiveRevision,
        expected_version: u64,
    ) -> Result<u64> {
        check_tenant(tenant)?;
        check_id("system", system)?;
        self.versioned_update(
            system_what(tenant, system),
            system_pk(tenant, system),
            SYSTEM_SK,
            vec![("live", live_value(live))],
            Some(expected_version),
        )
        .await
    }

    async fn delete_system(&self, tenant: &str, system: &str, expected_version: Option<u64>) -> Result<()> {
        check_tenant(tenant)?;
        check_id("system", system)?;
        let pk = system_pk(tenant, system);
        let what = || system_what(tenant, system);
        self.check_version(what(), pk.clone(), SYSTEM_SK, expected_version).await?;
        let q = Query { gsi: false, pk: pk.clone(), sk_prefix: None, forward: true, limit: None };
        let mut deletes = Vec::new();
        for item in self.query(ReadOp::Maintenance, q).await? {
            let sk = Decoder::new(&item).str(SK)?;
            if sk != SYSTEM_SK {
                deletes.push(self.delete(key(pk.clone(), sk))?);
            }
        }
        self.transact_chunks(deletes).await?;
        self.versioned_delete(what(), pk, SYSTEM_SK, expected_version).await
    }

    async fn get_stack(&self, tenant: &str, stack: &str) -> Result<Option<StackRecord>> {
        check_tenant(tenant)?;
        check_id("stack", stack)?;
        let item = self.get_item(ReadOp::GetStack, stack_pk(tenant, stack), STACK_SK).await?;
        item.as_ref().map(|i| Decoder::new(i).stack()).transpose()
    }

    async fn put_stack(
        &self,
        tenant: &str,
        record: &StackRecord,
        expected_version: Option<u64>,
    ) -> Result<u64> {
        check_tenant(tenant)?;
        check_id("stack", &record.id)?;
        let fields = vec![
            ("itemType", s("stack")),
            ("tenant", s(tenant)),
            ("stackId", s(&record.id)),
            ("stackType", s(&record.stack_type)),
            ("selector", s(record.selector.to_string())),
        ];
        self.versioned_update(
            stack_what(tenant, &record.id),
            stack_pk(tenant, &record.id),
            STACK_SK,
            fields,
            expected_version,
        )
        .await
    }

    async fn delete_stack(&self, tenant: &str, stack: &str, expected_version: Option<u64>) -> Result<()> {
        check_tenant(tenant)?;
        check_id("stack", stack)?;
        let pk = stack_pk(tenant, stack);
        let what = || stack_what(tenant, stack);
        self.check_version(what(), pk.clone(), STACK_SK, expected_version).await?;
        self.set_bindings(tenant, stack, &[]).await?;
        self.versioned_delete(what(), pk, STACK_SK, expected_version).await
    }

    async fn set_bindings(&self, tenant: &str, stack: &str, systems: &[String]) -> Result<BindingChange> {
        check_tenant(tenant)?;
        check_id("stack", stack)?;
        for system in systems {
            check_id("system", system)?;
        }
        let q = Query {
            gsi: true,
            pk: stack_pk(tenant, stack),
            sk_prefix: Some(SYS_PREFIX),
            forward: true,
            limit: None,
        };
        let mut current = BTreeSet::new();
        for item in self.query(ReadOp::Maintenance, q).await? {
            current.insert(Decoder::new(&item).str("systemId")?.to_string());
        }
        let desired: BTreeSet<String> = systems.iter().cloned().collect();
        let change = BindingChange {
            added: desired.difference(&current).cloned().collect(),
            removed: current.difference(&desired).cloned().collect(),
        };
        let mut writes = Vec::with_capacity(change.added.len() + change.removed.len());
        for system in &change.added {
            let mut item = key(system_pk(tenant, system), format!("{BIND_PREFIX}{stack}"));
            item.insert(GSI1PK.into(), s(stack_pk(tenant, stack)));
            item.insert(GSI1SK.into(), s(format!("{SYS_PREFIX}{system}")));
            item.insert("itemType".into(), s("binding"));
            item.insert("tenant".into(), s(tenant));
            item.insert("systemId".into(), s(system));
            item.insert("stackId".into(), s(stack));
            writes.push(self.put(item, None)?);
        }
        for system in &change.removed {
            writes.push(self.delete(key(system_pk(tenant, system), format!("{BIND_PREFIX}{stack}")))?);
        }
        self.transact_chunks(writes).await?;
        Ok(change)
    }

    async fn systems_of_stack(&self, tenant: &str, stack: &str) -> Result<Vec<String>> {
        check_tenant(tenant)?;
        check_id("stack", stack)?;
        let q = Query {
            gsi: true,
            pk: stack_pk(tenant, stack),
            sk_prefix: Some(SYS_PREFIX),
            forward: true,
            limit: None,
        };
        let items = self.query(ReadOp::SystemsOfStack, q).await?;
        items.iter().map(|i| Decoder::new(i).str("systemId").map(str::to_string)).collect()
    }

    async fn stacks_of_system(&self, tenant: &str, system: &str) -> Result<Vec<String>> {
        check_tenant(tenant)?;
        check_id("system", system)?;
        let q = Query {
            gsi: false,
            pk: system_pk(tenant, system),
            sk_prefix: Some(BIND_PREFIX),
            forward: true,
            limit: None,
        };
        let items = self.query(ReadOp::StacksOfSystem, q).await?;
        items.iter().map(|i| Decoder::new(i).str("stackId").map(str::to_string)).collect()
    }

    async fn record_revision(&self, tenant: &str, system: &str, revision: &RevisionRecord) -> Result<()> {
        check_tenant(tenant)?;
        check_id("system", system)?;
        check_id("revision", &revision.revision)?;
        let created = format_timestamp(revision.created)?;
        let mut item = key(system_pk(tenant, system), format!("{REV_PREFIX}{}", revision.revision));
        item.insert(GSI1PK.into(), s(revisions_pk(tenant, system)));
        item.insert(GSI1SK.into(), s(format!("{created}#{}", revision.revision)));
        item.insert("itemType".into(), s("revision"));
        item.insert("tenant".into(), s(tenant));
        item.insert("systemId".into(), s(system));
        item.insert("revision".into(), s(&revision.revision));
        item.insert("key".into(), s(&revision.key));
        item.insert("etag".into(), s(&revision.etag));
        item.insert("size".into(), n(revision.size));
        item.insert("sha256".into(), s(&revision.sha256));
        item.insert("createdAt".into(), s(created));
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .send()
            .await;
        match result {
            // Already recorded: keep the first record.
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(()),
            Err(e) => Err(self.error("PutItem", e)),
            Ok(_) => Ok(()),
        }
    }

    async fn revisions(
        &self,
        tenant: &str,
        system: &str,
        limit: Option<usize>,
    ) -> Result<Vec<RevisionRecord>> {
        check_tenant(tenant)?;
        check_id("system", system)?;
        let q = Query { gsi: true, pk: revisions_pk(tenant, system), sk_prefix: None, forward: false, limit };
        let items = self.query(ReadOp::Revisions, q).await?;
        items.iter().map(|i| Decoder::new(i).revision()).collect()
    }

    async fn delete_revision(&self, tenant: &str, system: &str, revision: &str) -> Result<()> {
        check_tenant(tenant)?;
        check_id("system", system)?;
        check_id("revision", revision)?;
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(system_pk(tenant, system), format!("{REV_PREFIX}{revision}"))))
            .send()
            .await
            .map_err(|e| self.error("DeleteItem", e))?;
        Ok(())
    }

    async fn append_commit(&self, tenant: &str, record: &CommitRecord) -> Result<u64> {
        // Every publish of the tenant appends here, so concurrent publishers contend for the
        // head item: back off exponentially with jitter so they spread out instead of colliding
        // in lock step.
        check_tenant(tenant)?;
        for attempt in 0..APPEND_ATTEMPTS {
            let head = match self.get_item(ReadOp::Maintenance, log_pk(tenant), HEAD_SK).await? {
                Some(item) => Some(Decoder::new(&item).u64("seq")?),
                None => None,
            };
            let sequence = head.unwrap_or(0) + 1;
            let mut values = HashMap::from([
                (":next".to_string(), n(sequence)),
                (":tenant".to_string(), s(tenant)),
                (":type".to_string(), s("commit-head")),
            ]);
            let mut head_names = names(&[("#seq", "seq"), ("#tenant", "tenant"), ("#type", "itemType")]);
            let condition = match head {
                None => {
                    head_names.insert("#pk".into(), PK.into());
                    "attribute_not_exists(#pk)"
                }
                Some(h) => {
                    values.insert(":head".into(), n(h));
                    "#seq = :head"
                }
            };
            let update = Update::builder()
                .table_name(&self.table)
                .set_key(Some(key(log_pk(tenant), HEAD_SK)))
                .update_expression("SET #seq = :next, #tenant = :tenant, #type = :type")
                .condition_expression(condition)
                .set_expression_attribute_names(Some(head_names))
                .set_expression_attribute_values(Some(values))
                .build()
                .map_err(build_error)?;
            let entry = self.put(
                Self::commit_item(tenant, sequence, record)?,
                Some(("attribute_not_exists(#pk)", names(&[("#pk", PK)]))),
            )?;
            match self.transact(vec![TransactWriteItem::builder().update(update).build(), entry]).await {
                Ok(()) => return Ok(sequence),
                Err(TxFailure::Other(e)) => return Err(e),
                Err(TxFailure::Contended(_)) => {
                    tokio::time::sleep(contention_delay(attempt)).await;
                }
                Err(TxFailure::Conditions(_)) => {
                    // Either another writer moved the head (re-read it), or an entry exists past
                    // the head (written by put_commit, or a crash between its two writes): move
                    // the head over it.
                    if self
                        .get_item(ReadOp::Maintenance, log_pk(tenant), &commit_sk(sequence))
                        .await?
                        .is_some()
                    {
                        self.advance_head(tenant, sequence).await?;
                    } else {
                        tokio::time::sleep(contention_delay(attempt)).await;
                    }
                }
            }
        }
        Err(IndexError::Unavailable {
            table: self.table.clone(),
            op: "TransactWriteItems",
            message: format!(
                "the commit log of tenant {tenant} is contended: no sequence after {APPEND_ATTEMPTS} attempts"
            ),
        })
    }

    async fn put_commit(&self, tenant: &str, sequence: u64, record: &CommitRecord) -> Result<()> {
        check_tenant(tenant)?;
        if sequence == 0 {
            return Err(IndexError::Invalid {
                what: "commit sequence".into(),
                message: "sequences start at 1".into(),
            });
        }
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
            Ok(_) => {}
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {
                return Err(IndexError::Conflict {
                    what: format!("commit {sequence} of tenant {tenant}"),
                    expected: "absent".into(),
                    found: "an existing entry".into(),
                });
            }
            Err(e) => return Err(self.error("PutItem", e)),
        }
        self.advance_head(tenant, sequence).await
    }

    async fn commits(&self, tenant: &str, limit: usize) -> Result<Vec<CommitRecord>> {
        check_tenant(tenant)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let q = Query {
            gsi: false,
            pk: log_pk(tenant),
            sk_prefix: Some(COMMIT_PREFIX),
            forward: false,
            limit: Some(limit),
        };
        let items = self.query(ReadOp::Commits, q).await?;
        items.iter().map(|i| Decoder::new(i).commit()).collect()
    }

    async fn put_data_key(&self, tenant: &str, new_key: &WrappedKey) -> Result<()> {
        check_tenant(tenant)?;
        check_id("data key", &new_key.key_id)?;
        let q = Query {
            gsi: false,
            pk: keys_pk(tenant),
            sk_prefix: Some(KEY_PREFIX),
            forward: true,
            limit: None,
        };
        let mut existing = Vec::new();
        for item in self.query(ReadOp::Maintenance, q).await? {
            existing.push(Decoder::new(&item).data_key()?);
        }
        let what = format!("data key {} of tenant {tenant}", new_key.key_id);
        if existing.iter().any(|k| k.key_id == new_key.key_id) {
            return Err(IndexError::Conflict {
                what,
                expected: "absent".into(),
                found: "an existing key".into(),
            });
        }
        let mut item = key(keys_pk(tenant), format!("{KEY_PREFIX}{}", new_key.key_id));
        item.insert("itemType".into(), s("data-key"));
        item.insert("tenant".into(), s(tenant));
        item.insert("keyId".into(), s(&new_key.key_id));
        item.insert("ciphertext".into(), AttributeValue::B(Blob::new(new_key.ciphertext.clone())));
        item.insert("createdAt".into(), s(format_timestamp(new_key.created)?));
        item.insert("state".into(), s(new_key.state.as_str()));
        let mut writes = vec![self.put(item, Some(("attribute_not_exists(#pk)", names(&[("#pk", PK)]))))?];
        let retiring: Vec<&WrappedKey> = if new_key.state == KeyState::Current {
            existing.iter().filter(|k| k.state == KeyState::Current).collect()
        } else {
            Vec::new()
        };
        for old in &retiring {
            let update = Update::builder()
                .table_name(&self.table)
                .set_key(Some(key(keys_pk(tenant), format!("{KEY_PREFIX}{}", old.key_id))))
                .update_expression("SET #state = :retired")
                .condition_expression("#state = :current")
                .set_expression_attribute_names(Some(names(&[("#state", "state")])))
                .set_expression_attribute_values(Some(HashMap::from([
                    (":retired".to_string(), s(KeyState::Retired.as_str())),
                    (":current".to_string(), s(KeyState::Current.as_str())),
                ])))
                .build()
                .map_err(build_error)?;
            writes.push(TransactWriteItem::builder().update(update).build());
        }
        if writes.len() > MAX_TRANSACTION_ITEMS {
            return Err(IndexError::Invalid {
                what: format!("data keys of tenant {tenant}"),
                message: format!("{} current keys to retire in one transaction", retiring.len()),
            });
        }
        match self.transact(writes).await {
            Ok(()) => Ok(()),
            Err(TxFailure::Other(e)) => Err(e),
            Err(TxFailure::Contended(reasons)) => Err(contended(&self.table, &reasons)),
            Err(TxFailure::Conditions(reasons)) => {
                let found = if reasons.first().map(String::as_str) == Some("ConditionalCheckFailed") {
                    "an existing key".to_string()
                } else {
                    "a concurrent rotation".to_string()
                };
                let current: Vec<&str> = retiring.iter().map(|k| k.key_id.as_str()).collect();
                Err(IndexError::Conflict {
                    what,
                    expected: format!("absent, with current key(s) [{}]", current.join(", ")),
                    found,
                })
            }
        }
    }

    async fn data_keys(&self, tenant: &str) -> Result<Vec<WrappedKey>> {
        check_tenant(tenant)?;
        let q = Query {
            gsi: false,
            pk: keys_pk(tenant),
            sk_prefix: Some(KEY_PREFIX),
            forward: true,
            limit: None,
        };
        let items = self.query(ReadOp::DataKeys, q).await?;
        let mut keys = items.iter().map(|i| Decoder::new(i).data_key()).collect::<Result<Vec<_>>>()?;
        keys.sort_by(|a, b| (b.created, &b.key_id).cmp(&(a.created, &a.key_id)));
        Ok(keys)
    }

    fn read_stats(&self, op: ReadOp) -> ReadStats {
        self.stats.get(op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_tenant_scoped_and_ordered() {
        assert_eq!(system_pk("acme", "c/ns/web"), "T#acme#SYS#c/ns/web");
        assert_eq!(stack_pk("acme", "admin/base"), "T#acme#STK#admin/base");
        assert_eq!(commit_sk(42), "C#00000000000000000042");
        assert!(commit_sk(9) < commit_sk(10));
        assert!(COMMIT_PREFIX < HEAD_SK);
    }

    #[test]
    fn shape_problems_name_differences() {
        let ks = |name: &str, t: KeyType| {
            KeySchemaElement::builder().attribute_name(name).key_type(t).build().unwrap()
        };
        let bad = TableDescription::builder()
            .key_schema(ks("id", KeyType::Hash))
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("PK")
                    .attribute_type(ScalarAttributeType::N)
                    .build()
                    .unwrap(),
            )
            .build();
        let problems = shape_problems(&bad).join("; ");
        assert!(problems.contains("key schema is id (HASH), expected PK (HASH), SK (RANGE)"), "{problems}");
        assert!(problems.contains("attribute PK has type N, expected S"), "{problems}");
        assert!(problems.contains("global secondary index GSI1 is missing"), "{problems}");
        let good = TableDescription::builder()
            .key_schema(ks("SK", KeyType::Range))
            .key_schema(ks("PK", KeyType::Hash))
            .global_secondary_indexes(
                aws_sdk_dynamodb::types::GlobalSecondaryIndexDescription::builder()
                    .index_name(GSI1)
                    .key_schema(ks(GSI1PK, KeyType::Hash))
                    .key_schema(ks(GSI1SK, KeyType::Range))
                    .projection(Projection::builder().projection_type(ProjectionType::All).build())
                    .build(),
            )
            .build();
        assert_eq!(shape_problems(&good), Vec::<String>::new());
    }
}
