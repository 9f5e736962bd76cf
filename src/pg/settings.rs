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
        // SAFETY: a non-null result of GetConfigOption() is a NUL-terminated string, copied here at once.
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

/// `chom.max_staleness`: how old `tenants.cached_at` may be before chom_tenant_stats() recomputes (default
/// 5min). Superuser-set: a short window makes every read of a tenant queue a locked recount, a long one keeps
/// writes that bypassed the triggers unseen. (0.1.0-0.3.0 read the user-settable `chom.stale_after`, which this
/// release neither defines nor reads.)
pub static MAX_STALENESS_SECONDS: Setting<i32> = Setting::<i32>::new(c"chom.max_staleness", 300);

/// `chom.install_schema`: the schema that holds CHOM's tables, when it is not the one found by looking for
/// `tenants` (read by chom_install() and chom_index_ddl() only; later calls use the schema chom is installed
/// on). Superuser-set: whoever sets it chooses the tables an install acts on. (Earlier releases read the
/// user-settable `chom.target_schema`, which this release neither defines nor reads.)
pub static INSTALL_SCHEMA: Setting<Option<CString>> = Setting::<Option<CString>>::new(c"chom.install_schema", None);

/// `chom.site_quota`: whether every transaction that raises a tenant's live sites above its tier's
/// `tier_limits.max_sites` fails at commit (23514). Superuser-set (`ALTER DATABASE ... SET`, or `GRANT SET ON
/// PARAMETER`): a session cannot turn it off.
pub static SITE_QUOTA: Setting<bool> = Setting::<bool>::new(c"chom.site_quota", false);

/// `chom.enforce_site_quota`: a session (or role) may turn the quota on for itself where `chom.site_quota`
/// leaves it off; off never turns `chom.site_quota` off. (0.3.0's name, which it read alone, user-settable.)
pub static ENFORCE_SITE_QUOTA: Setting<bool> = Setting::<bool>::new(c"chom.enforce_site_quota", false);

/// `chom.drain_databases`: on a Citus coordinator, the databases whose outbox of per-VPS changes chom's
/// background worker drains into `chom.vps_load` (comma separated; empty: no worker). Read at server start, with
/// chom's library in shared_preload_libraries (see docs/scaling.md §10.2).
pub static DRAIN_DATABASES: Setting<Option<CString>> = Setting::<Option<CString>>::new(c"chom.drain_databases", None);

/// `chom.drain_interval`: how long chom's drain worker waits between two drains (default 1s).
pub static DRAIN_INTERVAL_MS: Setting<i32> = Setting::<i32>::new(c"chom.drain_interval", 1000);

/// `chom.busy_tenant_spill`: whether a committing writer that finds its tenant's row held by another commit
/// spills its change to `chom.tenant_deltas` instead of waiting for that commit's flush (default on; see
/// src/deltas.rs). Off, writers of one tenant commit one after the other and `tenants.cached_sites_count` read
/// directly is never behind. Superuser-set.
pub static BUSY_TENANT_SPILL: Setting<bool> = Setting::<bool>::new(c"chom.busy_tenant_spill", true);

/// `chom.fold_in_background`: whether spills start a background worker that folds the deltas into `tenants`
/// (default on). Off, the deltas stay until `chom_fold_deltas()` (reads through chom stay exact). Superuser-set.
pub static FOLD_IN_BACKGROUND: Setting<bool> = Setting::<bool>::new(c"chom.fold_in_background", true);

