//! Thin SPI helpers: one value from a query (None when there is no row or it is NULL), rows read by ordinal,
//! and statements whose failure is a chom bug reported with the statement. A value of the wrong type is an
//! error, never a default.

use crate::pg::errors::{raise, spi};
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::SpiHeapTupleData;
use pgrx::{FromDatum, IntoDatum, PgSqlErrorCode};

/// The first column of the first row, or None when there is no row or it is NULL; a value of another type
/// than `T` is an internal error (see [`nullable`]).
pub fn one<T: FromDatum + IntoDatum>(sql: &str, args: &[DatumWithOid<'_>]) -> Option<T> {
    Spi::connect(|client| {
        let rows = spi(client.select(sql, Some(1), args), sql);
        rows.into_iter().next().and_then(|row| nullable(&row, 1))
    })
}

/// One row of a result, read by column ordinal (1-based); NULL reads as None.
pub struct Row<'a, 'conn>(&'a SpiHeapTupleData<'conn>);

impl Row<'_, '_> {
    /// A column that may be NULL (see [`nullable`]).
    #[track_caller]
    pub fn get<T: FromDatum + IntoDatum>(&self, ordinal: usize) -> Option<T> {
        nullable(self.0, ordinal)
    }

    /// A column that chom's SQL never leaves NULL (see [`required`]).
    #[track_caller]
    pub fn required<T: FromDatum + IntoDatum>(&self, ordinal: usize) -> T {
        required(self.0, ordinal)
    }
}

/// Every row of a query, each turned into a value by `each`.
pub fn rows<T>(sql: &str, args: &[DatumWithOid<'_>], mut each: impl FnMut(Row) -> T) -> Vec<T> {
    Spi::connect(|client| spi(client.select(sql, None, args), sql).map(|row| each(Row(&row))).collect())
}

/// A column of a result row that chom's own SQL guarantees is there and not NULL; anything else is an
/// internal error with the column named, never a value made up in its place.
#[track_caller]
pub fn required<T: FromDatum + IntoDatum>(row: &SpiHeapTupleData<'_>, ordinal: usize) -> T {
    nullable(row, ordinal).unwrap_or_else(|| {
        raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("chom: column {ordinal} of a result is NULL"), None)
    })
}

/// A column of a result row that may be NULL (None). A value that cannot be read as `T` is an internal error
/// with the column named: chom's SQL fixes every column's type, so a mismatch is a bug to report, never a
/// NULL to answer with.
#[track_caller]
pub fn nullable<T: FromDatum + IntoDatum>(row: &SpiHeapTupleData<'_>, ordinal: usize) -> Option<T> {
    row.get::<T>(ordinal).unwrap_or_else(|e| {
        raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("chom: column {ordinal} of a result: {e}"), None)
    })
}

/// The internal error for a row or value that chom's own SQL always returns but did not.
#[track_caller]
pub fn missing(what: &str) -> ! {
    raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("chom: {what} returned no value"), None)
}

/// Runs a statement.
pub fn run(sql: &str, args: &[DatumWithOid<'_>]) {
    spi(Spi::run_with_args(sql, args), sql);
}
