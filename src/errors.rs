//! Errors with a specific SQLSTATE and, where it helps, a HINT: chom never lets a bad argument or a schema it
//! cannot work with surface as an internal error (XX000).

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

/// Raises an ERROR with `code`, `message` and an optional `hint`; does not return.
#[track_caller]
pub fn raise(code: PgSqlErrorCode, message: impl Into<String>, hint: Option<&str>) -> ! {
    let mut report = ErrorReport::new(code, message.into(), "chom");
    if let Some(hint) = hint {
        report = report.set_hint(hint);
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// Raises 22023 (invalid_parameter_value).
#[track_caller]
pub fn invalid_argument(message: impl Into<String>, hint: &str) -> ! {
    raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, message, Some(hint))
}

/// Unwraps an SPI result; an SPI failure is chom's own bug, so it surfaces as internal_error with the query.
#[track_caller]
pub fn spi<T>(result: pgrx::spi::SpiResult<T>, what: &str) -> T {
    match result {
        Ok(value) => value,
        Err(e) => raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("chom: {what} failed: {e}"), None),
    }
}
