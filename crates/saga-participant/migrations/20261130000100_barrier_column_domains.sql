-- The single-column checks of saga_barrier move into domains. PostgreSQL parses and plans a table's CHECK
-- constraints again for every INSERT and UPDATE statement, where a domain's constraints are prepared once
-- per session; with two barrier writes per step that was a large share of a step's database time. The
-- rules are unchanged, and the three checks that relate columns stay on the table.
--
-- The domains get their constraints only after the columns use them, so that changing the column types
-- rewrites neither the table nor its primary key; adding a constraint then checks the existing rows.
CREATE DOMAIN saga_barrier_direction AS text;
CREATE DOMAIN saga_barrier_outcome AS text;
CREATE DOMAIN saga_barrier_error_code AS text;
CREATE DOMAIN saga_barrier_count AS integer;

ALTER TABLE saga_barrier
    DROP CONSTRAINT saga_barrier_direction_check,
    DROP CONSTRAINT saga_barrier_outcome_check,
    DROP CONSTRAINT saga_barrier_error_code_check,
    DROP CONSTRAINT saga_barrier_replays_check,
    DROP CONSTRAINT saga_barrier_generation_check,
    ALTER COLUMN direction TYPE saga_barrier_direction,
    ALTER COLUMN outcome TYPE saga_barrier_outcome,
    ALTER COLUMN error_code TYPE saga_barrier_error_code,
    ALTER COLUMN replays TYPE saga_barrier_count,
    ALTER COLUMN generation TYPE saga_barrier_count;

ALTER DOMAIN saga_barrier_direction ADD CONSTRAINT saga_barrier_direction_check
    CHECK (VALUE IN ('execute', 'compensate'));
ALTER DOMAIN saga_barrier_outcome ADD CONSTRAINT saga_barrier_outcome_check
    CHECK (VALUE IN ('succeeded', 'refused', 'cancelled', 'skipped'));
ALTER DOMAIN saga_barrier_error_code ADD CONSTRAINT saga_barrier_error_code_check
    CHECK (VALUE IN ('ABORTED', 'FAILED_PRECONDITION', 'INVALID_ARGUMENT', 'NOT_FOUND', 'ALREADY_EXISTS',
                     'PERMISSION_DENIED', 'OUT_OF_RANGE'));
ALTER DOMAIN saga_barrier_count ADD CONSTRAINT saga_barrier_count_check CHECK (VALUE >= 0);
