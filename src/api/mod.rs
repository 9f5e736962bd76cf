//! The application's plane: tenant statistics, quota and VPS placement. Declared bottom-up.

pub mod stats;
pub mod quota;
pub mod placement;
