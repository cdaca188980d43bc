//! edict: a Kubernetes-native policy control plane for Open Policy Agent.
//!
//! The reconcile path is a pipeline with I/O only at its ends: resolve → validate → build →
//! apply → status. The pure parts (selectors, index, validation, bundle building, Rego checks)
//! live here with no Kubernetes or AWS in them.

pub mod api;
#[cfg(feature = "aws")]
pub mod aws;
pub mod bundle;
pub mod catalog;
#[cfg(feature = "aws")]
pub mod connect;
#[cfg(feature = "aws")]
pub mod controller;
pub mod crds;
pub mod explain;
pub mod glob;
#[cfg(feature = "aws")]
pub mod iam;
pub mod index;
pub mod index_store;
pub mod ingest;
#[cfg(feature = "aws")]
pub mod keys;
pub mod local;
pub mod manifest;
pub mod metrics;
pub mod opa_config;
pub mod pipeline;
pub mod policy;
pub mod problem;
pub mod publishing;
pub mod registry;
pub mod rego;
pub mod retry;
pub mod selector;
pub mod server;
#[cfg(feature = "aws")]
pub mod signing;
pub mod status;
pub mod store;
pub mod workspace;
