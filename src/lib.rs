//! edict: a Kubernetes-native policy control plane for Open Policy Agent.
//!
//! The reconcile path is a pipeline with I/O only at its ends: resolve → validate → build →
//! apply → status. The pure parts (selectors, index, validation, bundle building, Rego checks)
//! live here with no Kubernetes or AWS in them.

pub mod api;
pub mod bundle;
pub mod index;
pub mod manifest;
pub mod problem;
pub mod rego;
