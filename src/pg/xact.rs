//! The state of the current transaction that decides whether chom may write.

use pgrx::pg_sys;

/// Whether this transaction may not write: a read-only transaction or a hot standby.
pub fn read_only() -> bool {
    // SAFETY: plain reads of backend-local state.
    unsafe { pg_sys::XactReadOnly || pg_sys::RecoveryInProgress() }
}
