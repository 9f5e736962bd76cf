<?php
// Shared by the PHP scripts of tests/laravel.rs: Laravel's database layer (Debian's php-illuminate-database,
// Eloquent 8.x) used standalone through Capsule, connected over the test server's unix socket as postgres,
// with the DB and Schema facades, model events, and the App\ classes: the kit's (integrations/laravel/app)
// first, then this test's models and stand-ins (tests/laravel/app).
//
// Environment: CHOM_PG_HOST (the server's socket directory), CHOM_PG_PORT, CHOM_PG_DATABASE.
// Every check that fails prints FAIL and exits 1; an uncaught exception exits 255.

declare(strict_types=1);

error_reporting(E_ALL);
set_error_handler(function (int $severity, string $message, string $file, int $line) {
    throw new ErrorException($message, 0, $severity, $file, $line);
});

require_once 'Illuminate/Database/autoload.php';
require_once 'Illuminate/Events/autoload.php';
require_once 'Ramsey/Uuid/autoload.php';
require_once 'Doctrine/DBAL/autoload.php';

use Illuminate\Container\Container;
use Illuminate\Database\Capsule\Manager as Capsule;
use Illuminate\Events\Dispatcher;
use Illuminate\Support\Facades\DB;
use Illuminate\Support\Facades\Facade;

const REPO = __DIR__ . '/../..';
const KIT = REPO . '/integrations/laravel';
const FIXTURE = REPO . '/tests/fixtures/chom_schema.sql';

spl_autoload_register(function (string $class) {
    if (strncmp($class, 'App\\', 4) !== 0) {
        return;
    }
    $relative = str_replace('\\', '/', substr($class, 4)) . '.php';
    foreach ([KIT . '/app/', __DIR__ . '/app/'] as $root) {
        if (is_file($root . $relative)) {
            require $root . $relative;
            return;
        }
    }
});

function env_or_fail(string $name): string
{
    $value = getenv($name);
    if ($value === false || $value === '') {
        fwrite(STDERR, "FAIL: environment variable $name is not set\n");
        exit(1);
    }
    return $value;
}

$container = new Container();
$capsule = new Capsule($container);
$capsule->addConnection([
    'driver' => 'pgsql',
    'host' => env_or_fail('CHOM_PG_HOST'),
    'port' => env_or_fail('CHOM_PG_PORT'),
    'database' => env_or_fail('CHOM_PG_DATABASE'),
    'username' => getenv('CHOM_PG_USER') ?: 'postgres', // the tables' owner, when a DBA created the extension
    'password' => '',
    'charset' => 'utf8',
    'prefix' => '',
    'schema' => 'public', // Laravel sets search_path to exactly this, as an application does
]);
// a SQLite connection that is never opened (no pdo_sqlite here): the kit's migration must skip itself on it
$capsule->addConnection(['driver' => 'sqlite', 'database' => ':memory:', 'prefix' => ''], 'sqlite');
$capsule->setEventDispatcher(new Dispatcher($container));
$capsule->setAsGlobal();
$capsule->bootEloquent();
$container->instance('db', $capsule->getDatabaseManager());
Facade::setFacadeApplication($container);

$GLOBALS['checks'] = 0;

if (!function_exists('now')) {
    /** Laravel's helper (from the framework, not the database package). */
    function now(): Illuminate\Support\Carbon
    {
        return Illuminate\Support\Carbon::now();
    }
}

/** Fails the script (exit 1) when $ok is false. */
function check(bool $ok, string $what): void
{
    $GLOBALS['checks']++;
    if (!$ok) {
        fwrite(STDERR, "FAIL: $what\n");
        exit(1);
    }
}

function fail(string $what): never
{
    fwrite(STDERR, "FAIL: $what\n");
    exit(1);
}

function say(string $line): void
{
    echo $line, "\n";
}

/** The SQLSTATE of a database exception (QueryException or a bare PDOException from COMMIT), else null. */
function sqlstate(Throwable $e): ?string
{
    for (; $e !== null; $e = $e->getPrevious()) {
        if ($e instanceof PDOException) {
            return $e->errorInfo[0] ?? (string) $e->getCode();
        }
    }
    return null;
}

function one(string $sql, array $bindings = []): mixed
{
    $row = DB::selectOne($sql, $bindings);
    return $row === null ? null : array_values((array) $row)[0];
}

/** Runs a migration as Laravel's Migrator does on pgsql: up() or down() inside a transaction. */
function run_migration(object $migration, string $method = 'up'): void
{
    $connection = DB::connection($migration->getConnection());
    $run = fn () => $migration->{$method}();
    $migration->withinTransaction ? $connection->transaction($run) : $run();
}

function kit_migration(): object
{
    return require KIT . '/database/migrations/2026_02_01_000000_install_chom.php';
}

/**
 * The application's migrations, in order: CHOM's schema up to 2024_01_01_000014 (the fixture, captured from
 * Laravel's own schema builder), then its cached-aggregates migration (a Schema builder migration in
 * tests/laravel/migrations), then the kit's install migration.
 */
function migrate(): void
{
    DB::transaction(fn () => DB::unprepared(file_get_contents(FIXTURE)));
    run_migration(require __DIR__ . '/migrations/2025_01_01_000001_add_cached_aggregates_to_tenants.php');
    run_migration(kit_migration());
}

/** Rows of chom_status() that are not installed or reused: empty when chom is fully installed. */
function status_problems(): array
{
    return array_map(
        fn ($r) => "$r->kind $r->name: $r->state ($r->detail)",
        DB::select("SELECT * FROM chom_status() WHERE state NOT IN ('installed', 'reused')")
    );
}

/** chom's own drift checks and an independent recount of every tenant and VPS; fails on any difference. */
function assert_exact(string $when): void
{
    $cache = DB::select('SELECT * FROM chom_cache_drift()');
    check($cache === [], "chom_cache_drift() empty $when: " . json_encode($cache));
    $vps = DB::select('SELECT * FROM chom_vps_drift()');
    check($vps === [], "chom_vps_drift() empty $when: " . json_encode($vps));
    $tenants = DB::select(
        'SELECT t.id, t.cached_sites_count, t.cached_storage_mb, live.n, live.mb FROM tenants t
         CROSS JOIN LATERAL (SELECT count(*) AS n, coalesce(sum(s.storage_used_mb), 0) AS mb
                             FROM sites s WHERE s.tenant_id = t.id AND s.deleted_at IS NULL) live
         WHERE (t.cached_sites_count, t.cached_storage_mb) IS DISTINCT FROM (live.n, live.mb)'
    );
    check($tenants === [], "tenants' cached columns equal a recount of live sites $when: " . json_encode($tenants));
    $load = DB::select(
        'SELECT v.id, l.live_sites, (SELECT count(*) FROM sites s WHERE s.vps_id = v.id AND s.deleted_at IS NULL) AS actual
         FROM vps_servers v LEFT JOIN chom_vps_load() l ON l.vps_id = v.id
         WHERE l.live_sites IS DISTINCT FROM (SELECT count(*) FROM sites s WHERE s.vps_id = v.id AND s.deleted_at IS NULL)'
    );
    check($load === [], "chom_vps_load() equals a recount of live sites per VPS $when: " . json_encode($load));
    $ghosts = DB::select('SELECT l.vps_id FROM chom_vps_load() l WHERE NOT EXISTS (SELECT 1 FROM vps_servers v WHERE v.id = l.vps_id)');
    check($ghosts === [], "chom_vps_load() lists only VPSes that exist $when: " . json_encode($ghosts));
}
