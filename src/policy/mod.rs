//! Rego as OPA sees it: the builtin declarations of an OPA release and the compile gate that
//! refuses what OPA's compiler refuses.

pub mod analyse;
pub mod capabilities;

pub use analyse::{CompileError, ErrorCode, Gate, Parsed, at, check_modules, check_whole, parse};
pub use capabilities::Capabilities;
