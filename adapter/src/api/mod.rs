//! The external metrics API surface.

pub mod status;
