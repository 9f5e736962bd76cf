<?php
// After the writers: exact (chom's drift checks and an independent recount), the kit's reads equal Eloquent's
// own live counts for every tenant and VPS, chom's pick is Eloquent's least-loaded eligible VPS, and "load" is
// live sites: the old raw subquery of VpsAllocationService counted soft-deleted sites as well.

require __DIR__ . '/bootstrap.php';

use App\Models\Site;
use App\Models\Tenant;
use App\Models\VpsServer;
use Illuminate\Support\Facades\DB;

assert_exact('after the workload');
$problems = status_problems();
check($problems === [], 'chom_status() after the workload: ' . implode('; ', $problems));

foreach (Tenant::withCount('sites')->withSum('sites', 'storage_used_mb')->get() as $tenant) {
    check($tenant->getSiteCount() === (int) $tenant->sites_count, "tenant $tenant->slug: getSiteCount() = withCount('sites')");
    check($tenant->getStorageUsedMb() === (int) $tenant->sites_sum_storage_used_mb, "tenant $tenant->slug: getStorageUsedMb() = withSum");
}

$live = 0;
$all = 0;
foreach (VpsServer::withCount('sites')->selectRaw('(SELECT COUNT(*) FROM sites WHERE vps_id = vps_servers.id) AS all_sites')->get() as $vps) {
    check($vps->getSiteCount() === (int) $vps->sites_count, "VPS $vps->hostname: getSiteCount() (chom) = withCount('sites') (live)");
    $live += (int) $vps->sites_count;
    $all += (int) $vps->all_sites;
}
$trashedOnVps = Site::onlyTrashed()->whereNotNull('vps_id')->count();
check($all - $live === $trashedOnVps, "the old raw subquery counts the $trashedOnVps soft-deleted sites on VPSes as load");
say("load: $live live sites on VPSes (chom, withCount); the old orderByRaw subquery counted $all");

$expected = VpsServer::active()->shared()->healthy()->withCount('sites')->orderBy('sites_count')->orderBy('id')->first();
$picked = one('SELECT chom_pick_vps()::text');
check($picked === $expected?->id, "chom_pick_vps() = Eloquent's least-loaded eligible VPS ($picked vs {$expected?->id})");
say("check: ok ({$GLOBALS['checks']} checks)");
