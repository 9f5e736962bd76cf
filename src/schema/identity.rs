//! Who chom's writes run as: the one definition of chom's commit step's identity (SECURITY.md).
//!
//! chom is created by a superuser, while CHOM's tables belong to the application's role. chom never runs that
//! role's code with more rights than the role has: rows of CHOM's tables (`tenants`, and what is read to
//! recount them) are written as the owner of those tables, rows of chom's own tables (`chom.vps_load`, the
//! Citus outbox) as chom (the owner of chom's schema, the role that created the extension). Either way inside a
//! security-restricted operation with `search_path` pinned to `pg_catalog, pg_temp`, as Postgres does its own
//! maintenance on another role's table (REFRESH MATERIALIZED VIEW, VACUUM, CREATE INDEX): an owner's trigger,
//! index expression or rule runs as the owner, and cannot `SET ROLE`, create temporary objects, leave a
//! deferred trigger or a cursor behind, or resolve a name through a schema the owner planted.

use crate::pg::errors::raise;
use crate::schema::target::{relation_oid, Target, CHOM_SCHEMA};
use pgrx::{pg_sys, PgSqlErrorCode};
use std::cell::RefCell;
use std::mem::ManuallyDrop;

/// Who a piece of chom's work runs as.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Principal {
    /// The owner of CHOM's tables: writes to `tenants`, recounts from `sites`, the quota's read of `tier_limits`.
    TablesOwner,
    /// The owner of chom's schema: writes to `chom.vps_load` and the Citus outbox.
    Chom,
}

thread_local! {
    /// The roles [`role_of`] found, per principal and schema of CHOM's tables, until the next relcache
    /// invalidation or change of a schema ([`forget_roles`]): a new owner (`ALTER TABLE ... OWNER TO`), a table
    /// dropped or created sends one. Every writing commit asks for both. Never dropped, like the plan cache.
    static ROLES: ManuallyDrop<RefCell<Vec<((Principal, String), pg_sys::Oid)>>> =
        const { ManuallyDrop::new(RefCell::new(Vec::new())) };
}

/// Forgets the roles [`role_of`] found; with the cached installation ([`crate::schema::resolve`]).
pub fn forget_roles() {
    ROLES.with(|roles| roles.borrow_mut().clear());
}

/// The role `principal` names for `target`, from the relation cache (no query).
pub fn role_of(target: &Target, principal: Principal) -> pg_sys::Oid {
    let known = ROLES.with(|roles| {
        roles
            .borrow()
            .iter()
            .find(|((p, schema), _)| *p == principal && *schema == target.schema)
            .map(|(_, role)| *role)
    });
    if let Some(role) = known {
        return role;
    }
    let role = owner_of(target, principal);
    ROLES.with(|roles| roles.borrow_mut().push(((principal, target.schema.clone()), role)));
    role
}

fn owner_of(target: &Target, principal: Principal) -> pg_sys::Oid {
    let (schema, table) = match principal {
        Principal::TablesOwner => (target.schema.as_str(), c"tenants"),
        Principal::Chom => (CHOM_SCHEMA, c"vps_load"),
    };
    relation_owner(schema, table).unwrap_or_else(|| {
        raise(
            PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            format!("chom: table {schema}.{} no longer exists", table.to_string_lossy()),
            Some("Run SELECT * FROM chom_status(); to see what chom finds."),
        )
    })
}

/// The owner of `schema.table`, None when there is no such relation.
fn relation_owner(schema: &str, table: &std::ffi::CStr) -> Option<pg_sys::Oid> {
    let relid = relation_oid(schema, table)?;
    // SAFETY: the relation is opened through the relcache only to read its pg_class row, and closed at once.
    unsafe {
        let relation = pg_sys::RelationIdGetRelation(relid);
        if relation.is_null() {
            return None;
        }
        let owner = (*(*relation).rd_rel).relowner;
        pg_sys::RelationClose(relation);
        Some(owner)
    }
}

/// Runs `work` as `principal` of `target` (see the module's doc); the caller's identity, security context and
/// settings are back when it returns, and after an error the (sub)transaction's abort restores them as it does
/// for Postgres's own maintenance commands.
pub fn run_as<R>(target: &Target, principal: Principal, work: impl FnOnce() -> R) -> R {
    // Citus plans a statement over distributed tables only with its values (a custom plan): there the plan
    // cache's own choice stays
    let _restricted = Restricted::enter(role_of(target, principal), !target.layout.distributed());
    work()
}

/// A security-restricted operation as `role`, undone on drop.
struct Restricted {
    saved_user: pg_sys::Oid,
    saved_context: std::ffi::c_int,
    guc_nest_level: std::ffi::c_int,
}

impl Restricted {
    fn enter(role: pg_sys::Oid, generic_plans: bool) -> Restricted {
        let mut saved_user = pg_sys::InvalidOid;
        let mut saved_context = 0;
        // SAFETY: the same calls, in the same order, as ExecRefreshMatView(): the user id and security context
        // are saved and switched, then a GUC nest level holds the pinned settings until it is popped.
        unsafe {
            pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_context);
            pg_sys::SetUserIdAndSecContext(
                role,
                saved_context
                    | pg_sys::SECURITY_LOCAL_USERID_CHANGE as std::ffi::c_int
                    | pg_sys::SECURITY_RESTRICTED_OPERATION as std::ffi::c_int,
            );
            let guc_nest_level = pg_sys::NewGUCNestLevel();
            // chom's statements are keyed look-ups whose generic plan is the right one (src/pg/plans.rs prepares a
            // statement's "every row" form apart): without this, the plan cache plans each execution anew for its
            // first five and whenever custom plans look no dearer
            let settings = [
                (c"search_path", crate::pg::settings::CATALOG_SEARCH_PATH),
                (c"plan_cache_mode", c"force_generic_plan"),
            ];
            for (name, value) in &settings[..if generic_plans { 2 } else { 1 }] {
                crate::pg::settings::set(name, value, pg_sys::GucAction::GUC_ACTION_SAVE);
            }
            Restricted { saved_user, saved_context, guc_nest_level }
        }
    }
}

impl Drop for Restricted {
    fn drop(&mut self) {
        // SAFETY: pops exactly the nest level entered above and restores the saved identity; neither call
        // raises. While an error unwinds, the (sub)transaction abort that follows does the same again, harmlessly.
        unsafe {
            pg_sys::AtEOXact_GUC(false, self.guc_nest_level);
            pg_sys::SetUserIdAndSecContext(self.saved_user, self.saved_context);
        }
    }
}

/// Refuses a caller of chom_install() or chom_uninstall() who is neither a superuser nor has the privileges of
/// the role that owns CHOM's tables (42501). Those functions then do their DDL as chom (which may create chom's
/// triggers and tie objects to the extension) and their fills as the tables' owner: the caller gains nothing.
pub fn require_tables_owner_or_superuser(target: &Target, function: &str) {
    let owner = role_of(target, Principal::TablesOwner);
    // SAFETY: reads the current user id and the role membership cache.
    let allowed = unsafe {
        let caller = pg_sys::GetUserId();
        pg_sys::superuser_arg(caller) || pg_sys::has_privs_of_role(caller, owner)
    };
    if !allowed {
        raise(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied for {function}: only the owner of CHOM's tables or a superuser may run it"),
            Some("Run it as the role that owns tenants, sites and vps_servers (the application's migrations role)."),
        )
    }
}
