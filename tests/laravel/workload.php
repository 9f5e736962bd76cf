<?php
// One of several concurrent PHP processes writing through Eloquent and Laravel's query builder.
// Usage: workload.php <worker> <seed> <operations>
//
// Each worker updates, deletes and moves only the sites it created (domains w<worker>-...) and flips the health
// of its own VPS; tenants and VPSes are shared, in random order, and several writes of random tenants go into one
// DB::transaction(), so any deadlock (SQLSTATE 40P01) would be chom's. Deadlocks are counted and reported (the
// Rust side requires 0); any other error fails the worker. Its private tenant (private-w<worker>) is written by
// it alone, so the kit's reads must equal a live count of it at any moment, inside transactions too.

require __DIR__ . '/bootstrap.php';

use App\Models\Site;
use App\Models\Tenant;
use App\Models\VpsServer;
use App\Services\VPS\VpsAllocationService;
use Illuminate\Support\Facades\DB;
use Illuminate\Support\Str;

$worker = (int) ($argv[1] ?? 0);
$seed = (int) ($argv[2] ?? 1);
$operations = (int) ($argv[3] ?? 100);
mt_srand($seed * 1000003 + $worker);
DB::statement("SET deadlock_timeout = '50ms'");

$shared = Tenant::where('slug', 'like', 'shared-%')->orderBy('slug')->get()->all();
$sharedIds = array_map(fn ($t) => $t->id, $shared);
$private = Tenant::where('slug', "private-w$worker")->firstOrFail();
$organization = $private->organization_id;
$ownVps = VpsServer::where('hostname', "vps-w$worker.test")->firstOrFail();
$vpsIds = VpsServer::active()->shared()->orderBy('id')->pluck('id')->all();
$service = new VpsAllocationService();
$prefix = "w$worker-";

$pick = fn (array $items) => $items[mt_rand(0, count($items) - 1)];
$domain = fn () => $prefix . Str::uuid() . '.test';
$someTenant = fn () => mt_rand(0, 3) === 0 ? $private : $pick($shared);
$someVps = fn () => mt_rand(0, 9) === 0 ? null : $pick($vpsIds);
$attributes = fn (Tenant $tenant) => [
    'tenant_id' => $tenant->id, 'vps_id' => $someVps(), 'domain' => $domain(),
    'site_type' => $pick(['wordpress', 'html', 'laravel']), 'status' => $pick(['creating', 'active']),
    'storage_used_mb' => mt_rand(0, 2000),
];
/** One of this worker's sites (live, trashed or either), or null. */
$own = function (string $which = 'live', ?array $tenantIds = null) use ($prefix, $pick) {
    $query = Site::withTrashed()->where('domain', 'like', "$prefix%");
    if ($which === 'live') {
        $query->whereNull('deleted_at');
    } elseif ($which === 'trashed') {
        $query->whereNotNull('deleted_at');
    }
    if ($tenantIds !== null) {
        $query->whereIn('tenant_id', $tenantIds);
    }
    $ids = $query->orderBy('id')->pluck('id')->all();
    return $ids === [] ? null : Site::withTrashed()->find($pick($ids));
};
$row = function (Tenant $tenant, bool $deleted = false) use ($attributes) {
    return array_merge($attributes($tenant), [
        'id' => (string) Str::uuid(), 'php_version' => '8.2', 'created_at' => now(), 'updated_at' => now(),
        'deleted_at' => $deleted ? now() : null,
    ]);
};
/** The kit's reads of the private tenant against a live count, wherever this runs (inside transactions too). */
$readsAreExact = function (string $where) use ($private) {
    $live = Site::where('tenant_id', $private->id);
    $count = (clone $live)->count();
    $storage = (int) (clone $live)->sum('storage_used_mb');
    check($private->getSiteCount() === $count, "getSiteCount() = live count ($count) $where");
    check($private->getStorageUsedMb() === $storage, "getStorageUsedMb() = live sum ($storage) $where");
    $quota = $private->siteQuota();
    check((int) $quota->sites_count === $count, "chom_tenant_quota().sites_count = live count $where");
    check($private->canCreateSite() === ($count < (int) $quota->max_sites), "canCreateSite() = count < max_sites $where");
};

