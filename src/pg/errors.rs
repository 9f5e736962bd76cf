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

/// Raises an ERROR with `code`, `message`, a DETAIL and a HINT; does not return.
#[track_caller]
pub fn raise_with_detail(code: PgSqlErrorCode, message: impl Into<String>, detail: impl Into<String>, hint: &str) -> ! {
    ErrorReport::new(code, message.into(), "chom").set_detail(detail.into()).set_hint(hint).report(PgLogLevel::ERROR);
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

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use crate::test_support::*;
    use pgrx::prelude::*;

    /// Every public function against NULLs, unknown ids, out-of-range numbers and hostile strings: a documented
    /// result or a specific SQLSTATE, never XX000 or a crash.
    #[pg_test]
    fn every_public_function_answers_bad_input_with_a_specific_sqlstate() {
        install_with_data();
        let cases: &[(&str, Option<&str>)] = &[
            ("SELECT * FROM chom_tenant_stats(NULL)", None),
            ("SELECT * FROM chom_tenant_stats('ffffffff-ffff-ffff-ffff-ffffffffffff')", None),
            ("SELECT chom_refresh_tenant(NULL)", Some("22004")),
            ("SELECT chom_refresh_tenant('ffffffff-ffff-ffff-ffff-ffffffffffff')", Some("P0002")),
            ("SELECT chom_refresh_all(NULL)", Some("22004")),
            ("SELECT chom_refresh_all(-1)", Some("22023")),
            ("SELECT chom_refresh_all(2147483647)", Some("22023")),
            ("SELECT * FROM chom_index_ddl(NULL)", Some("22004")),
            ("SELECT chom_pick_vps(NULL, NULL, NULL, NULL)", None),
            ("SELECT chom_pick_vps(-2147483648)", Some("22023")),
            ("SELECT chom_pick_vps(0, 2147483647)", Some("22023")),
            ("SELECT chom_pick_vps(region => repeat('é', 51))", Some("22023")),
            ("SELECT chom_pick_vps(region => 'eu''; SELECT pg_sleep(10); --')", None),
            ("SELECT chom.index_key_columns(NULL)", None),
            ("SELECT chom.index_key_columns(0)", None),
            ("SELECT * FROM chom_tenant_quota(NULL)", None),
            ("SELECT * FROM chom_tenant_quota('ffffffff-ffff-ffff-ffff-ffffffffffff')", None),
            ("SELECT * FROM chom_metrics()", None),
            ("SELECT * FROM chom_drift_probe()", None),
            ("SELECT * FROM chom_drift_probe(0)", Some("22023")),
            ("SELECT * FROM chom_drift_probe(100, -1)", Some("22023")),
            ("SELECT * FROM chom_drift_probe(NULL)", Some("22004")),
            ("CALL chom_refresh_all_batched(10)", Some("25001")),
            ("SELECT chom_apply_pending()", Some("42501")),
            ("SELECT * FROM chom_status()", None),
            ("SELECT * FROM chom_index_usage()", None),
            ("SELECT * FROM chom_vps_load()", None),
            ("SELECT * FROM chom_cache_drift()", None),
            ("SELECT * FROM chom_vps_drift()", None),
            ("SELECT chom_repair_drift()", None),
            ("SET chom.max_staleness = '-1s'", Some("22023")),
            ("SET chom.site_quota = 'maybe'", Some("22023")),
        ];
        for (call, expected) in cases {
            assert_eq!(sqlstate(call).as_deref(), *expected, "{call}");
        }
    }
}
