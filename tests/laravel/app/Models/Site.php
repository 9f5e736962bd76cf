<?php
// CHOM's Site as this test needs it: soft deletes, uuid key, no model events (chom keeps the aggregates).

namespace App\Models;

use Illuminate\Database\Eloquent\Model;
use Illuminate\Database\Eloquent\Relations\BelongsTo;
use Illuminate\Database\Eloquent\SoftDeletes;
use Illuminate\Support\Str;

class Site extends Model
{
    use SoftDeletes;

    public $incrementing = false;
    protected $keyType = 'string';

    protected $fillable = [
        'tenant_id', 'vps_id', 'domain', 'site_type', 'php_version', 'ssl_enabled', 'ssl_expires_at', 'status',
        'document_root', 'db_name', 'db_user', 'storage_used_mb', 'settings',
    ];

    protected $casts = ['ssl_enabled' => 'boolean', 'ssl_expires_at' => 'datetime', 'settings' => 'array'];

    protected static function booted(): void
    {
        static::creating(function (Site $site) {
            $site->id = $site->id ?: (string) Str::uuid();
        });
    }

    public function tenant(): BelongsTo
    {
        return $this->belongsTo(Tenant::class);
    }

    public function vpsServer(): BelongsTo
    {
        return $this->belongsTo(VpsServer::class, 'vps_id');
    }
}
