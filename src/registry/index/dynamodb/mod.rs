//! The DynamoDB index: the single-table model of the [module docs](super), with conditional
//! writes on every versioned item, transactions for multi-item changes, and no scans.
//!
//! Errors are classified for the reconcile loop: throttling, 5xx and network failures are
//! [`IndexError::Unavailable`] (retry with back-off); a missing or misshapen table, denied access
//! or bad credentials are [`IndexError::Misconfigured`] with the table, the operation and the
//! service's code and message.

mod decisions;
mod errors;
mod items;
mod keys;
mod requests;
mod table;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};

use self::errors::{TxFailure, build_error, contended};
use self::items::{Decoder, key, live_value, n, names, s};
use self::keys::{
    BIND_PREFIX, COMMIT_PREFIX, KEY_PREFIX, REV_PREFIX, STACK_SK, STK_PREFIX, SYS_PREFIX, SYSTEM_SK,
    binding_gsi_sk, keys_pk, log_pk, revisions_pk, stack_pk, stacks_gsi_pk, system_pk, systems_gsi_pk,
};
pub use self::keys::{GSI1, GSI1PK, GSI1SK, PK, SK, TTL_ATTRIBUTE};
use self::requests::Query;
pub use self::table::TableState;
use super::{
    BindingChange, CommitRecord, DecisionBatch, IndexError, KeyState, LiveRevision, MAX_TRANSACTION_ITEMS,
    MinuteCounts, ReadCounters, ReadOp, ReadStats, Result, RevisionRecord, StackListing, StackRecord,
    SystemRecord, TenantIndex, WrappedKey, check_id, check_tenant, format_timestamp, stack_what, system_what,
};

/// How often `append_commit` draws another id when the one it drew was taken.
const APPEND_ATTEMPTS: u32 = 8;

/// The DynamoDB [`TenantIndex`].
#[derive(Debug)]
pub struct DynamoIndex {
    client: Client,
    table: String,
    page_size: Option<u32>,
    wait_timeout: Duration,
    stats: ReadCounters,
    /// The largest commit id this index appended or was given: its next one comes after.
    last_commit: AtomicU64,
    /// Appends whose drawn id was taken.
    append_retries: AtomicU64,
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
            last_commit: AtomicU64::new(0),
            append_retries: AtomicU64::new(0),
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
            (GSI1PK, s(systems_gsi_pk(tenant))),
            (GSI1SK, s(format!("{SYS_PREFIX}{}", record.id))),
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
            // The listing keys too: items written before the multi-cluster view get them.
            vec![
                ("live", live_value(live)?),
                (GSI1PK, s(systems_gsi_pk(tenant))),
                (GSI1SK, s(format!("{SYS_PREFIX}{system}"))),
            ],
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
        let q = Query {
            gsi: false,
            pk: pk.clone(),
            sk_prefix: None,
            sk_between: None,
            forward: true,
            limit: None,
        };
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
            (GSI1PK, s(stacks_gsi_pk(tenant))),
            (GSI1SK, s(format!("{STK_PREFIX}{}", record.id))),
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
        let prefix = binding_gsi_sk(stack, "");
        let q = Query {
            gsi: true,
            pk: stacks_gsi_pk(tenant),
            sk_prefix: Some(&prefix),
            sk_between: None,
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
            writes.push(self.put(binding_item(tenant, stack, system), None)?);
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
        let prefix = binding_gsi_sk(stack, "");
        let q = Query {
            gsi: true,
            pk: stacks_gsi_pk(tenant),
            sk_prefix: Some(&prefix),
            sk_between: None,
            forward: true,
            limit: None,
        };
        let items = self.query(ReadOp::SystemsOfStack, q).await?;
        items.iter().map(|i| Decoder::new(i).str("systemId").map(str::to_string)).collect()
    }

    async fn bind_system(
        &self,
        tenant: &str,
        system: &str,
        added: &[String],
        removed: &[String],
    ) -> Result<()> {
        check_tenant(tenant)?;
        check_id("system", system)?;
        for stack in added.iter().chain(removed) {
            check_id("stack", stack)?;
        }
        // Item by item, not in a transaction: each binding stands alone, and a publish that
        // fails half-way finds the same difference again when it is retried.
        for stack in added {
            let item = binding_item(tenant, stack, system);
            let put = self.client.put_item().table_name(&self.table).set_item(Some(item));
            put.send().await.map_err(|e| self.error("PutItem", e))?;
        }
        for stack in removed {
            let key = key(system_pk(tenant, system), format!("{BIND_PREFIX}{stack}"));
            let delete = self.client.delete_item().table_name(&self.table).set_key(Some(key));
            delete.send().await.map_err(|e| self.error("DeleteItem", e))?;
        }
        Ok(())
    }

    async fn systems(&self, tenant: &str) -> Result<Vec<SystemRecord>> {
        check_tenant(tenant)?;
        let q = Query {
            gsi: true,
            pk: systems_gsi_pk(tenant),
            sk_prefix: None,
            sk_between: None,
            forward: true,
            limit: None,
        };
        let items = self.query(ReadOp::Systems, q).await?;
        items.iter().map(|i| Decoder::new(i).system()).collect()
    }

