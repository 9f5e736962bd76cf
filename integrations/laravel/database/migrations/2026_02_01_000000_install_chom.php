<?php

use Illuminate\Database\Migrations\Migration;
use Illuminate\Support\Facades\DB;

/**
 * Installs chom into the application's PostgreSQL database.
 *
 * Order: this file must sort after 2025_01_01_000001_add_cached_aggregates_to_tenants (chom adopts the three
 * cached columns that migration adds; the other way round that migration would fail on "column already
 * exists") and after 2025_01_01_000000_add_critical_performance_indexes (chom finds those indexes and does not
 * build them twice). It is dated after every migration CHOM has, so that `migrate` and `migrate:fresh`
 * install chom on the finished schema; when you copy it in, keep it last (`php artisan make:migration` dates).
 *
 * up() runs CREATE EXTENSION and then chom_install() explicitly. PDO never shows NOTICEs: when CHOM's tables
 * are not there, CREATE EXTENSION installs only chom's functions and says so in a NOTICE nobody sees, while
 * chom_install() raises an ERROR naming every missing table or column, which Laravel reports. chom_install()
 * is idempotent: after CREATE EXTENSION has installed everything it only reports 'exists'.
 *
 * down() runs chom_uninstall() (triggers, chom's indexes, the fillfactor it set; the cached columns stay,
 * because the cached-aggregates migration added them and its own down() drops them) and then DROP EXTENSION
 * when this role owns the extension, so that a rollback leaves the schema as it was before this migration and
 * no chom_* function answers for an uninstalled chom. An extension a DBA created (up()'s CREATE EXTENSION was
 * then a no-op) stays, uninstalled; the next up() completes it. No CASCADE: if something of the application
 * depends on chom (a view calling chom_tenant_stats(), say), the rollback stops with that error instead of
 * dropping it silently.
 *
 * Both are skipped on other drivers: test suites on SQLite (DB_CONNECTION=sqlite) migrate without chom, and
 * the models fall back to plain counts there (see UsesChomAggregates).
 *
 * CREATE EXTENSION chom needs a superuser (chom is not a trusted extension), chom_install() the tables' owner or
 * a superuser: run migrations as one, or have a DBA create the extension first (integrations/laravel/README.md).
 *
 * Laravel runs a migration inside a transaction on pgsql ($withinTransaction), so the install is atomic
 * together with the migrations table entry. Installing takes a brief ACCESS EXCLUSIVE lock on tenants and
 * SHARE ROW EXCLUSIVE on sites and vps_servers; on a busy production database build the indexes first
 * (docs/install-and-upgrade.md, "Online install on a busy database").
 */
return new class extends Migration
{
    public function up(): void
    {
        $db = DB::connection($this->getConnection());
        if ($db->getDriverName() !== 'pgsql') {
            return;
        }
        $db->statement('CREATE EXTENSION IF NOT EXISTS chom');
        $db->select('SELECT * FROM chom_install()');
    }

    public function down(): void
    {
        $db = DB::connection($this->getConnection());
        if ($db->getDriverName() !== 'pgsql') {
            return;
        }
        $extension = $db->selectOne(
            "SELECT pg_has_role(extowner, 'MEMBER') AS owned FROM pg_extension WHERE extname = 'chom'"
        );
        if ($extension === null) {
            return;
        }
        $db->select('SELECT * FROM chom_uninstall()');
        if ($extension->owned) {
            $db->statement('DROP EXTENSION chom');
        }
    }
};