$writes = [
    'place' => function () use ($service, $someTenant, $domain, $pick) {
        $site = $service->placeSite($someTenant(), ['domain' => $domain(), 'site_type' => $pick(['wordpress', 'html']), 'status' => 'creating', 'storage_used_mb' => mt_rand(0, 500)]);
        check($site->vps_id !== null && VpsServer::find($site->vps_id) !== null, 'placeSite() put the site on a VPS that exists');
    },
    'create' => fn () => Site::create($attributes($someTenant())),
    'update' => function () use ($own, $pick) {
        $own()?->update(['status' => $pick(['active', 'disabled']), 'storage_used_mb' => mt_rand(0, 5000)]);
    },
    'increment' => function () use ($own) {
        $site = $own();
        if ($site !== null) {
            mt_rand(0, 2) ? $site->increment('storage_used_mb', mt_rand(1, 300)) : $site->decrement('storage_used_mb', mt_rand(0, min(50, $site->storage_used_mb)));
        }
    },
    'soft_delete' => fn () => $own()?->delete(),
    'restore' => fn () => $own('trashed')?->restore(),
    'force_delete' => fn () => $own('any')?->forceDelete(),
    'mass_update' => function () use ($prefix, $someTenant) {
        Site::where('domain', 'like', "$prefix%")->where('tenant_id', $someTenant()->id)
            ->update(['storage_used_mb' => DB::raw('storage_used_mb + 7')]);
    },
    'bulk_soft_delete' => function () use ($prefix) {
        $ids = Site::where('domain', 'like', "$prefix%")->orderBy('id')->limit(mt_rand(1, 3))->pluck('id')->all();
        DB::table('sites')->whereIn('id', $ids)->update(['deleted_at' => now()]);
    },
    'move' => function () use ($prefix, $sharedIds, $pick, $someVps) {
        $ids = Site::withTrashed()->where('domain', 'like', "$prefix%")->whereIn('tenant_id', $sharedIds)
            ->orderBy('id')->pluck('id')->all();
        if ($ids !== []) {
            $moved = array_slice($ids, mt_rand(0, count($ids) - 1), mt_rand(1, 3));
            Site::withTrashed()->whereIn('id', $moved)->update(['tenant_id' => $pick($sharedIds), 'vps_id' => $someVps()]);
        }
    },
    'insert' => function () use ($row, $someTenant) {
        $rows = [];
        for ($n = mt_rand(2, 6); $n > 0; $n--) {
            $rows[] = $row($someTenant(), mt_rand(0, 3) === 0);
        }
        Site::insert($rows);
    },
    'upsert' => function () use ($row, $someTenant, $prefix) {
        $rows = [];
        foreach (Site::where('domain', 'like', "$prefix%")->orderBy('id')->limit(2)->get() as $site) {
            $rows[] = [
                'id' => $site->id, 'tenant_id' => $site->tenant_id, 'vps_id' => $site->vps_id, 'domain' => $site->domain,
                'storage_used_mb' => mt_rand(0, 9000),
            ];
        }
        for ($n = count($rows); $n < 4; $n++) {
            $new = $row($someTenant());
            $rows[] = array_intersect_key($new, array_flip(['id', 'tenant_id', 'vps_id', 'domain', 'storage_used_mb']));
        }
        Site::upsert($rows, ['id'], ['storage_used_mb']);
    },
    'nested' => function () use ($private, $attributes, $readsAreExact) {
        $inner = null;
        $outer = DB::transaction(function () use ($private, $attributes, $readsAreExact, &$inner) {
            $first = Site::create($attributes($private));
            try {
                DB::transaction(function () use ($private, $attributes, $first, &$inner) {
                    $inner = Site::create($attributes($private))->id;
                    Site::whereKey($first->id)->increment('storage_used_mb', 1000);
                    throw new RuntimeException('inner transaction rolled back');
                });
            } catch (RuntimeException $e) {
                check($e->getMessage() === 'inner transaction rolled back', 'the inner transaction threw: ' . $e->getMessage());
            }
            $last = Site::create($attributes($private));
            $readsAreExact('inside a transaction after a rolled-back inner transaction');
            return [$first, $last];
        });
        check(Site::withTrashed()->find($inner) === null, 'the rolled-back inner transaction left no site');
        check(Site::find($outer[0]->id)?->storage_used_mb === $outer[0]->storage_used_mb, 'the rolled-back increment is gone');
        check(Site::find($outer[1]->id) !== null, 'the outer transaction committed its sites');
    },
    'vps_update' => function () use ($ownVps, $pick, $attributes, $someTenant) {
        $ownVps->update(['health_status' => $pick(['healthy', 'unknown', 'degraded'])]);
        Site::create(array_merge($attributes($someTenant()), ['vps_id' => $ownVps->id]));
    },
    'temp_vps' => function () use ($attributes, $someTenant, $prefix) {
        $vps = VpsServer::create([
            'hostname' => $prefix . Str::uuid() . '.vps', 'ip_address' => '192.0.2.1', 'provider' => 'test', 'spec_cpu' => 1,
            'spec_memory_mb' => 1024, 'spec_disk_gb' => 10, 'status' => 'provisioning',
        ]);
        for ($n = mt_rand(1, 3); $n > 0; $n--) {
            Site::create(array_merge($attributes($someTenant()), ['vps_id' => $vps->id]));
        }
        $vps->delete(); // ON DELETE SET NULL on sites.vps_id
    },
    'temp_tenant' => function () use ($organization, $prefix, $row) {
        $tenant = Tenant::create([
            'organization_id' => $organization, 'name' => 'Temporary', 'slug' => $prefix . Str::uuid(), 'tier' => 'enterprise',
            'cached_sites_count' => 999, // not fillable: discarded
        ]);
        Site::insert([$row($tenant), $row($tenant), $row($tenant, true)]);
        check($tenant->getSiteCount() === 2, 'a new tenant with 2 live sites inserted by insert(): getSiteCount() = 2');
        $tenant->delete(); // ON DELETE CASCADE on sites.tenant_id
    },
];
$reads = [
    'reads' => fn () => $readsAreExact('in autocommit'),
    'reads_after_write' => function () use ($private, $attributes, $readsAreExact, $own) {
        DB::transaction(function () use ($private, $attributes, $readsAreExact, $own) {
            Site::create($attributes($private));
            $own('live', [$private->id])?->delete();
            $readsAreExact('inside a transaction after its own writes');
        });
    },
    'pick' => function () use ($service) {
        DB::transaction(function () use ($service) {
            $vps = $service->findSharedVpsWithCapacity();
            check($vps !== null, 'chom_pick_vps() found an eligible VPS');
            check($vps->status === 'active' && $vps->allocation_type === 'shared', 'chom_pick_vps() picked an active shared VPS');
            check($vps->getSiteCount() >= 0, 'VpsServer::getSiteCount() through chom');
        });
    },
    'tenant_update' => function () use ($shared, $pick, $worker) {
        $tenant = Tenant::find($pick($shared)->id);
        $tenant->update(['settings' => ['touched_by' => $worker, 'n' => mt_rand()]]);
        $tenant->forceFill(['cached_sites_count' => 0]);
        try {
            $tenant->save();
            fail('saving a tenant with cached_sites_count changed was not refused');
        } catch (LogicException $e) {
            check(str_contains($e->getMessage(), 'cached_sites_count'), 'the cached columns are refused: ' . $e->getMessage());
        }
    },
];
$weights = [
    'place' => 6, 'create' => 6, 'update' => 5, 'increment' => 5, 'soft_delete' => 4, 'restore' => 3, 'force_delete' => 2,
    'mass_update' => 3, 'bulk_soft_delete' => 1, 'move' => 3, 'insert' => 3, 'upsert' => 3, 'nested' => 3, 'vps_update' => 2,
    'temp_vps' => 1, 'temp_tenant' => 1, 'reads' => 3, 'reads_after_write' => 2, 'pick' => 2, 'tenant_update' => 1,
    'multi' => 10,
];
$all = $writes + $reads;
$choose = function (array $names) use ($weights) {
    $total = array_sum(array_map(fn ($n) => $weights[$n], $names));
    $r = mt_rand(1, $total);
    foreach ($names as $name) {
        if (($r -= $weights[$name]) <= 0) {
            return $name;
        }
    }
};
$multiParts = array_diff(array_keys($writes), ['nested', 'temp_vps', 'temp_tenant']);
$all['multi'] = function () use ($choose, $multiParts, $writes, &$done) {
    DB::transaction(function () use ($choose, $multiParts, $writes, &$done) {
        for ($n = mt_rand(2, 6); $n > 0; $n--) {
            $name = $choose($multiParts);
            $writes[$name]();
            $done["multi:$name"] = ($done["multi:$name"] ?? 0) + 1;
        }
    });
};

$done = [];
$deadlocks = 0;
for ($n = 0; $n < $operations; $n++) {
    $name = $choose(array_keys($all));
    try {
        $all[$name]();
        $done[$name] = ($done[$name] ?? 0) + 1;
    } catch (Throwable $e) {
        if (sqlstate($e) === '40P01') {
            $deadlocks++;
            say("deadlock in $name: " . $e->getMessage());
            continue;
        }
        fail("worker $worker, operation $n ($name): " . get_class($e) . ': ' . $e->getMessage() . "\n" . $e->getTraceAsString());
    }
    check(DB::transactionLevel() === 0, "no transaction left open after $name");
}
ksort($done);
say("RESULT worker=$worker deadlocks=$deadlocks operations=$operations checks={$GLOBALS['checks']} " . json_encode($done));
