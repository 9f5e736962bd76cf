//! chom's settings (GUCs), all in the `chom.` namespace.

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use std::ffi::CStr;

/// `chom.stale_after`: how old `tenants.cached_at` may be before chom_tenant_stats() recomputes (default 5min).
pub static STALE_AFTER_SECONDS: GucSetting<i32> = GucSetting::<i32>::new(300);

/// `chom.eligible_health`: the `vps_servers.health_status` values chom_pick_vps() accepts, comma separated.
pub static ELIGIBLE_HEALTH: GucSetting<Option<std::ffi::CString>> =
    GucSetting::<Option<std::ffi::CString>>::new(Some(c"healthy,unknown"));

/// `chom.target_schema`: the schema that holds CHOM's tables, when it is not the one found by looking for
/// `tenants` (read by chom_install() only; later calls use the schema recorded at install).
pub static TARGET_SCHEMA: GucSetting<Option<std::ffi::CString>> = GucSetting::<Option<std::ffi::CString>>::new(None);

/// `chom.install_on_create`: whether CREATE EXTENSION installs on CHOM's tables right away (default on). Off is
/// the online path: build the indexes with chom_index_ddl() first, then run chom_install(). Read by
/// sql/finalize.sql; registered here so that it is validated and shown by SHOW.
pub static INSTALL_ON_CREATE: GucSetting<bool> = GucSetting::<bool>::new(true);

/// `chom.tenants_fillfactor`: the fillfactor chom_install() gives `tenants` when the table has none of its own
/// (default 70; 100 leaves the table as it is). The free room on each page is what lets the triggers' counter
/// updates be HOT when one statement changes many tenants of the same page.
pub static TENANTS_FILLFACTOR: GucSetting<i32> = GucSetting::<i32>::new(70);

/// `chom.enforce_site_quota`: whether a transaction that raises a tenant's live sites above its tier's
/// `tier_limits.max_sites` fails at commit (23514). Off by default; on per database (`ALTER DATABASE ... SET`),
/// role or session.
pub static ENFORCE_SITE_QUOTA: GucSetting<bool> = GucSetting::<bool>::new(false);

pub const HEALTH_STATES: [&str; 4] = ["healthy", "degraded", "unhealthy", "unknown"];

pub fn register() {
    GucRegistry::define_int_guc(
        c"chom.stale_after",
        c"Age of tenants.cached_at after which chom_tenant_stats() recomputes a tenant's aggregates.",
        c"The triggers keep the aggregates exact; the recompute is a safety net for writes that bypassed them.",
        &STALE_AFTER_SECONDS,
        0,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_string_guc(
        c"chom.eligible_health",
        c"Comma-separated vps_servers.health_status values that chom_pick_vps() treats as eligible.",
        c"Any of healthy, degraded, unhealthy, unknown. CHOM's healthy() scope is healthy,unknown.",
        &ELIGIBLE_HEALTH,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"chom.install_on_create",
        c"Whether CREATE EXTENSION chom installs on CHOM's tables right away.",
        c"Off: only chom's functions; build indexes with chom_index_ddl(), then run chom_install().",
        &INSTALL_ON_CREATE,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"chom.tenants_fillfactor",
        c"Fillfactor chom_install() sets on tenants when the table has none of its own (100: leave it alone).",
        c"Room on each page for new row versions keeps the triggers' counter updates HOT: no index entries.",
        &TENANTS_FILLFACTOR,
        10,
        100,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"chom.enforce_site_quota",
        c"Whether a transaction that takes a tenant over its tier's max_sites fails at commit (SQLSTATE 23514).",
        c"Checked on the locked tenant row with the transaction's net change: exact under any concurrency.",
        &ENFORCE_SITE_QUOTA,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"chom.target_schema",
        c"Schema holding CHOM's tables, for chom_install() when more than one schema has a tenants table.",
        c"Empty: the schema of the tenants table found first in search_path.",
        &TARGET_SCHEMA,
        GucContext::Userset,
        GucFlags::default(),
    );
}

/// The value of a string setting, empty when unset.
pub fn string_value(setting: &GucSetting<Option<std::ffi::CString>>) -> String {
    setting.get().map(|s| CStr::to_string_lossy(&s).trim().to_string()).unwrap_or_default()
}

/// The eligible health states, validated: an unknown state is a configuration error (22023), not a silent miss.
pub fn eligible_health() -> Vec<String> {
    let raw = string_value(&ELIGIBLE_HEALTH);
    let states: Vec<String> = raw.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    for state in &states {
        if !HEALTH_STATES.contains(&state.as_str()) {
            crate::errors::invalid_argument(
                format!("chom.eligible_health contains unknown health state \"{state}\""),
                "Use a comma-separated list of healthy, degraded, unhealthy, unknown (default: healthy,unknown).",
            );
        }
    }
    states
}
