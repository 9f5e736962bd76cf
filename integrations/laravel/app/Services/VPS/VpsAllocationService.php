<?php

namespace App\Services\VPS;

use App\Models\Site;
use App\Models\Tenant;
use App\Models\VpsServer;
use Illuminate\Support\Facades\DB;
use RuntimeException;

/**
 * Site placement through chom: chom_pick_vps() answers the least-loaded eligible VPS (active, shared, health
 * healthy or unknown: CHOM's active()->shared()->healthy() scopes) from counts chom keeps, instead of counting
 * every site of every candidate on each call.
 *
 * Pick and create in one DB::transaction(): inside a transaction the pick reserves the VPS until the
 * transaction ends, so N concurrent requests get N different VPSes while N eligible ones exist, and the pick
 * counts the sites the transaction itself has placed. An autocommit pick reserves nothing.
 *
 * "Load" is the number of live sites on the VPS (deleted_at IS NULL). The old
 * orderByRaw('(SELECT COUNT(*) FROM sites WHERE vps_id = vps_servers.id)') counted soft-deleted sites too;
 * VpsServer::withCount('sites') and $vps->sites()->count() count live sites only (SoftDeletes' scope) and
 * agree with chom.
 */
class VpsAllocationService
{
    /**
     * The least-loaded eligible shared VPS, or null when there is none. Requirements, all optional:
     * min_memory_mb, min_disk_gb, region, provider.
     */
    public function findSharedVpsWithCapacity(array $requirements = []): ?VpsServer
    {
        $id = DB::selectOne(
            'SELECT chom_pick_vps(?, ?, ?, ?) AS id',
            [
                $requirements['min_memory_mb'] ?? null,
                $requirements['min_disk_gb'] ?? null,
                $requirements['region'] ?? null,
                $requirements['provider'] ?? null,
            ]
        )->id;

        return $id === null ? null : VpsServer::find($id);
    }

    /**
     * Places a new site for the tenant: picks the VPS and creates the site in one transaction. Throws a
     * RuntimeException when no VPS is eligible. With chom.site_quota on, a site over the tenant's tier
     * limit makes the COMMIT fail with SQLSTATE 23514 (see App\Exceptions\ChomQuotaViolation); check
     * $tenant->canCreateSite() first for a friendly answer, chom's check is the one that cannot be raced past.
     */
    public function placeSite(Tenant $tenant, array $attributes, array $requirements = []): Site
    {
        return DB::transaction(function () use ($tenant, $attributes, $requirements) {
            $vps = $this->findSharedVpsWithCapacity($requirements);
            if ($vps === null) {
                throw new RuntimeException('No available VPS server found. Please contact support.');
            }

            return Site::create(array_merge($attributes, ['tenant_id' => $tenant->getKey(), 'vps_id' => $vps->getKey()]));
        });
    }
}
