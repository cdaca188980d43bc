//! SDK error → [`IndexError`] classification: which service codes and transaction cancellation
//! reasons are transient, and why a transaction failed.

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{BuildError, ProvideErrorMetadata, SdkError};

use super::DynamoIndex;
use crate::registry::index::IndexError;

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
pub(super) const TRANSIENT_REASONS: &[&str] =
    &["TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded"];

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
pub(super) fn contended(table: &str, reasons: &[String]) -> IndexError {
    IndexError::Unavailable {
        table: table.to_string(),
        op: "TransactWriteItems",
        message: format!("transaction cancelled: [{}]", reasons.join(", ")),
    }
}

pub(super) fn build_error(e: BuildError) -> IndexError {
    IndexError::Invalid { what: "DynamoDB request".into(), message: e.to_string() }
}

/// Why a transaction failed.
pub(super) enum TxFailure {
    /// Cancelled because a condition failed; the reason code of each item, in order.
    Conditions(Vec<String>),
    /// Cancelled because another transaction or writer held an item, or throttled: retrying
    /// may succeed (the reason codes).
    Contended(Vec<String>),
    /// Anything else, classified.
    Other(IndexError),
}

impl DynamoIndex {
    /// Classify an SDK error.
    pub(super) fn error<E>(&self, op: &'static str, err: SdkError<E, HttpResponse>) -> IndexError
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
}
