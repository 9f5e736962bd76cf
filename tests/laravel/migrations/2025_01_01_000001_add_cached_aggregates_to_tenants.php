<?php
// The application's cached-aggregates migration as this test runs it (Laravel's Schema builder): the three
// columns on tenants, their index, and a first fill from live sites. The kit's install migration runs after
// it, and chom adopts the columns and the index.

use Illuminate\Database\Migrations\Migration;
use Illuminate\Database\Schema\Blueprint;
use Illuminate\Support\Facades\DB;
use Illuminate\Support\Facades\Schema;

return new class extends Migration
{
    public function up(): void
    {
        Schema::table('tenants', function (Blueprint $table) {
            $table->bigInteger('cached_storage_mb')->default(0);
            $table->integer('cached_sites_count')->default(0);
            $table->timestamp('cached_at')->nullable();
            $table->index('cached_at', 'idx_tenants_cached_at');
        });
        DB::statement(
            'UPDATE tenants SET cached_at = now(),
                 cached_sites_count = (SELECT count(*) FROM sites s WHERE s.tenant_id = tenants.id AND s.deleted_at IS NULL),
                 cached_storage_mb = (SELECT coalesce(sum(s.storage_used_mb), 0) FROM sites s WHERE s.tenant_id = tenants.id AND s.deleted_at IS NULL)'
        );
    }

    public function down(): void
    {
        Schema::table('tenants', function (Blueprint $table) {
            $table->dropIndex('idx_tenants_cached_at');
            $table->dropColumn(['cached_storage_mb', 'cached_sites_count', 'cached_at']);
        });
    }
};
