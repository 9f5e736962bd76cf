<?php
// CHOM's VpsServer as this test needs it, with the kit's UsesChomVpsLoad and CHOM's placement scopes.

namespace App\Models;

use App\Models\Concerns\UsesChomVpsLoad;
use Illuminate\Database\Eloquent\Model;
use Illuminate\Database\Eloquent\Relations\HasMany;
use Illuminate\Support\Str;

class VpsServer extends Model
{
    use UsesChomVpsLoad;

    public $incrementing = false;
    protected $keyType = 'string';

    protected $fillable = [
        'hostname', 'ip_address', 'provider', 'provider_id', 'region', 'spec_cpu', 'spec_memory_mb', 'spec_disk_gb',
        'status', 'allocation_type', 'vpsmanager_version', 'observability_configured', 'ssh_key_id',
        'last_health_check_at', 'health_status',
    ];

    protected $casts = ['observability_configured' => 'boolean', 'last_health_check_at' => 'datetime'];

    protected static function booted(): void
    {
        static::creating(function (VpsServer $vps) {
            $vps->id = $vps->id ?: (string) Str::uuid();
        });
    }

    public function sites(): HasMany
    {
        return $this->hasMany(Site::class, 'vps_id');
    }

    public function scopeActive($query)
    {
        return $query->where('status', 'active');
    }

    public function scopeShared($query)
    {
        return $query->where('allocation_type', 'shared');
    }

    public function scopeHealthy($query)
    {
        return $query->whereIn('health_status', ['healthy', 'unknown']);
    }
}
