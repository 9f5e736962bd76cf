//! The schema plane: where CHOM's tables are and what chom manages on them. The node kind under Citus, the
//! target (CHOM's schema, the columns chom uses, SQL rendering), who chom acts as, the named statements, the
//! catalogue of managed objects, and the one resolution of the installation. Declared bottom-up.

pub mod layout;
pub mod target;
pub mod identity;
pub mod queries;
pub mod catalog;
pub mod resolve;
