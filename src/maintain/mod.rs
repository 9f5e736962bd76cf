//! The maintenance plane: keeping the aggregates exact. Net changes, the row statements, the busy tenant's
//! deltas and their fold, the Citus shards and outbox, the commit step, the transaction's pending frames, the
//! recounts, the triggers that capture every write, and the Citus drain worker. Declared bottom-up.

pub mod changes;
pub mod rows;
pub mod deltas;
pub mod outbox;
pub mod shards;
pub mod commit;
pub mod pending;
pub mod recount;
pub mod triggers;
pub mod drain_worker;