/// The settings that chom 0.1.0 and 0.2.0 define, without looking whether another library did first: a library
/// of this release loaded before one of theirs must not define them (theirs would then fail to load with
/// "attempt to redefine parameter"), so this one reads them by name, as placeholders or as the older library's
/// variables, and checks their values where it uses them.
/// `chom.eligible_health`: the `vps_servers.health_status` values chom_pick_vps() accepts, comma separated.
const ELIGIBLE_HEALTH: &CStr = c"chom.eligible_health";
/// `chom.tenants_fillfactor`: the fillfactor chom_install() gives `tenants` when the table has none of its own
/// (default 70; 100 leaves the table as it is). The free room on each page is what lets the counter updates
/// be HOT when one statement changes many tenants of the same page.
const TENANTS_FILLFACTOR: &CStr = c"chom.tenants_fillfactor";
/// The user-settable names of earlier releases that this one no longer reads, with the guarded setting that
/// replaced each.
pub const RETIRED: [(&CStr, &str); 2] =
    [(c"chom.stale_after", "chom.max_staleness"), (c"chom.target_schema", "chom.install_schema")];

/// A GUC nest level: settings made inside it with `set_config(..., true)` last until it is dropped, as fmgr
/// keeps a function's SET clause for the call. On an error the (sub)transaction's abort pops the level (and
/// everything inside it), so the drop does nothing while unwinding.
pub struct SettingsScope {
    level: std::ffi::c_int,
}

impl SettingsScope {
    /// Opens a level.
    pub fn open() -> SettingsScope {
        // SAFETY: opens a GUC nest level, as fmgr does before a function with SET clauses; the drop closes it.
        SettingsScope { level: unsafe { pg_sys::NewGUCNestLevel() } }
    }
}

impl Drop for SettingsScope {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            // SAFETY: closes the level opened above, keeping nothing of what was set locally inside it.
            unsafe { pg_sys::AtEOXact_GUC(true, self.level) };
        }
    }
}

/// The `search_path` every statement of chom's runs with: names resolve in pg_catalog only (pg_temp last, where
/// chom names nothing), so that no function or operator another role put in a schema of the caller's path,
/// however well it matches, is ever chom's.
pub const CATALOG_SEARCH_PATH: &CStr = c"pg_catalog, pg_temp";

/// Runs `work` with `search_path` pinned to [`CATALOG_SEARCH_PATH`] until it returns, as a function's SET
/// clause would. For chom's code that runs SQL outside a function of its own with that clause: the look-ups
/// its triggers and its commit step make on a cache miss (a trigger function pays for no SET clause on every
/// firing: its hot path runs no SQL) and the background workers (the fold and the Citus drain), whose sessions
/// take the database's settings.
pub fn with_catalog_search_path<R>(work: impl FnOnce() -> R) -> R {
    let _scope = SettingsScope::open();
    set(c"search_path", CATALOG_SEARCH_PATH, pg_sys::GucAction::GUC_ACTION_SAVE);
    work()
}

/// Sets a Postgres setting as a user's SET does: for the session (`GUC_ACTION_SET`), or until the enclosing
/// GUC nest level closes (`GUC_ACTION_SAVE`, as a function's SET clause).
pub fn set(name: &CStr, value: &CStr, action: pg_sys::GucAction::Type) {
    // SAFETY: NUL-terminated name and value; an invalid value raises an ERROR, as SET would.
    unsafe {
        pg_sys::set_config_option(
            name.as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            action,
            true,
            0,
            false,
        );
    }
}

/// The value of a setting read by name (a placeholder or another library's variable), None when unset.
pub fn by_name(name: &CStr) -> Option<String> {
    // SAFETY: a look-up by name with missing_ok; the result is copied at once (it may point into a static
    // buffer).
    let value = unsafe { pg_sys::GetConfigOption(name.as_ptr(), true, false) };
    (!value.is_null())
        // SAFETY: a non-null result of GetConfigOption() is a NUL-terminated string, copied here at once.
        .then(|| unsafe { CStr::from_ptr(value) }.to_string_lossy().trim().to_string())
        .filter(|value| !value.is_empty())
}

/// Whether the site quota holds for this transaction: `chom.site_quota`, or a session's `chom.enforce_site_quota`.
pub fn site_quota_enforced() -> bool {
    SITE_QUOTA.get() || ENFORCE_SITE_QUOTA.get()
}

