//! Thin SPI helpers: one value from a query (None when there is no row), and statements whose failure is a
//! chom bug reported with the statement.

use crate::errors::spi;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::SpiHeapTupleData;
use pgrx::{FromDatum, IntoDatum};

/// The first column of the first row, or None when there is no row or it is NULL.
pub fn one<T: FromDatum + IntoDatum>(sql: &str, args: &[DatumWithOid<'_>]) -> Option<T> {
    Spi::connect(|client| {
        let rows = spi(client.select(sql, Some(1), args), sql);
        rows.into_iter().next().and_then(|row| row.get::<T>(1).ok().flatten())
    })
}

/// One row of a result, read by column ordinal (1-based); NULL reads as None.
pub struct Row<'a, 'conn>(&'a SpiHeapTupleData<'conn>);

impl Row<'_, '_> {
    pub fn get<T: FromDatum + IntoDatum>(&self, ordinal: usize) -> Option<T> {
        self.0.get::<T>(ordinal).ok().flatten()
    }
}

/// Every row of a query, each turned into a value by `each`.
pub fn rows<T>(sql: &str, args: &[DatumWithOid<'_>], mut each: impl FnMut(Row) -> T) -> Vec<T> {
    Spi::connect(|client| spi(client.select(sql, None, args), sql).map(|row| each(Row(&row))).collect())
}

/// Runs a statement.
pub fn run(sql: &str, args: &[DatumWithOid<'_>]) {
    spi(Spi::run_with_args(sql, args), sql);
}
