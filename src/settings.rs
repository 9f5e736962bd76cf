//! chom's settings (GUCs), all in the `chom.` namespace.
//!
//! Each release has its own shared library (`$libdir/chom-<version>`, see the README's Upgrading), and a
//! pooled connection can load two of them: the previous release's, for the SQL objects it served before
//! `ALTER EXTENSION chom UPDATE`, and this one's after it. The first library loaded defines the `chom.*`
//! settings it knows; Postgres refuses to define one twice ("attempt to redefine parameter"), so this
//! library defines only the settings nobody has defined yet (and the placeholders a `SET` or
//! postgresql.conf made before any chom library was loaded, which Postgres converts), and reads the others
//! through the GUC machinery by name ([`Setting::get`]): one value per name in the backend, whichever
//! library defined it. A setting's name therefore keeps its type and unit across releases.

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting, GucValue};
use pgrx::pg_sys;
use std::ffi::{CStr, CString};
use std::sync::atomic::{AtomicBool, Ordering};

/// One `chom.*` setting: the variable this library defines for it, or, when another chom library loaded
/// in this backend defined it first, that library's variable read by name.
pub struct Setting<T: GucValue> {
    name: &'static CStr,
    own: GucSetting<T>,
    /// Set once, by [`register`]: another library's variable holds the value.
    borrowed: AtomicBool,
}

impl<T: GucValue> Setting<T> {
    const fn with(name: &'static CStr, own: GucSetting<T>) -> Self {
        Setting { name, own, borrowed: AtomicBool::new(false) }
    }

    /// Whether another chom library in this backend defined the setting (this one reads it by name).
    pub fn borrowed(&self) -> bool {
        self.borrowed.load(Ordering::Relaxed)
    }

    /// The setting's value as Postgres prints it for GetConfigOption(): an int in its base unit, a bool as
    /// on/off, a string as it is (None when NULL).
    fn borrowed_text(&self) -> Option<String> {
        // SAFETY: the setting exists (another library defined it); missing_ok = false would raise otherwise.
        // The result is copied at once: for ints and bools it points into a static buffer.
        let value = unsafe { pg_sys::GetConfigOption(self.name.as_ptr(), false, false) };
        (!value.is_null()).then(|| unsafe { CStr::from_ptr(value) }.to_string_lossy().into_owned())
    }

    /// Defines the setting in this library unless another library in this backend already did.
    fn define(&'static self, define: impl FnOnce(&'static CStr, &'static GucSetting<T>)) {
        if defined_by_another_library(self.name) {
            self.borrowed.store(true, Ordering::Relaxed);
        } else {
            define(self.name, &self.own);
        }
    }
}

impl Setting<i32> {
    pub const fn new(name: &'static CStr, default: i32) -> Self {
        Setting::with(name, GucSetting::<i32>::new(default))
    }

    pub fn get(&self) -> i32 {
        if self.borrowed() {
            if let Some(value) = self.borrowed_text().and_then(|text| text.trim().parse().ok()) {
                return value;
            }
        }
        self.own.get()
    }
}

impl Setting<bool> {
    pub const fn new(name: &'static CStr, default: bool) -> Self {
        Setting::with(name, GucSetting::<bool>::new(default))
    }

    pub fn get(&self) -> bool {
        if self.borrowed() {
            match self.borrowed_text().as_deref() {
                Some("on") => return true,
                Some("off") => return false,
                _ => {}
            }
        }
        self.own.get()
    }
}

impl Setting<Option<CString>> {
    pub const fn new(name: &'static CStr, default: Option<&'static CStr>) -> Self {
        Setting::with(name, GucSetting::<Option<CString>>::new(default))
    }

    pub fn get(&self) -> Option<CString> {
        if self.borrowed() {
            return self.borrowed_text().and_then(|text| CString::new(text).ok());
        }
        self.own.get()
    }
}

/// Whether `name` is a real setting already (defined by another library loaded in this backend: the
/// previous chom release's, see the module's doc), as opposed to unknown or a placeholder.
fn defined_by_another_library(name: &CStr) -> bool {
    let mut varname: *const std::ffi::c_char = std::ptr::null();
    // SAFETY: look-ups by name with missing_ok; GetConfigOptionByName returns NULL only when no setting or
    // placeholder of that name exists (for a NULL string value it returns ""), and a palloc'd copy otherwise.
    unsafe {
        let shown = pg_sys::GetConfigOptionByName(name.as_ptr(), &mut varname, true);
        if shown.is_null() {
            return false;
        }
        pg_sys::pfree(shown.cast());
        pg_sys::GetConfigOptionFlags(name.as_ptr(), true) & pg_sys::GUC_CUSTOM_PLACEHOLDER as i32 == 0
    }
}

