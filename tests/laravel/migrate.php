<?php
// The application's migrations with the kit's install migration last, on an empty database; then chom must be
// fully installed and exact. Before that, the kit's migration must skip itself on a SQLite connection.

require __DIR__ . '/bootstrap.php';

use Illuminate\Support\Facades\DB;

// No pdo_sqlite here: had up() or down() run anything on the SQLite connection, it would fail to connect.
// (Called directly: the transaction Laravel's Migrator wraps them in would itself open the connection.)
$default = DB::getDefaultConnection();
DB::setDefaultConnection('sqlite');
try {
    kit_migration()->up();
    kit_migration()->down();
} catch (Throwable $e) {
    fail('the install migration did not skip itself on SQLite: ' . $e->getMessage());
} finally {
    DB::setDefaultConnection($default);
}
check(true, 'the install migration skips itself on a SQLite connection');

migrate();
check(one("SELECT count(*) FROM pg_extension WHERE extname = 'chom'") === 1, 'the migration created the extension');
$problems = status_problems();
check($problems === [], 'chom_status() after the migrations: ' . implode('; ', $problems));
check(one("SELECT count(*) FROM chom_status() WHERE kind = 'trigger'") > 0, 'chom_status() lists chom\'s triggers');
assert_exact('after the migrations');
say("migrate: ok ({$GLOBALS['checks']} checks)");
