//! edict: a Kubernetes-native policy control plane for Open Policy Agent.
//!
//! The reconcile path is a pipeline with I/O only at its ends: resolve → validate → build →
//! apply → status. The layers, from the inside out:
//!
//! - [`api`]: the CRD types, data only; [`model`]: what every layer names.
//! - [`select`]: globs, label selectors and the binding index (which Stacks bind which Systems).
//! - [`policy`]: Rego: the compile gate equal to OPA's compiler, tests, evaluation, explanations.
//! - [`bundle`]: the pure bundle compiler (entrypoint, masks, archive, signing payload).
//! - [`engine`]: no I/O: catalog, build pipeline, workspace, status of every object.
//! - [`sources`]: manifests in files and `run --local`; the operator's watches are in [`operator`].
//! - [`registry`]: the only publisher: object stores, the tenant index, keys and signing.
//! - [`identity`]: IAM roles for the OPAs (IRSA).
//! - [`ingest`]: what OPAs report back: status and decision logs.
//! - [`operator`]: the in-cluster run loop, wiring, leader election, status writer, events.
//! - [`server`]: the HTTP side: OPA's bundle API (ETag, long polling), ingestion, probes.

pub mod api;
pub mod bundle;
pub mod crds;
pub mod engine;
#[doc(hidden)]
pub mod fixtures;
#[cfg(feature = "aws")]
pub mod identity;
pub mod ingest;
pub mod metrics;
pub mod model;
pub mod opa_config;
#[cfg(feature = "aws")]
pub mod operator;
pub mod policy;
pub mod registry;
pub mod retry;
pub mod select;
pub mod server;
pub mod sources;
