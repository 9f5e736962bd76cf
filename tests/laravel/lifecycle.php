<?php
// migrate:rollback of the kit's migration (down(), then up() again), then what `php artisan migrate:fresh` and
// RefreshDatabase do: Schema::dropAllTables() with chom installed, and the migrations again.

require __DIR__ . '/bootstrap.php';

use App\Models\Site;
use App\Models\Tenant;
use Illuminate\Support\Facades\DB;
use Illuminate\Support\Facades\Schema;

// rollback: chom_uninstall() and DROP EXTENSION; the cached columns stay (the application's migration added them)
run_migration(kit_migration(), 'down');
if (getenv('CHOM_DBA_CREATED') === '1') {
    // the migrations run as the tables' owner, not a superuser: an extension a DBA created stays, uninstalled
    check(one("SELECT count(*) FROM pg_extension WHERE extname = 'chom'") === 1, 'down() leaves the DBA\'s extension');
} else {
    check(one("SELECT count(*) FROM pg_extension WHERE extname = 'chom'") === 0, 'down() dropped the extension');
}
check(one("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'sites'::regclass AND NOT tgisinternal") === 0, 'down() removed the triggers');
check(Schema::hasColumns('tenants', ['cached_sites_count', 'cached_storage_mb', 'cached_at']), 'the application\'s cached columns stay');
run_migration(kit_migration(), 'down'); // twice: nothing to do
// writes while chom is not installed leave the columns stale; up() fills them again
$tenant = Tenant::where('slug', 'shared-1')->firstOrFail();
Site::create(['tenant_id' => $tenant->id, 'domain' => 'uninstalled.test', 'storage_used_mb' => 123]);
run_migration(kit_migration(), 'up');
$problems = status_problems();
check($problems === [], 'chom_status() after down() and up(): ' . implode('; ', $problems));
assert_exact('after down() and up()');
say('rollback: ok');

// migrate:fresh
try {
    Schema::dropAllTables();
} catch (Throwable $e) {
    fail('Schema::dropAllTables() with chom installed (SQLSTATE ' . sqlstate($e) . '): ' . $e->getMessage());
}
$left = array_map(fn ($r) => array_values((array) $r)[0], Schema::getAllTables());
check($left === [], 'Schema::dropAllTables() left no table in the application\'s schema: ' . implode(', ', $left));
try {
    $ghost = one('SELECT chom_pick_vps()::text');
    check($ghost === null, "chom_pick_vps() with vps_servers dropped answers NULL or an error, not a VPS id ($ghost)");
} catch (Throwable $e) {
    say('chom_pick_vps() with the tables dropped: SQLSTATE ' . sqlstate($e) . ' ' . $e->getMessage());
}
try {
    foreach (DB::select('SELECT * FROM chom_status()') as $row) {
        say("chom_status() with the tables dropped: $row->kind $row->name $row->state $row->detail");
    }
} catch (Throwable $e) {
    say('chom_status() with the tables dropped: SQLSTATE ' . sqlstate($e) . ' ' . $e->getMessage());
}
migrate();
$problems = status_problems();
check($problems === [], 'chom_status() after migrate:fresh: ' . implode('; ', $problems));
check(one('SELECT chom_pick_vps()::text') === null, 'chom_pick_vps() after migrate:fresh, before any VPS: NULL');
assert_exact('after migrate:fresh');
say("lifecycle: ok ({$GLOBALS['checks']} checks)");