/// `chom.stale_after`: how old `tenants.cached_at` may be before chom_tenant_stats() recomputes (default 5min).
pub static STALE_AFTER_SECONDS: Setting<i32> = Setting::<i32>::new(c"chom.stale_after", 300);

/// `chom.eligible_health`: the `vps_servers.health_status` values chom_pick_vps() accepts, comma separated.
pub static ELIGIBLE_HEALTH: Setting<Option<CString>> =
    Setting::<Option<CString>>::new(c"chom.eligible_health", Some(c"healthy,unknown"));

/// `chom.target_schema`: the schema that holds CHOM's tables, when it is not the one found by looking for
/// `tenants` (read by chom_install() only; later calls use the schema recorded at install).
pub static TARGET_SCHEMA: Setting<Option<CString>> = Setting::<Option<CString>>::new(c"chom.target_schema", None);

/// `chom.install_on_create`: whether CREATE EXTENSION installs on CHOM's tables right away (default on). Off is
/// the online path: build the indexes with chom_index_ddl() first, then run chom_install(). Read by
/// sql/finalize.sql; registered here so that it is validated and shown by SHOW.
pub static INSTALL_ON_CREATE: Setting<bool> = Setting::<bool>::new(c"chom.install_on_create", true);

/// `chom.tenants_fillfactor`: the fillfactor chom_install() gives `tenants` when the table has none of its own
/// (default 70; 100 leaves the table as it is). The free room on each page is what lets the triggers' counter
/// updates be HOT when one statement changes many tenants of the same page.
pub static TENANTS_FILLFACTOR: Setting<i32> = Setting::<i32>::new(c"chom.tenants_fillfactor", 70);

/// `chom.enforce_site_quota`: whether a transaction that raises a tenant's live sites above its tier's
/// `tier_limits.max_sites` fails at commit (23514). Off by default; on per database (`ALTER DATABASE ... SET`),
/// role or session.
pub static ENFORCE_SITE_QUOTA: Setting<bool> = Setting::<bool>::new(c"chom.enforce_site_quota", false);

/// `chom.drain_databases`: on a Citus coordinator, the databases whose outbox of per-VPS changes chom's
/// background worker drains into `chom.vps_load` (comma separated; empty: no worker). Read at server start, with
/// chom's library in shared_preload_libraries (see docs/scaling.md §10.2).
pub static DRAIN_DATABASES: Setting<Option<CString>> = Setting::<Option<CString>>::new(c"chom.drain_databases", None);

/// `chom.drain_interval`: how long chom's drain worker waits between two drains (default 1s).
pub static DRAIN_INTERVAL_MS: Setting<i32> = Setting::<i32>::new(c"chom.drain_interval", 1000);

pub const HEALTH_STATES: [&str; 4] = ["healthy", "degraded", "unhealthy", "unknown"];

