//! The Postgres plane: errors with SQLSTATEs, SPI helpers, prepared plans, settings and transaction state.
//! Nothing here knows CHOM's schema. Modules are declared bottom-up: each uses only those above it.

pub mod errors;
pub mod db;
pub mod plans;
pub mod settings;
pub mod xact;
