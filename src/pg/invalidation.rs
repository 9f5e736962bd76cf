//! Per-backend caches that Postgres's invalidations empty: a module registers its `forget` function once, from
//! _PG_init, and it is called on any relcache invalidation (DDL on any table, in this backend or another) and on
//! a change to any row of the system caches named (a schema renamed, a function moved).

use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::RefCell;
use std::mem::ManuallyDrop;

thread_local! {
    /// Every registered forget function, all called by one relcache callback: a backend has ten relcache
    /// callback slots (MAX_RELCACHE_CALLBACKS) for every library it loads, Citus and an older chom included, and
    /// running out of them is FATAL. Never dropped.
    static FORGETS: ManuallyDrop<RefCell<Vec<fn()>>> = const { ManuallyDrop::new(RefCell::new(Vec::new())) };
}

/// Calls `forget` on every relcache invalidation and on every invalidation of the system caches `syscaches`
/// (`pg_sys::SysCacheIdentifier` values). Called from _PG_init only.
pub fn forget_on_invalidation(forget: fn(), syscaches: &[pg_sys::SysCacheIdentifier::Type]) {
    let first = FORGETS.with(|forgets| {
        let mut forgets = forgets.borrow_mut();
        forgets.push(forget);
        forgets.len() == 1
    });
    // SAFETY: registering callbacks with static functions, as Postgres expects from _PG_init; a syscache
    // callback carries its forget function in its argument.
    unsafe {
        if first {
            pg_sys::CacheRegisterRelcacheCallback(Some(on_relcache_invalidation), pg_sys::Datum::from(0));
        }
        for cache in syscaches {
            let argument = pg_sys::Datum::from(forget as usize);
            pg_sys::CacheRegisterSyscacheCallback(*cache as std::ffi::c_int, Some(on_syscache_invalidation), argument);
        }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_relcache_invalidation(_argument: pg_sys::Datum, _relid: pg_sys::Oid) {
    FORGETS.with(|forgets| forgets.borrow().iter().for_each(|forget| forget()));
}

#[pg_guard]
unsafe extern "C-unwind" fn on_syscache_invalidation(argument: pg_sys::Datum, _cache: i32, _hash: u32) {
    // SAFETY: forget_on_invalidation registers this callback with the address of a `fn()` as its argument.
    let forget: fn() = unsafe { std::mem::transmute::<usize, fn()>(argument.value()) };
    forget();
}
