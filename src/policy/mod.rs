//! Rego as OPA sees it: the builtin declarations of an OPA release, the compile gate that
//! refuses what OPA's compiler refuses, Rego tests and evaluation (regorus), and explanations
//! of a decision.

pub mod analyse;
pub mod capabilities;
pub mod explain;
pub mod rego;

pub use analyse::{CompileError, ErrorCode, Gate, Parsed, at, check_modules, check_whole, parse};
pub use capabilities::Capabilities;
