//! The table's shape: checking it against the model, creating it with its GSI and TTL, and
//! waiting until it is active.

use std::time::Duration;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, IndexStatus, KeySchemaElement, KeyType,
    Projection, ProjectionType, ScalarAttributeType, TableDescription, TableStatus, TimeToLiveSpecification,
    TimeToLiveStatus,
};

use super::DynamoIndex;
use super::errors::build_error;
use super::keys::{GSI1, GSI1PK, GSI1SK, PK, SK, TTL_ATTRIBUTE};
use crate::registry::index::{IndexError, Result};

/// Whether the table existed or was created by [`DynamoIndex::ensure_table`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableState {
    /// The table was there, with the right shape.
    Existed,
    /// The table was created (with its GSI and TTL) and is active.
    Created,
}

impl DynamoIndex {
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
pub(super) fn shape_problems(description: &TableDescription) -> Vec<String> {
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
