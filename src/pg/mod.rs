//! The Postgres plane: errors with SQLSTATEs, SPI helpers, prepared plans, settings, transaction state
//! and the invalidations that empty per-backend caches.
//! Nothing here knows CHOM's schema. Modules are declared bottom-up: each uses only those above it.

pub mod errors;
pub mod db;
pub mod plans;
pub mod settings;
pub mod xact;
pub mod invalidation;
