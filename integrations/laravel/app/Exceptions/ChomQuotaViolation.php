<?php

namespace App\Exceptions;

use PDOException;
use Throwable;

/**
 * Turns chom's tier-quota refusal into the application's QuotaExceededException (its 403 QUOTA_EXCEEDED
 * response).
 *
 * With chom.site_quota (or a session's chom.enforce_site_quota) on, a transaction that takes a tenant above its tier's max_sites fails at
 * COMMIT with SQLSTATE 23514 and the message "chom: tenant <id> would have <n> live sites, over its tier's
 * limit of <limit>". Inside DB::transaction() the failing statement is the COMMIT, which Laravel runs on the
 * PDO object directly: the exception is a bare PDOException, not a QueryException. An autocommit
 * Site::create() fails in the INSERT itself, as a QueryException (a PDOException too). So map PDOException.
 *
 * 23514 is also every ordinary CHECK constraint (sites.status not in its list, ...): only chom's message is
 * mapped; anything else is returned unchanged.
 *
 * Laravel 11/12, bootstrap/app.php:
 *     ->withExceptions(function (Exceptions $exceptions) {
 *         $exceptions->map(fn (\PDOException $e) => ChomQuotaViolation::map($e));
 *     })
 * Laravel 10, App\Exceptions\Handler::register():
 *     $this->map(fn (\PDOException $e) => ChomQuotaViolation::map($e));
 */
final class ChomQuotaViolation
{
    public const SQLSTATE = '23514';

    private const MESSAGE = "/chom: tenant ([0-9a-f-]{36}) would have (\\d+) live sites, over its tier's limit of (-?\\d+)/";

    /** The application's QuotaExceededException for chom's quota refusal, the exception itself otherwise. */
    public static function map(Throwable $e): Throwable
    {
        return self::toQuotaExceeded($e) ?? $e;
    }

    /** QuotaExceededException when $e is chom's quota refusal, null otherwise. */
    public static function toQuotaExceeded(Throwable $e): ?QuotaExceededException
    {
        $details = self::details($e);
        if ($details === null) {
            return null;
        }

        return new QuotaExceededException('Site limit exceeded', $details, 0, $e);
    }

    /** tenant_id, requested_sites and limit from chom's quota refusal; null for any other exception. */
    public static function details(Throwable $e): ?array
    {
        for (; $e !== null; $e = $e->getPrevious()) {
            if (! $e instanceof PDOException || self::sqlstate($e) !== self::SQLSTATE) {
                continue;
            }
            if (preg_match(self::MESSAGE, $e->getMessage(), $m) === 1) {
                return ['tenant_id' => $m[1], 'requested_sites' => (int) $m[2], 'limit' => (int) $m[3]];
            }
        }

        return null;
    }

    private static function sqlstate(PDOException $e): ?string
    {
        return $e->errorInfo[0] ?? (is_string($e->getCode()) ? $e->getCode() : null);
    }
}
