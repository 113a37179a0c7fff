-- The recovery loop's claim reads only sagas that are due: active sagas indexed by the time they become
-- claimable (their lease gone and their retry time reached). The index it replaces ordered by retry time
-- alone, so every leased saga in flight (no retry time) stood in front of the due ones and was read by
-- every claim. The expression is the one the claim and next_due use, word for word.
DROP INDEX sagas_active;
CREATE INDEX sagas_due ON sagas (
    (GREATEST(COALESCE(lease_until, '-infinity'::timestamptz),
              COALESCE(next_attempt_at, '-infinity'::timestamptz))))
    WHERE status IN ('RUNNING', 'COMPENSATING');
