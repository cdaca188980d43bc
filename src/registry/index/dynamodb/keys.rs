//! The key layout of the single table: the key and index attribute names, the sort keys and
//! prefixes of each item type, and the partition keys of a tenant's systems, stacks, revisions,
//! commit log and data keys.

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

pub(super) const VERSION: &str = "version";
pub(super) const SYSTEM_SK: &str = "SYSTEM";
pub(super) const STACK_SK: &str = "STACK";
pub(super) const BIND_PREFIX: &str = "BIND#";
pub(super) const REV_PREFIX: &str = "REV#";
pub(super) const COMMIT_PREFIX: &str = "C#";
pub(super) const KEY_PREFIX: &str = "KEY#";
pub(super) const SYS_PREFIX: &str = "SYS#";
pub(super) const STK_PREFIX: &str = "STK#";
pub(super) const BATCH_PREFIX: &str = "B#";
pub(super) const MINUTE_PREFIX: &str = "M#";
/// Counter attributes of a decision minute beside `total`, `allowed` and `denied`.
pub(super) const TIER_PREFIX: &str = "tier#";
pub(super) const SOURCE_PREFIX: &str = "source#";

pub(super) fn system_pk(tenant: &str, system: &str) -> String {
    format!("T#{tenant}#SYS#{system}")
}

pub(super) fn stack_pk(tenant: &str, stack: &str) -> String {
    format!("T#{tenant}#STK#{stack}")
}

pub(super) fn revisions_pk(tenant: &str, system: &str) -> String {
    format!("T#{tenant}#REVS#{system}")
}

pub(super) fn log_pk(tenant: &str) -> String {
    format!("T#{tenant}#LOG")
}

pub(super) fn keys_pk(tenant: &str) -> String {
    format!("T#{tenant}#KEYS")
}

pub(super) fn commit_sk(sequence: u64) -> String {
    format!("{COMMIT_PREFIX}{sequence:020}")
}

pub(super) fn decisions_pk(tenant: &str, system: &str) -> String {
    format!("T#{tenant}#DEC#{system}")
}

pub(super) fn minutes_pk(tenant: &str, system: &str, shard: u32) -> String {
    format!("T#{tenant}#MIN#{system}#{shard}")
}

/// The GSI partition of every system of a tenant.
pub(super) fn systems_gsi_pk(tenant: &str) -> String {
    format!("T#{tenant}#SYSTEMS")
}

/// The GSI partition of every stack of a tenant and its bindings.
pub(super) fn stacks_gsi_pk(tenant: &str) -> String {
    format!("T#{tenant}#STACKS")
}

/// A binding's sort key in [`stacks_gsi_pk`]: after its stack's item, beside its stack's other
/// bindings.
pub(super) fn binding_gsi_sk(stack: &str, system: &str) -> String {
    format!("{STK_PREFIX}{stack}#{SYS_PREFIX}{system}")
}