    async fn stacks(&self, tenant: &str) -> Result<Vec<StackListing>> {
        check_tenant(tenant)?;
        let q = Query {
            gsi: true,
            pk: stacks_gsi_pk(tenant),
            sk_prefix: None,
            sk_between: None,
            forward: true,
            limit: None,
        };
        let mut listed: std::collections::BTreeMap<String, StackListing> = std::collections::BTreeMap::new();
        let new = |id: &str| StackListing { id: id.to_string(), record: None, systems: Vec::new() };
        for item in self.query(ReadOp::Stacks, q).await? {
            let d = Decoder::new(&item);
            let stack = d.str("stackId")?;
            let listing = listed.entry(stack.to_string()).or_insert_with(|| new(stack));
            match d.str("itemType")? {
                "stack" => listing.record = Some(d.stack()?),
                _ => listing.systems.push(d.str("systemId")?.to_string()),
            }
        }
        Ok(listed.into_values().collect())
    }

    async fn stacks_of_system(&self, tenant: &str, system: &str) -> Result<Vec<String>> {
        check_tenant(tenant)?;
        check_id("system", system)?;
        let q = Query {
            gsi: false,
            pk: system_pk(tenant, system),
            sk_prefix: Some(BIND_PREFIX),
            sk_between: None,
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
        let q = Query {
            gsi: true,
            pk: revisions_pk(tenant, system),
            sk_prefix: None,
            sk_between: None,
            forward: false,
            limit,
        };
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
        // No head item: the entry's key is its time and a random draw (see `commit_id`), written
        // only if absent. Parallel publishers of one tenant each write their own item and never
        // wait on each other; a draw another writer took in the same millisecond draws again.
        check_tenant(tenant)?;
        for _ in 0..APPEND_ATTEMPTS {
            let sequence = self.next_commit_id(record.time);
            match self.put_commit_item(tenant, sequence, record).await {
                Ok(()) => return Ok(sequence),
                Err(IndexError::Conflict { .. }) => {
                    self.append_retries.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
        Err(IndexError::Unavailable {
            table: self.table.clone(),
            op: "PutItem",
            message: format!(
                "the commit log of tenant {tenant}: every id drawn was taken ({APPEND_ATTEMPTS} attempts)"
            ),
        })
    }

    async fn put_commit(&self, tenant: &str, sequence: u64, record: &CommitRecord) -> Result<()> {
        check_tenant(tenant)?;
        if sequence == 0 {
            return Err(IndexError::Invalid { what: "commit id".into(), message: "ids start at 1".into() });
        }
        self.put_commit_item(tenant, sequence, record).await?;
        self.last_commit.fetch_max(sequence, Ordering::Relaxed);
        Ok(())
    }

    fn append_retries(&self) -> u64 {
        self.append_retries.load(Ordering::Relaxed)
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
            sk_between: None,
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
            sk_between: None,
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
            sk_between: None,
            forward: true,
            limit: None,
        };
        let items = self.query(ReadOp::DataKeys, q).await?;
        let mut keys = items.iter().map(|i| Decoder::new(i).data_key()).collect::<Result<Vec<_>>>()?;
        keys.sort_by(|a, b| (b.created, &b.key_id).cmp(&(a.created, &a.key_id)));
        Ok(keys)
    }

    async fn record_decisions(
        &self,
        tenant: &str,
        batch: &DecisionBatch,
        minutes: &BTreeMap<String, MinuteCounts>,
    ) -> Result<bool> {
        check_tenant(tenant)?;
        self.put_decisions(tenant, batch, minutes).await
    }

    async fn decision_batches(
        &self,
        tenant: &str,
        system: &str,
        from: SystemTime,
        to: SystemTime,
    ) -> Result<Vec<DecisionBatch>> {
        check_tenant(tenant)?;
        self.get_decision_batches(tenant, system, from, to).await
    }

    async fn decision_minutes(
        &self,
        tenant: &str,
        system: &str,
        from: SystemTime,
        to: SystemTime,
    ) -> Result<BTreeMap<String, MinuteCounts>> {
        check_tenant(tenant)?;
        self.get_decision_minutes(tenant, system, from, to).await
    }

    fn read_stats(&self, op: ReadOp) -> ReadStats {
        self.stats.get(op)
    }
}

/// The item binding `system` to `stack`: in the system's partition, listed under the tenant's
/// stacks.
fn binding_item(tenant: &str, stack: &str, system: &str) -> self::items::Item {
    let mut item = key(system_pk(tenant, system), format!("{BIND_PREFIX}{stack}"));
    item.insert(GSI1PK.into(), s(stacks_gsi_pk(tenant)));
    item.insert(GSI1SK.into(), s(binding_gsi_sk(stack, system)));
    item.insert("itemType".into(), s("binding"));
    item.insert("tenant".into(), s(tenant));
    item.insert("systemId".into(), s(system));
    item.insert("stackId".into(), s(stack));
    item
}
