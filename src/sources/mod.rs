//! Where objects come from outside the cluster: manifests in files, and `edict run --local`,
//! which watches a directory of them. (The operator's source, the Kubernetes watches, is in
//! `operator::watch`.)

pub mod local;
pub mod manifest;
