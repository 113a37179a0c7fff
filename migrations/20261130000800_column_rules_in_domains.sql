-- Single-column rules move from table CHECK constraints into domains. PostgreSQL reads a table's CHECK
-- constraints back from their stored text and plans them again for every INSERT and UPDATE statement (a
-- profile of the benchmark put that at about a tenth of the saga log's CPU; the event kinds' list alone
-- is the longest), where a domain's constraints are prepared once per session. Every group commit
-- updates sagas and saga_steps and inserts events, so each statement paid for all of them. The rules
-- are the same.
--
-- The columns take constraint-less domains first: over the same base type that changes the catalog
-- only, rewriting neither the tables nor their indexes. The domains' constraints are then added NOT VALID:
-- every row already obeys them (the table constraints dropped in the same transaction checked it), and
-- validating would scan the whole saga log while blocking writes. Every value written from now on is
-- checked.
--
-- sagas.status keeps its table constraint: changing its type would rebuild the partial indexes whose
-- predicates name it (sagas_due, sagas_finished) under an exclusive lock. The rules relating columns stay
-- table constraints as well.
CREATE DOMAIN saga_failure_reason AS text;
CREATE DOMAIN saga_definition_version AS integer;
CREATE DOMAIN saga_step_status AS text;
CREATE DOMAIN saga_count AS integer;
CREATE DOMAIN saga_event_kind AS text;

ALTER TABLE sagas
    DROP CONSTRAINT sagas_failure_reason_check,
    DROP CONSTRAINT sagas_definition_version_check,
    ALTER COLUMN failure_reason TYPE saga_failure_reason,
    ALTER COLUMN definition_version TYPE saga_definition_version;

ALTER TABLE saga_steps
    DROP CONSTRAINT saga_steps_status_check,
    DROP CONSTRAINT saga_steps_step_index_check,
    DROP CONSTRAINT saga_steps_attempts_check,
    DROP CONSTRAINT saga_steps_compensation_attempts_check,
    DROP CONSTRAINT saga_steps_generation_check,
    ALTER COLUMN status TYPE saga_step_status,
    ALTER COLUMN step_index TYPE saga_count,
    ALTER COLUMN attempts TYPE saga_count,
    ALTER COLUMN compensation_attempts TYPE saga_count,
    ALTER COLUMN generation TYPE saga_count;

ALTER TABLE saga_events
    DROP CONSTRAINT saga_events_kind_check,
    ALTER COLUMN kind TYPE saga_event_kind;

ALTER DOMAIN saga_failure_reason ADD CONSTRAINT saga_failure_reason_check
    CHECK (VALUE IN ('STEP_FAILED', 'TIMED_OUT', 'ABORTED', 'COMPENSATION_FAILED', 'FORWARD_FAILED')) NOT VALID;
ALTER DOMAIN saga_definition_version ADD CONSTRAINT saga_definition_version_check
    CHECK (VALUE > 0) NOT VALID;
ALTER DOMAIN saga_step_status ADD CONSTRAINT saga_step_status_check
    CHECK (VALUE IN ('PENDING', 'RUNNING', 'SUCCEEDED', 'FAILED', 'COMPENSATING', 'COMPENSATED', 'SKIPPED'))
    NOT VALID;
ALTER DOMAIN saga_count ADD CONSTRAINT saga_count_check CHECK (VALUE >= 0) NOT VALID;
ALTER DOMAIN saga_event_kind ADD CONSTRAINT saga_event_kind_check
    CHECK (VALUE IN ('SAGA_STARTED', 'STEP_SUCCEEDED', 'STEP_FAILED', 'COMPENSATION_STARTED',
                     'STEP_COMPENSATED', 'COMPENSATION_FAILED', 'SAGA_COMPLETED', 'SAGA_COMPENSATED',
                     'SAGA_PARKED', 'SAGA_ABORTED', 'SAGA_RETRIED', 'SAGA_CLAIMED', 'SAGA_QUARANTINED',
                     'STEP_RESOLVED'))
    NOT VALID;
