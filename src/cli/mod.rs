//! The CLI's verbs that are more than a few lines, one module per group.

pub mod decisions;
pub mod directory;
