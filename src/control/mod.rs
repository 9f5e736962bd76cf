//! The control plane: the Citus layout checks, the one inspection of the catalogue, the decision that
//! classifies it into typed states and plans, and what acts on or reports them: install and uninstall, the
//! status, the guard on DDL. Declared bottom-up.

pub mod citus;
pub mod inspect;
pub mod decide;
pub mod install;
pub mod status;
pub mod guard;
