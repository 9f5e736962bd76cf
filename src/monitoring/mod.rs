//! The monitoring plane: the history of chom's runs, drift checks and repair, the bounded probe, the metrics
//! and the batched refresh. Declared bottom-up.

pub mod runs;
pub mod drift;
pub mod probe;
pub mod metrics;
pub mod refresh;