/// Defines chom's settings; called once from _PG_init. Those another chom library in this backend defined
/// already are read from it (see the module's doc).
pub fn register() {
    STALE_AFTER_SECONDS.define(|name, variable| {
        GucRegistry::define_int_guc(
            name,
            c"Age of tenants.cached_at after which chom_tenant_stats() recomputes a tenant's aggregates.",
            c"The triggers keep the aggregates exact; the recompute is a safety net for writes that bypassed them.",
            variable,
            0,
            i32::MAX,
            GucContext::Userset,
            GucFlags::UNIT_S,
        )
    });
    ELIGIBLE_HEALTH.define(|name, variable| {
        GucRegistry::define_string_guc(
            name,
            c"Comma-separated vps_servers.health_status values that chom_pick_vps() treats as eligible.",
            c"Any of healthy, degraded, unhealthy, unknown. CHOM's healthy() scope is healthy,unknown.",
            variable,
            GucContext::Userset,
            GucFlags::default(),
        )
    });
    INSTALL_ON_CREATE.define(|name, variable| {
        GucRegistry::define_bool_guc(
            name,
            c"Whether CREATE EXTENSION chom installs on CHOM's tables right away.",
            c"Off: only chom's functions; build indexes with chom_index_ddl(), then run chom_install().",
            variable,
            GucContext::Userset,
            GucFlags::default(),
        )
    });
    TENANTS_FILLFACTOR.define(|name, variable| {
        GucRegistry::define_int_guc(
            name,
            c"Fillfactor chom_install() sets on tenants when the table has none of its own (100: leave it alone).",
            c"Room on each page for new row versions keeps the triggers' counter updates HOT: no index entries.",
            variable,
            10,
            100,
            GucContext::Userset,
            GucFlags::default(),
        )
    });
    ENFORCE_SITE_QUOTA.define(|name, variable| {
        GucRegistry::define_bool_guc(
            name,
            c"Whether a transaction that takes a tenant over its tier's max_sites fails at commit (SQLSTATE 23514).",
            c"Checked on the locked tenant row with the transaction's net change: exact under any concurrency.",
            variable,
            GucContext::Userset,
            GucFlags::default(),
        )
    });
    // a server-start setting can be defined only while shared_preload_libraries are loaded; loaded later, the
    // library has no drain worker to configure
    // SAFETY: reads a flag of the postmaster.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        DRAIN_DATABASES.define(|name, variable| {
            GucRegistry::define_string_guc(
                name,
                c"Databases whose Citus outbox of per-VPS changes chom's background worker drains (comma separated).",
                c"Read at server start, with chom's library in shared_preload_libraries, on the coordinator.",
                variable,
                GucContext::Postmaster,
                GucFlags::default(),
            )
        });
    }
    DRAIN_INTERVAL_MS.define(|name, variable| {
        GucRegistry::define_int_guc(
            name,
            c"Time chom's drain worker waits between two drains of the Citus outbox.",
            c"chom_pick_vps() sees the per-VPS counts of the last drain.",
            variable,
            10,
            3_600_000,
            GucContext::Sighup,
            GucFlags::UNIT_MS,
        )
    });
    TARGET_SCHEMA.define(|name, variable| {
        GucRegistry::define_string_guc(
            name,
            c"Schema holding CHOM's tables, for chom_install() when more than one schema has a tenants table.",
            c"Empty: the schema of the tenants table found first in search_path.",
            variable,
            GucContext::Userset,
            GucFlags::default(),
        )
    });
}

/// The value of a string setting, empty when unset.
pub fn string_value(setting: &Setting<Option<CString>>) -> String {
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

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use super::*;
    use pgrx::prelude::*;

    #[pg_test]
    fn a_setting_defined_by_a_library_is_told_from_a_placeholder_and_an_unknown_name() {
        assert!(defined_by_another_library(c"chom.stale_after"), "defined by this library's _PG_init");
        assert!(defined_by_another_library(c"chom.target_schema"), "a string setting whose value is NULL");
        assert!(!defined_by_another_library(c"chom.no_such_setting"));
        Spi::run("SET chom.not_yet_defined = 'on'").unwrap();
        assert!(!defined_by_another_library(c"chom.not_yet_defined"), "a placeholder is defined over, not read");
    }

    /// What a library that found the settings defined by an older chom library reads: the same values.
    #[pg_test]
    fn a_borrowed_setting_reads_the_value_of_the_library_that_defined_it() {
        static STALE: Setting<i32> = Setting::<i32>::new(c"chom.stale_after", 1);
        static QUOTA: Setting<bool> = Setting::<bool>::new(c"chom.enforce_site_quota", true);
        static HEALTH: Setting<Option<CString>> = Setting::<Option<CString>>::new(c"chom.eligible_health", None);
        static SCHEMA: Setting<Option<CString>> = Setting::<Option<CString>>::new(c"chom.target_schema", Some(c"x"));
        for borrowed in [&STALE.borrowed, &QUOTA.borrowed, &HEALTH.borrowed, &SCHEMA.borrowed] {
            borrowed.store(true, Ordering::Relaxed);
        }
        assert_eq!(STALE.get(), 300);
        assert!(!QUOTA.get());
        assert_eq!(string_value(&HEALTH), "healthy,unknown");
        assert_eq!(string_value(&SCHEMA), "");
        Spi::run(
            "SET LOCAL chom.stale_after = '2min'; SET LOCAL chom.enforce_site_quota = on; \
                  SET LOCAL chom.eligible_health = 'healthy'; SET LOCAL chom.target_schema = 'app'",
        )
        .unwrap();
        assert_eq!((STALE.get(), STALE_AFTER_SECONDS.get()), (120, 120));
        assert!(QUOTA.get() && ENFORCE_SITE_QUOTA.get());
        assert_eq!(string_value(&HEALTH), "healthy");
        assert_eq!(string_value(&SCHEMA), "app");
    }
}
