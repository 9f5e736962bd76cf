<?php
// Stand-in for the application's App\Exceptions\QuotaExceededException (message, context; rendered as a 403
// JSON error with code QUOTA_EXCEEDED). The application's render() uses response()->json(), which needs the
// framework; this one returns the same status and body as an array.

namespace App\Exceptions;

use Exception;
use Throwable;

class QuotaExceededException extends Exception
{
    protected array $context;

    public function __construct(string $message = 'Quota exceeded', array $context = [], int $code = 0, ?Throwable $previous = null)
    {
        parent::__construct($message, $code, $previous);
        $this->context = $context;
    }

    public function getContext(): array
    {
        return $this->context;
    }

    public function render(): array
    {
        return [
            'status' => 403,
            'body' => ['success' => false, 'error' => ['code' => 'QUOTA_EXCEEDED', 'message' => $this->getMessage(), 'details' => $this->context]],
        ];
    }
}
