<?php
// CHOM's Tenant as this test needs it (Laravel 8 has no HasUuids: string key, not incrementing, Str::uuid()),
// with the kit's changes: UsesChomAggregates, and the cached columns out of $fillable.

namespace App\Models;

use App\Models\Concerns\UsesChomAggregates;
use Illuminate\Database\Eloquent\Model;
use Illuminate\Database\Eloquent\Relations\HasMany;
use Illuminate\Support\Str;

class Tenant extends Model
{
    use UsesChomAggregates;

    public $incrementing = false;
    protected $keyType = 'string';

    protected $fillable = ['organization_id', 'name', 'slug', 'tier', 'status', 'settings', 'metrics_retention_days'];

    protected $casts = ['settings' => 'array', 'cached_at' => 'datetime'];

    protected static function booted(): void
    {
        static::creating(function (Tenant $tenant) {
            $tenant->id = $tenant->id ?: (string) Str::uuid();
        });
    }

    public function sites(): HasMany
    {
        return $this->hasMany(Site::class);
    }
}
