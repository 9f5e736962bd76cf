//! Per-backend caches that Postgres's invalidations empty: a module registers its `forget` function once, from
//! _PG_init, and it is called on any relcache invalidation (DDL on any table, in this backend or another) and on
//! a change to any row of the system caches named (a schema renamed, a function moved).

use pgrx::pg_sys;
use pgrx::prelude::*;

/// Calls `forget` on every relcache invalidation and on every invalidation of the system caches `syscaches`
/// (`pg_sys::SysCacheIdentifier` values). Called from _PG_init only.
pub fn forget_on_invalidation(forget: fn(), syscaches: &[pg_sys::SysCacheIdentifier::Type]) {
    // the function pointer rides in the callback's argument, so one trampoline serves every cache
    let argument = pg_sys::Datum::from(forget as usize);
    // SAFETY: registering callbacks with static functions, as Postgres expects from _PG_init.
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(Some(on_relcache_invalidation), argument);
        for cache in syscaches {
            pg_sys::CacheRegisterSyscacheCallback(*cache as std::ffi::c_int, Some(on_syscache_invalidation), argument);
        }
    }
}

/// # Safety
/// `argument` must be a `fn()` that [`forget_on_invalidation`] registered.
unsafe fn call(argument: pg_sys::Datum) {
    // SAFETY: the caller's contract: the argument is the address of a `fn()`.
    let forget: fn() = unsafe { std::mem::transmute::<usize, fn()>(argument.value()) };
    forget();
}

#[pg_guard]
unsafe extern "C-unwind" fn on_relcache_invalidation(argument: pg_sys::Datum, _relid: pg_sys::Oid) {
    // SAFETY: registered by forget_on_invalidation with a fn() as its argument.
    unsafe { call(argument) }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_syscache_invalidation(argument: pg_sys::Datum, _cache: i32, _hash: u32) {
    // SAFETY: registered by forget_on_invalidation with a fn() as its argument.
    unsafe { call(argument) }
}
