-- baseline: primary-key read of a tenant (tenant n = 1 is the biggest; run.sh sets :lo/:hi)
\set n random(:lo, :hi)
SELECT * FROM tenants WHERE id = md5('tenant' || :n)::uuid;
