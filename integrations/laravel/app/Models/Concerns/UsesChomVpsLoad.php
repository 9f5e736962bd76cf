<?php

namespace App\Models\Concerns;

/**
 * VpsServer's load, answered by chom: the number of live sites (deleted_at IS NULL) on the VPS, kept by chom's
 * triggers on every write path. It is the count chom_pick_vps() orders by, so a VPS page shows the figure the
 * placement used. Inside a transaction it includes the transaction's own writes.
 *
 * On a connection other than pgsql (SQLite test suites) it counts the VPS's live sites.
 */
trait UsesChomVpsLoad
{
    /** Live sites on this VPS. */
    public function getSiteCount(): int
    {
        if ($this->getConnection()->getDriverName() !== 'pgsql') {
            return $this->sites()->count();
        }
        $row = $this->getConnection()->selectOne(
            'SELECT live_sites FROM chom_vps_load() WHERE vps_id = ?',
            [$this->getKey()]
        );

        return (int) ($row->live_sites ?? 0);
    }
}
