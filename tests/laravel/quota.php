<?php
// Tier quotas from Laravel: with chom.enforce_site_quota on for the connection, a starter tenant at its limit
// (5 live sites) cannot get a sixth by any Eloquent path; canCreateSite() says so first; the refusal reaches
// Laravel as SQLSTATE 23514 and the kit's ChomQuotaViolation maps it to the application's 403. An ordinary
// CHECK violation (also 23514) is not mapped.

require __DIR__ . '/bootstrap.php';

use App\Exceptions\ChomQuotaViolation;
use App\Exceptions\QuotaExceededException;
use App\Models\Site;
use App\Models\Tenant;
use App\Models\VpsServer;
use App\Services\VPS\VpsAllocationService;
use Illuminate\Database\QueryException;
use Illuminate\Support\Facades\DB;

DB::statement('SET chom.enforce_site_quota = on');
$organization = DB::table('organizations')->value('id');
$starter = Tenant::create(['organization_id' => $organization, 'name' => 'Starter', 'slug' => 'starter-quota', 'tier' => 'starter']);
$vps = VpsServer::active()->shared()->healthy()->orderBy('id')->firstOrFail();
$n = 0;
$site = function (array $extra = []) use ($starter, $vps, &$n) {
    return array_merge(['tenant_id' => $starter->id, 'vps_id' => $vps->id, 'domain' => 'quota-' . $n++ . '.test', 'status' => 'active'], $extra);
};
Site::create($site())->delete(); // soft-deleted sites do not count
Site::create($site())->delete();
for ($i = 0; $i < 5; $i++) {
    Site::create($site());
}
check(DB::table('sites')->where('tenant_id', $starter->id)->count() === 7, 'the starter tenant has 7 sites, 5 of them live');
check($starter->getSiteCount() === 5, 'getSiteCount() = 5 live sites');
check($starter->canCreateSite() === false, 'canCreateSite() is false at the starter limit');
$quota = $starter->siteQuota();
check((int) $quota->max_sites === 5 && (int) $quota->sites_left === 0, 'chom_tenant_quota(): max_sites 5, sites_left 0');

/** Runs $write, which must be refused by chom's quota; returns the exception. */
$refused = function (string $what, callable $write) use ($starter): Throwable {
    try {
        $write();
    } catch (Throwable $e) {
        check(sqlstate($e) === '23514', "$what: SQLSTATE 23514, got " . sqlstate($e) . ': ' . $e->getMessage());
        check(str_contains($e->getMessage(), "chom: tenant $starter->id would have 6 live sites, over its tier's limit of 5"), "$what: chom's message: " . $e->getMessage());
        $mapped = ChomQuotaViolation::map($e);
        check($mapped instanceof QuotaExceededException, "$what: ChomQuotaViolation maps it to QuotaExceededException");
        check($mapped->getContext() === ['tenant_id' => $starter->id, 'requested_sites' => 6, 'limit' => 5], "$what: the 403's details: " . json_encode($mapped->getContext()));
        $response = $mapped->render();
        check($response['status'] === 403 && $response['body']['error']['code'] === 'QUOTA_EXCEEDED', "$what: the application's 403 QUOTA_EXCEEDED");
        check(DB::transactionLevel() === 0, "$what: no transaction left open");
        check($starter->getSiteCount() === 5, "$what: still 5 live sites");
        say("$what: refused, " . get_class($e) . ', SQLSTATE ' . sqlstate($e) . ' -> ' . get_class($mapped) . ' 403');
        return $e;
    }
    fail("$what: a sixth live site was accepted");
};

// The refusal is raised by COMMIT: inside DB::transaction() Laravel commits on the PDO object itself, so the
// exception is a bare PDOException (QueryException extends PDOException; the kit maps PDOException).
$e = $refused('Site::create() inside DB::transaction()', fn () => DB::transaction(fn () => Site::create($site())));
check($e instanceof PDOException, 'the commit-time refusal is a PDOException');
say('inside DB::transaction(): ' . ($e instanceof QueryException ? 'QueryException' : 'PDOException (not a QueryException): the COMMIT is not run through Connection::run()'));
$e = $refused('Site::create() in autocommit', fn () => Site::create($site()));
check($e instanceof QueryException, 'in autocommit the INSERT itself fails: a QueryException');
$refused('VpsAllocationService::placeSite()', fn () => (new VpsAllocationService())->placeSite($starter, ['domain' => 'quota-placed.test']));
$refused('restore() of a soft-deleted site', fn () => Site::onlyTrashed()->where('tenant_id', $starter->id)->firstOrFail()->restore());
$refused('insert() of two sites with a soft delete in the same transaction', function () use ($site, $starter) {
    DB::transaction(function () use ($site, $starter) {
        Site::where('tenant_id', $starter->id)->orderBy('id')->firstOrFail()->delete();
        Site::insert([
            array_merge($site(), ['id' => (string) Illuminate\Support\Str::uuid()]),
            array_merge($site(), ['id' => (string) Illuminate\Support\Str::uuid()]),
        ]);
    });
});

// what is not an increase is allowed: a swap in one transaction, a soft delete and then a create
DB::transaction(function () use ($site, $starter) {
    Site::where('tenant_id', $starter->id)->orderBy('id')->firstOrFail()->delete();
    Site::create($site());
});
check($starter->getSiteCount() === 5, 'a swap (soft delete + create in one transaction) is allowed');
Site::where('tenant_id', $starter->id)->orderBy('id')->firstOrFail()->delete();
check($starter->canCreateSite() === true, 'canCreateSite() after a soft delete');
Site::create($site());
check($starter->getSiteCount() === 5 && $starter->canCreateSite() === false, 'back at the limit');

// an ordinary CHECK violation is 23514 too, and is not chom's quota
try {
    DB::transaction(fn () => Site::create(['tenant_id' => $starter->id, 'domain' => 'bad-status.test', 'status' => 'bogus']));
    fail('a site with status bogus was accepted');
} catch (PDOException $e) {
    check(sqlstate($e) === '23514', 'sites_status_check: SQLSTATE 23514');
    check(ChomQuotaViolation::map($e) === $e && ChomQuotaViolation::toQuotaExceeded($e) === null, 'an ordinary CHECK violation is not mapped to the quota 403');
}

// unlimited tiers are not limited
$enterprise = Tenant::create(['organization_id' => $organization, 'name' => 'Big', 'slug' => 'enterprise-quota', 'tier' => 'enterprise']);
for ($i = 0; $i < 7; $i++) {
    DB::transaction(fn () => Site::create(['tenant_id' => $enterprise->id, 'domain' => "big-$i.test"]));
}
check($enterprise->getSiteCount() === 7 && $enterprise->canCreateSite() === true, 'an enterprise tenant (-1) is unlimited');
check($enterprise->siteQuota()->sites_left === null, 'sites_left is NULL when unlimited');

assert_exact('after the quota scenario');
say("quota: ok ({$GLOBALS['checks']} checks)");
