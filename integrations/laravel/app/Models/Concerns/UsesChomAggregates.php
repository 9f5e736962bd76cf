<?php

namespace App\Models\Concerns;

use Illuminate\Database\Eloquent\Model;
use LogicException;

/**
 * Tenant's site count, storage and quota, answered by chom.
 *
 * chom keeps tenants.cached_sites_count, cached_storage_mb and cached_at exact on every write path (Eloquent,
 * query builder, insert(), upsert(), psql), so the application no longer counts, caches or refreshes anything:
 * Tenant::updateCachedStats(), isCacheStale(), the model events and the UpdateTenantMetrics listener go, and
 * the three columns leave $fillable. This trait also refuses, with a LogicException, any save or increment
 * of the model that would write them (forceFill(), direct assignment): only chom writes them.
 *
 * Counts are of live sites (deleted_at IS NULL), as Tenant::sites() counts them (Site uses SoftDeletes).
 *
 * Inside a transaction the reads include the transaction's own writes (chom's pending changes); the raw
 * columns ($tenant->cached_sites_count) show what is committed and folded: a busy tenant's may be behind by the
 * changes its concurrent commits spilled (docs/busy-tenant.md). Use the methods, not the columns.
 *
 * On a connection other than pgsql (SQLite test suites, where the install migration skips itself) the same
 * methods count the sites live.
 */
trait UsesChomAggregates
{
    /** The columns chom keeps on tenants. */
    public static function chomColumns(): array
    {
        return ['cached_sites_count', 'cached_storage_mb', 'cached_at'];
    }

    public static function bootUsesChomAggregates(): void
    {
        $refuse = function (Model $tenant) {
            $written = array_intersect(array_keys($tenant->getDirty()), static::chomColumns());
            if ($written !== []) {
                throw new LogicException(sprintf(
                    'chom keeps tenants.%s exact; the application must not write %s',
                    implode(', tenants.', $written),
                    count($written) === 1 ? 'it' : 'them'
                ));
            }
        };
        static::saving($refuse);
        static::updating($refuse);
    }

    public function initializeUsesChomAggregates(): void
    {
        $this->mergeGuarded(static::chomColumns());
    }

    /** Live sites of this tenant. */
    public function getSiteCount(): int
    {
        return (int) ($this->chomStats()->sites_count ?? 0);
    }

    /** Total storage_used_mb of this tenant's live sites. */
    public function getStorageUsedMb(): int
    {
        return (int) ($this->chomStats()->storage_mb ?? 0);
    }

    /** Whether the tenant's tier allows one more live site (tier_limits.max_sites; -1 is unlimited). */
    public function canCreateSite(): bool
    {
        $quota = $this->siteQuota();
        if ($quota === null) {
            return false;
        }

        return $quota->sites_left === null || (int) $quota->sites_left > 0;
    }

    /**
     * chom_tenant_stats(): sites_count, storage_mb, cached_at. Null for a tenant that is not in the database.
     */
    public function chomStats(): ?object
    {
        if (! $this->usesChom()) {
            return (object) [
                'sites_count' => $this->sites()->count(),
                'storage_mb' => (int) $this->sites()->sum('storage_used_mb'),
                'cached_at' => null,
            ];
        }

        return $this->getConnection()->selectOne(
            'SELECT sites_count, storage_mb, cached_at FROM chom_tenant_stats(?)',
            [$this->getKey()]
        );
    }

    /**
     * chom_tenant_quota(): sites_count, max_sites, storage_mb, max_storage_mb, sites_left (null: unlimited),
     * over_storage. Null for a tenant that is not in the database.
     */
    public function siteQuota(): ?object
    {
        if (! $this->usesChom()) {
            $limits = $this->getConnection()->table('tier_limits')->where('tier', $this->tier)->first();
            $sites = $this->sites()->count();
            $storage = (int) $this->sites()->sum('storage_used_mb');
            $maxSites = $limits === null || (int) $limits->max_sites < 0 ? null : (int) $limits->max_sites;
            $maxStorage = $limits === null ? null : (int) $limits->max_storage_gb * 1024;

            return (object) [
                'sites_count' => $sites,
                'max_sites' => $limits === null ? null : (int) $limits->max_sites,
                'storage_mb' => $storage,
                'max_storage_mb' => $maxStorage,
                'sites_left' => $maxSites === null ? null : max(0, $maxSites - $sites),
                'over_storage' => $maxStorage !== null && $maxStorage >= 0 && $storage > $maxStorage,
            ];
        }

        return $this->getConnection()->selectOne(
            'SELECT sites_count, max_sites, storage_mb, max_storage_mb, sites_left, over_storage FROM chom_tenant_quota(?)',
            [$this->getKey()]
        );
    }

    protected function usesChom(): bool
    {
        return $this->getConnection()->getDriverName() === 'pgsql';
    }
}
