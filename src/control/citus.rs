//! The Citus layout chom can keep exact, checked before an install, and the shards whose trigger copies are
//! missing, for the status.

use crate::pg::errors::raise;
use crate::schema::queries::{self, Query};
use crate::schema::target::{Col, Target};
use pgrx::PgSqlErrorCode;
use std::collections::HashMap;

/// Refuses a Citus layout chom cannot keep exact: `sites` must be distributed by its tenant, `tenants` by its
/// id, both colocated, and `vps_servers` a reference table.
pub fn check_layout(target: &Target) {
    let problems: Option<String> = crate::pg::db::one(
        &queries::sql(target, Query::CitusLayoutProblems),
        &[
            target.table("sites").into(),
            target.table("tenants").into(),
            target.table("vps_servers").into(),
            target.column(Col::SitesTenantId).to_string().into(),
            target.column(Col::TenantsId).to_string().into(),
        ],
    );
    if let Some(problems) = problems {
        raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("chom cannot be installed on this Citus layout: {problems}"),
            Some("Distribute CHOM's schema with sql/citus/distribute.sql (see docs/scaling.md)."),
        )
    }
}

/// The shards of `sites` on which one of chom's triggers is missing or disabled, as `trigger name → shards`.
pub fn shards_missing_triggers(target: &Target, triggers: &[&str]) -> HashMap<String, Vec<i64>> {
    let names: Vec<String> = triggers.iter().map(|t| t.to_string()).collect();
    let rows = crate::pg::db::rows(
        &queries::sql(target, Query::ShardsMissingTriggers),
        &[target.table("sites").into(), names.into()],
        |row| (row.required::<String>(1), row.required::<i64>(2)),
    );
    let mut missing: HashMap<String, Vec<i64>> = HashMap::new();
    for (trigger, shard) in rows {
        missing.entry(trigger).or_default().push(shard);
    }
    missing
}
