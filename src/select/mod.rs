//! Which Stacks bind which Systems: OPA-style globs, label selectors, and the binding index
//! that keeps both directions current as objects change.

pub mod bindings;
pub mod glob;
pub mod selector;