/// `chom.tenants_fillfactor`, checked: 10 to 100 (22023 otherwise), 70 when unset.
pub fn tenants_fillfactor() -> i32 {
    let Some(raw) = by_name(TENANTS_FILLFACTOR) else { return 70 };
    raw.parse::<i32>().ok().filter(|ff| (10..=100).contains(ff)).unwrap_or_else(|| {
        crate::pg::errors::invalid_argument(
            format!("chom.tenants_fillfactor is \"{raw}\", not a whole number from 10 to 100"),
            "SET chom.tenants_fillfactor to 10-100 (100 leaves tenants as it is), or RESET it.",
        )
    })
}

pub const HEALTH_STATES: [&str; 4] = ["healthy", "degraded", "unhealthy", "unknown"];

/// Defines chom's settings; called once from _PG_init. Those another chom library in this backend defined
/// already are read from it (see the module's doc).
pub fn register() {
    MAX_STALENESS_SECONDS.define(|name, variable| {
        GucRegistry::define_int_guc(
            name,
            c"Age of tenants.cached_at after which chom_tenant_stats() recomputes a tenant's aggregates.",
            c"The triggers keep the aggregates exact; the recompute is a safety net for writes that bypassed them.",
            variable,
            0,
            i32::MAX,
            GucContext::Suset,
            GucFlags::UNIT_S,
        )
    });
    SITE_QUOTA.define(|name, variable| {
        GucRegistry::define_bool_guc(
            name,
            c"Whether a transaction that takes a tenant over its tier's max_sites fails at commit (SQLSTATE 23514).",
            c"Checked on the locked tenant row with the transaction's net change: exact under any concurrency.",
            variable,
            GucContext::Suset,
            GucFlags::default(),
        )
    });
    ENFORCE_SITE_QUOTA.define(|name, variable| {
        GucRegistry::define_bool_guc(
            name,
            c"Turns the site quota on for this session where chom.site_quota leaves it off.",
            c"Off never turns chom.site_quota off.",
            variable,
            GucContext::Userset,
            GucFlags::default(),
        )
    });
    BUSY_TENANT_SPILL.define(|name, variable| {
        GucRegistry::define_bool_guc(
            name,
            c"Whether a commit that finds its tenant's row held by another commit spills its change to chom.tenant_deltas.",
            c"Reads through chom add the unfolded deltas; tenants.cached_sites_count read directly is behind by them.",
            variable,
            GucContext::Suset,
            GucFlags::default(),
        )
    });
    FOLD_IN_BACKGROUND.define(|name, variable| {
        GucRegistry::define_bool_guc(
            name,
            c"Whether spills start a background worker that folds chom.tenant_deltas into tenants.",
            c"Off: the deltas wait for chom_fold_deltas(); reads through chom stay exact.",
            variable,
            GucContext::Suset,
            GucFlags::default(),
        )
    });
    INSTALL_SCHEMA.define(|name, variable| {
        GucRegistry::define_string_guc(
            name,
            c"Schema holding CHOM's tables, for chom_install() when more than one schema has a tenants table.",
            c"Empty: the schema of the tenants table found first in search_path.",
            variable,
            GucContext::Suset,
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
}

/// The value of a string setting, empty when unset.
pub fn string_value(setting: &Setting<Option<CString>>) -> String {
    setting.get().map(|s| CStr::to_string_lossy(&s).trim().to_string()).unwrap_or_default()
}

/// The eligible health states, validated: an unknown state is a configuration error (22023), not a silent miss.
pub fn eligible_health() -> Vec<String> {
    let raw = by_name(ELIGIBLE_HEALTH).unwrap_or_else(|| "healthy,unknown".to_string());
    let states: Vec<String> = raw.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    for state in &states {
        if !HEALTH_STATES.contains(&state.as_str()) {
            crate::pg::errors::invalid_argument(
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
    use crate::test_support::*;
    use pgrx::prelude::*;

    #[pg_test]
    fn a_setting_defined_by_a_library_is_told_from_a_placeholder_and_an_unknown_name() {
        assert!(defined_by_another_library(c"chom.max_staleness"), "defined by this library's _PG_init");
        assert!(defined_by_another_library(c"chom.install_schema"), "a string setting whose value is NULL");
        assert!(!defined_by_another_library(c"chom.no_such_setting"));
        Spi::run("SET chom.not_yet_defined = 'on'").unwrap();
        assert!(!defined_by_another_library(c"chom.not_yet_defined"), "a placeholder is defined over, not read");
        for (retired, _) in RETIRED {
            assert!(!defined_by_another_library(retired), "0.1.0 and 0.2.0 define {retired:?}: this release must not");
        }
        assert!(!defined_by_another_library(ELIGIBLE_HEALTH) && !defined_by_another_library(TENANTS_FILLFACTOR));
    }

    /// What a library that found the settings defined by an older chom library reads: the same values.
    #[pg_test]
    fn a_borrowed_setting_reads_the_value_of_the_library_that_defined_it() {
        static STALE: Setting<i32> = Setting::<i32>::new(c"chom.max_staleness", 1);
        static QUOTA: Setting<bool> = Setting::<bool>::new(c"chom.enforce_site_quota", true);
        static SCHEMA: Setting<Option<CString>> = Setting::<Option<CString>>::new(c"chom.install_schema", Some(c"x"));
        for borrowed in [&STALE.borrowed, &QUOTA.borrowed, &SCHEMA.borrowed] {
            borrowed.store(true, Ordering::Relaxed);
        }
        assert_eq!(STALE.get(), 300);
        assert!(!QUOTA.get());
        assert_eq!(string_value(&SCHEMA), "");
        Spi::run(
            "SET LOCAL chom.max_staleness = '2min'; SET LOCAL chom.enforce_site_quota = on; \
                  SET LOCAL chom.install_schema = 'app'",
        )
        .unwrap();
        assert_eq!((STALE.get(), MAX_STALENESS_SECONDS.get()), (120, 120));
        assert!(QUOTA.get() && ENFORCE_SITE_QUOTA.get());
        assert_eq!(string_value(&SCHEMA), "app");
    }

    /// The settings of 0.1.0 and 0.2.0 are read by name, as placeholders, and checked where they are used.
    #[pg_test]
    fn settings_older_releases_define_are_read_by_name_and_checked() {
        load_schema();
        assert_eq!(eligible_health(), vec!["healthy", "unknown"]);
        assert_eq!(tenants_fillfactor(), 70);
        Spi::run("SET LOCAL chom.eligible_health = 'healthy, degraded'; SET LOCAL chom.tenants_fillfactor = 90")
            .unwrap();
        assert_eq!(eligible_health(), vec!["healthy", "degraded"]);
        assert_eq!(tenants_fillfactor(), 90);
        Spi::run("SET LOCAL chom.tenants_fillfactor = 5").unwrap();
        assert_eq!(sqlstate("SELECT * FROM chom_install()").as_deref(), Some("22023"));
    }

    /// A guarded setting is not an ordinary role's to change, in the session or for a database or role; the
    /// session's own switch can turn the quota on, never off.
    #[pg_test]
    fn guarded_settings_refuse_ordinary_roles() {
        define_sqlstate_of();
        Spi::run("CREATE ROLE chom_app_role; SET LOCAL ROLE chom_app_role").unwrap();
        for setting in ["chom.site_quota = off", "chom.max_staleness = 0", "chom.install_schema = 'evil'"] {
            assert_eq!(sqlstate(&format!("SET LOCAL {setting}")).as_deref(), Some("42501"), "{setting}");
        }
        Spi::run("SET LOCAL chom.enforce_site_quota = on").unwrap();
        assert!(site_quota_enforced(), "a session may turn the quota on");
        Spi::run("RESET ROLE; SET LOCAL chom.site_quota = on; SET LOCAL ROLE chom_app_role").unwrap();
        Spi::run("SET LOCAL chom.enforce_site_quota = off").unwrap();
        assert!(site_quota_enforced(), "a session's off does not undo chom.site_quota");
    }
}
