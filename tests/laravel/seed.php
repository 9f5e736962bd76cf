<?php
// Seeds through Eloquent: organizations, 8 shared tenants, one private tenant per worker (only that worker
// writes its sites), 12 shared VPSes plus one per worker (whose health that worker flips), 3 ineligible VPSes,
// and 80 sites, some soft-deleted, some on no VPS. Usage: seed.php <workers> <seed>

require __DIR__ . '/bootstrap.php';

use App\Models\Site;
use App\Models\Tenant;
use App\Models\VpsServer;
use Illuminate\Support\Facades\DB;
use Illuminate\Support\Str;

$workers = (int) ($argv[1] ?? 4);
mt_srand((int) ($argv[2] ?? 1));

$organizations = [];
foreach ([1, 2] as $n) {
    $id = (string) Str::uuid();
    DB::table('organizations')->insert([
        'id' => $id, 'name' => "Org $n", 'slug' => "org-$n-" . Str::random(6), 'billing_email' => "billing$n@example.test",
        'created_at' => now(), 'updated_at' => now(),
    ]);
    $organizations[] = $id;
}
$tenant = fn (string $slug, string $tier) => Tenant::create([
    'organization_id' => $organizations[mt_rand(0, 1)], 'name' => ucfirst($slug), 'slug' => $slug, 'tier' => $tier, 'status' => 'active',
]);
$tenants = [];
for ($n = 1; $n <= 8; $n++) {
    $tenants[] = $tenant("shared-$n", $n % 2 ? 'pro' : 'enterprise');
}
for ($w = 0; $w < $workers; $w++) {
    $tenants[] = $tenant("private-w$w", 'pro');
}

$vps = function (string $hostname, array $attributes = []) {
    static $ip = 10;
    return VpsServer::create(array_merge([
        'hostname' => $hostname, 'ip_address' => '10.0.0.' . $ip++, 'provider' => mt_rand(0, 1) ? 'hetzner' : 'ovh',
        'region' => mt_rand(0, 1) ? 'eu-central' : 'eu-west', 'spec_cpu' => 4, 'spec_memory_mb' => 8192, 'spec_disk_gb' => 160,
        'status' => 'active', 'allocation_type' => 'shared', 'health_status' => mt_rand(0, 2) ? 'healthy' : 'unknown',
    ], $attributes));
};
$servers = [];
for ($n = 1; $n <= 12; $n++) {
    $servers[] = $vps("vps-$n.test");
}
for ($w = 0; $w < $workers; $w++) {
    $servers[] = $vps("vps-w$w.test", ['health_status' => 'healthy']);
}
$servers[] = $vps('maintenance.test', ['status' => 'maintenance']);
$servers[] = $vps('dedicated.test', ['allocation_type' => 'dedicated']);
$servers[] = $vps('unhealthy.test', ['health_status' => 'unhealthy']);

for ($n = 0; $n < 80; $n++) {
    $site = Site::create([
        'tenant_id' => $tenants[mt_rand(0, 7)]->id, // shared tenants only: the private ones start empty
        'vps_id' => mt_rand(0, 9) ? $servers[mt_rand(0, count($servers) - 1)]->id : null,
        'domain' => "seed-$n.test", 'site_type' => ['wordpress', 'html', 'laravel'][mt_rand(0, 2)], 'status' => 'active',
        'storage_used_mb' => mt_rand(0, 4000),
    ]);
    if (mt_rand(0, 5) === 0) {
        $site->delete();
    }
}
assert_exact('after seeding');
say('seed: ' . Tenant::count() . ' tenants, ' . VpsServer::count() . ' VPSes, ' . Site::withTrashed()->count() . ' sites');
