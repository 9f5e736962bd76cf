<?php
// The application's own migrations on columns chom uses, through Laravel's Schema builder (issue 16):
//   renameColumn('storage_used_mb', 'storage_mb') on sites: accepted, and every write keeps working and exact;
//   dropColumn('cached_sites_count') on tenants: refused up front with SQLSTATE 2BP01 or 42P16.
// Each part is checked and reported; the script exits 1 if any part failed.

require __DIR__ . '/bootstrap.php';

use App\Models\Tenant;
use Illuminate\Database\Schema\Blueprint;
use Illuminate\Support\Facades\DB;
use Illuminate\Support\Facades\Schema;
use Illuminate\Support\Str;

$failures = [];
$expect = function (bool $ok, string $what) {
    $GLOBALS['checks']++;
    if (!$ok) {
        throw new RuntimeException($what);
    }
};
$part = function (string $name, callable $body) use (&$failures) {
    DB::enableQueryLog();
    DB::flushQueryLog();
    try {
        $body();
        say("$name: ok");
    } catch (Throwable $e) {
        $state = sqlstate($e);
        $failures[] = "$name: " . ($state ? "SQLSTATE $state: " : '') . $e->getMessage();
        say("$name: FAILED: " . $e->getMessage());
        if (DB::transactionLevel() > 0) {
            DB::rollBack(0);
        }
    }
    foreach (DB::getQueryLog() as $q) {
        if (preg_match('/^\s*(alter|drop|create)/i', $q['query'])) {
            say("  DDL sent by Laravel: {$q['query']}");
        }
    }
    DB::disableQueryLog();
};
$tenant = Tenant::where('slug', 'shared-1')->firstOrFail();
$vps = DB::table('vps_servers')->where('status', 'active')->orderBy('id')->value('id');

/** Writes of every kind on sites with the storage column named $storage, then exact with that name. */
$writesAreExact = function (string $storage, string $tag) use ($tenant, $vps, $expect) {
    $ids = [];
    foreach ([100, 200, 300] as $mb) {
        $ids[] = $id = (string) Str::uuid();
        DB::table('sites')->insert(['id' => $id, 'tenant_id' => $tenant->id, 'vps_id' => $vps, 'domain' => "$tag-$mb.test", $storage => $mb, 'created_at' => now()]);
    }
    DB::table('sites')->where('id', $ids[0])->update([$storage => 150]);
    DB::table('sites')->where('id', $ids[1])->increment($storage, 25);
    DB::table('sites')->where('id', $ids[2])->update(['deleted_at' => now()]);
    DB::transaction(function () use ($ids, $storage) {
        DB::table('sites')->where('id', $ids[2])->update(['deleted_at' => null, $storage => 1]);
        DB::table('sites')->where('id', $ids[0])->delete();
    });
    $drift = DB::select('SELECT * FROM chom_cache_drift()');
    $expect($drift === [], 'chom_cache_drift() empty: ' . json_encode($drift));
    $expect(DB::select('SELECT * FROM chom_vps_drift()') === [], 'chom_vps_drift() empty');
    $recount = DB::select(
        "SELECT t.id FROM tenants t CROSS JOIN LATERAL (SELECT count(*) AS n, coalesce(sum(s.\"$storage\"), 0) AS mb
         FROM sites s WHERE s.tenant_id = t.id AND s.deleted_at IS NULL) live
         WHERE (t.cached_sites_count, t.cached_storage_mb) IS DISTINCT FROM (live.n, live.mb)"
    );
    $expect($recount === [], "tenants' cached columns equal a recount of sites.$storage: " . json_encode($recount));
    $expect($tenant->getStorageUsedMb() === (int) DB::table('sites')->where('tenant_id', $tenant->id)->whereNull('deleted_at')->sum($storage), 'getStorageUsedMb() = live sum');
};

/** Runs a Schema builder change that chom must accept; says so when it is refused. */
$accepted = function (string $what, callable $change) {
    try {
        $change();
    } catch (Throwable $e) {
        throw new RuntimeException("$what was refused (SQLSTATE " . sqlstate($e) . '); chom must follow a rename: ' . $e->getMessage(), 0, $e);
    }
};
/** Runs the writes after a change; says so when they fail. */
$stillExact = function (string $after, string $storage, string $tag) use ($writesAreExact) {
    try {
        $writesAreExact($storage, $tag);
    } catch (Throwable $e) {
        throw new RuntimeException("after $after: " . $e->getMessage(), 0, $e);
    }
};

$part('renameColumn sites.storage_used_mb -> storage_mb, then writes', function () use ($accepted, $stillExact) {
    $accepted('renameColumn(storage_used_mb, storage_mb)', fn () => Schema::table('sites', fn (Blueprint $table) => $table->renameColumn('storage_used_mb', 'storage_mb')));
    $stillExact('renameColumn(storage_used_mb, storage_mb)', 'storage_mb', 'renamed');
});
if (Schema::hasColumn('sites', 'storage_mb')) {
    $part('renameColumn sites.storage_mb -> storage_used_mb (back), then writes', function () use ($accepted, $stillExact) {
        $accepted('renameColumn(storage_mb, storage_used_mb)', fn () => Schema::table('sites', fn (Blueprint $table) => $table->renameColumn('storage_mb', 'storage_used_mb')));
        $stillExact('renameColumn(storage_mb, storage_used_mb)', 'storage_used_mb', 'renamed-back');
    });
}

$part('dropColumn tenants.cached_sites_count is refused', function () use ($expect, $stillExact) {
    $refusal = null;
    try {
        Schema::table('tenants', fn (Blueprint $table) => $table->dropColumn('cached_sites_count'));
    } catch (Throwable $e) {
        $refusal = $e;
    }
    $expect($refusal !== null, 'dropColumn(cached_sites_count) was accepted; chom must refuse it (2BP01 or 42P16)');
    $expect(in_array(sqlstate($refusal), ['2BP01', '42P16'], true), 'refused with SQLSTATE 2BP01 or 42P16, got ' . sqlstate($refusal) . ': ' . $refusal->getMessage());
    say('  refusal: ' . $refusal->getMessage());
    $expect(Schema::hasColumn('tenants', 'cached_sites_count'), 'the column is still there');
    $stillExact('the refused dropColumn', 'storage_used_mb', 'after-drop');
});

if ($failures !== []) {
    fwrite(STDERR, "FAIL: " . count($failures) . " part(s) failed:\n  " . implode("\n  ", $failures) . "\n");
    exit(1);
}
say("schema changes: ok ({$GLOBALS['checks']} checks)");
