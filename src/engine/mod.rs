//! The engine, with no I/O in it: the catalog of objects, the build pipeline (resolve →
//! validate → build → check), the workspace that holds a run's builds, and the status of every
//! object computed from them.

pub mod catalog;
pub mod pipeline;
pub mod problem;
pub mod replay;
pub mod status;
pub mod workspace;
