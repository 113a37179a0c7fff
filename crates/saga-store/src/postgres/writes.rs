//! The saga log's writes in batches: many sagas' starts (with their labels) in one statement, many
//! sagas' transitions in another, or both in one when a batch holds both (one commit instead of two).
//! Each row is fenced on its own — a start on its idempotency key, a transition on its revision, owner
//! and epoch — so one saga that moved on changes nothing for the others. Columns travel as arrays
//! (`unnest`), step rows and events too, each tagged with its saga: binary arrays cost PostgreSQL no
//! parsing, where JSON has to be lexed, its keys sorted and each field converted from text. Only
//! labels (rare, and many per saga) travel as one JSON array.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use saga_core::{HistoryEvent, Saga, SagaStatus, Transition};
use serde::Serialize;
use sqlx::error::BoxDynError;
use sqlx::postgres::PgArguments;
use sqlx::types::Json;
use sqlx::{Arguments, PgConnection};
use uuid::Uuid;

use super::{millis, to_json};
use crate::rows::event_step;
use crate::{Committed, LeaseAfter, Owner};

/// A batch of starts, as `INSERT_CTES` reads them: all steps PENDING, event SAGA_STARTED, leased to
/// the owner at epoch 1; a start whose (type, idempotency key) is taken is skipped.
const INSERT_CTES: &str = "new_input AS (
            SELECT * FROM unnest($1::uuid[], $2::text[], $3::int[], $4::jsonb[], $5::jsonb[],
                                 $6::text[], $7::timestamptz[], $8::timestamptz[], $9::text[],
                                 $18::text[])
                AS i(id, saga_type, definition_version, definition, state, idempotency_key,
                     deadline_at, created_at, started_by, traceparent)
         ),
         new_saga AS (
            INSERT INTO sagas (id, saga_type, definition_version, definition, status, state,
                               current_step, idempotency_key, deadline_at, revision,
                               created_at, updated_at, owner, lease_until, epoch, started_by,
                               traceparent)
            SELECT i.id, i.saga_type, i.definition_version, i.definition, $10, i.state, 0,
                   i.idempotency_key, i.deadline_at, 0, i.created_at, i.created_at,
                   $11, now() + $12 * interval '1 millisecond', 1, i.started_by, i.traceparent
            FROM new_input i
            ON CONFLICT (saga_type, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
            RETURNING id
         ),
         new_steps AS (
            INSERT INTO saga_steps (saga_id, step_index, name, participant, status)
            SELECT r.saga_id, r.step_index, r.name, r.participant, $13
            FROM unnest($14::uuid[], $19::int[], $20::text[], $21::text[])
                AS r(saga_id, step_index, name, participant)
            JOIN new_saga ON new_saga.id = r.saga_id
         ),
         new_events AS (
            INSERT INTO saga_events (saga_id, kind, detail)
            SELECT new_saga.id, $15, $16 FROM new_saga
         ),
         new_labels AS (
            INSERT INTO saga_labels (saga_id, key, value)
            SELECT l.saga_id, l.key, l.value
            FROM jsonb_to_recordset($17::jsonb) AS l(saga_id uuid, key text, value text)
            JOIN new_saga ON new_saga.id = l.saga_id
         )";

/// Bind parameters `INSERT_CTES` takes ($1 to $21).
const INSERT_PARAMS: usize = 21;

/// Inserts `sagas` (see `INSERT_CTES`); returns which were inserted, in order.
pub(super) async fn insert(
    conn: &mut PgConnection,
    sagas: &[&Saga],
    owner: &Owner,
) -> Result<Vec<bool>, sqlx::Error> {
    static SQL: LazyLock<String> =
        LazyLock::new(|| format!("WITH {INSERT_CTES} SELECT id FROM new_saga"));
    let mut params = PgArguments::default();
    insert_params(&mut params, sagas, owner)?;
    let inserted: Vec<Uuid> = sqlx::query_scalar_with(&SQL, params)
        .fetch_all(conn)
        .await?;
    Ok(were_inserted(sagas, inserted))
}

/// Inserts `sagas` (see [`insert`]) and writes `writes` (see [`update`]) in one statement, so in one
/// transaction: one commit where a batch holds both.
pub(super) async fn insert_and_update(
    conn: &mut PgConnection,
    sagas: &[&Saga],
    writes: &[(&Transition, LeaseAfter)],
    owner: &Owner,
) -> Result<(Vec<bool>, Vec<Option<Committed>>), sqlx::Error> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "WITH {INSERT_CTES}, {} \
             SELECT true, id, 0::bigint, 0::bigint FROM new_saga \
             UNION ALL SELECT false, id, revision, epoch FROM saga",
            shift_params(UPDATE_CTES, INSERT_PARAMS)
        )
    });
    let mut params = PgArguments::default();
    insert_params(&mut params, sagas, owner)?;
    update_params(&mut params, writes, owner)?;
    let rows: Vec<(bool, Uuid, i64, i64)> =
        sqlx::query_as_with(&SQL, params).fetch_all(conn).await?;
    let (inserted, updated): (Vec<_>, Vec<_>) = rows.into_iter().partition(|row| row.0);
    Ok((
        were_inserted(sagas, inserted.into_iter().map(|row| row.1).collect()),
        committed(
            writes,
            updated
                .into_iter()
                .map(|(_, id, r, e)| (id, r, e))
                .collect(),
        ),
    ))
}

/// Whether each of `sagas` is among the `inserted` ids, in order.
fn were_inserted(sagas: &[&Saga], inserted: Vec<Uuid>) -> Vec<bool> {
    let inserted: HashSet<Uuid> = inserted.into_iter().collect();
    sagas.iter().map(|s| inserted.contains(&s.id.0)).collect()
}

/// Appends the parameters of `INSERT_CTES` for `sagas` to `params`.
fn insert_params(
    params: &mut PgArguments,
    sagas: &[&Saga],
    owner: &Owner,
) -> Result<(), sqlx::Error> {
    #[derive(Serialize)]
    struct NewLabel<'a> {
        saga_id: Uuid,
        key: &'a str,
        value: &'a str,
    }
    // Every saga's step rows, column by column.
    let (mut step_sagas, mut step_indexes, mut step_names, mut step_participants) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for saga in sagas {
        for (index, step) in saga.definition.steps.iter().enumerate() {
            step_sagas.push(saga.id.0);
            step_indexes.push(i32::try_from(index).unwrap_or(i32::MAX));
            step_names.push(step.name.as_str());
            step_participants.push(step.participant.as_str());
        }
    }
    let labels: Vec<NewLabel<'_>> = sagas
        .iter()
        .flat_map(|saga| {
            saga.labels.iter().map(|(key, value)| NewLabel {
                saga_id: saga.id.0,
                key,
                value,
            })
        })
        .collect();
    let ids: Vec<Uuid> = sagas.iter().map(|s| s.id.0).collect();
    let types: Vec<&str> = sagas.iter().map(|s| s.saga_type()).collect();
    let versions: Vec<i32> = sagas
        .iter()
        .map(|s| i32::try_from(s.definition.version).unwrap_or(i32::MAX))
        .collect();
    let definitions: Vec<Json<&saga_core::Definition>> =
        sagas.iter().map(|s| Json(&*s.definition)).collect();
    let states: Vec<Json<&saga_core::JsonMap>> = sagas.iter().map(|s| Json(&s.state)).collect();
    let keys: Vec<Option<&str>> = sagas.iter().map(|s| s.idempotency_key.as_deref()).collect();
    let deadlines: Vec<Option<DateTime<Utc>>> = sagas.iter().map(|s| s.deadline_at).collect();
    let created: Vec<DateTime<Utc>> = sagas.iter().map(|s| s.created_at).collect();
    let started_by: Vec<Option<&str>> = sagas.iter().map(|s| s.started_by.as_deref()).collect();
    let traceparents: Vec<Option<&str>> = sagas.iter().map(|s| s.traceparent.as_deref()).collect();
    bind(params, |p| {
        p.add(ids)?;
        p.add(types)?;
        p.add(versions)?;
        p.add(definitions)?;
        p.add(states)?;
        p.add(keys)?;
        p.add(deadlines)?;
        p.add(created)?;
        p.add(started_by)?;
        p.add(SagaStatus::Running.as_str())?;
        p.add(&owner.name)?;
        p.add(millis(owner.lease))?;
        p.add(saga_core::StepStatus::Pending.as_str())?;
        p.add(step_sagas)?;
        p.add(HistoryEvent::SagaStarted.kind())?;
        p.add(Json(to_json(&HistoryEvent::SagaStarted)))?;
        p.add(Json(&labels))?;
        p.add(traceparents)?;
        p.add(step_indexes)?;
        p.add(step_names)?;
        p.add(step_participants)?;
        Ok(())
    })
}

/// A batch of transitions, as `UPDATE_CTES` writes them; `saga` returns (id, revision, epoch) of each
/// saga written.
///
/// One statement: each saga row is updated only at the revision its transition was computed from,
/// and (unless taking over) only while the writer still holds the lease at its epoch; step rows and
/// events join the updated rows, so a stale write changes nothing at all. The state is merged, not
/// rewritten: only the step's output travels.
const UPDATE_CTES: &str = "input AS (
            SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::text[], $5::text[],
                                 $6::text[], $7::text[], $8::jsonb[], $9::int[], $10::timestamptz[],
                                 $11::timestamptz[], $12::timestamptz[], $13::timestamptz[])
                AS i(id, revision, epoch, lease, status, failure_reason, failure_message, merged,
                     current_step, next_attempt_at, updated_at, finished_at, deadline_at)
         ),
         saga AS (
            UPDATE sagas s
            SET status = i.status, failure_reason = i.failure_reason,
                failure_message = i.failure_message,
                state = CASE WHEN i.merged IS NULL THEN s.state ELSE s.state || i.merged END,
                current_step = i.current_step, next_attempt_at = i.next_attempt_at,
                updated_at = i.updated_at, finished_at = i.finished_at, deadline_at = i.deadline_at,
                revision = s.revision + 1,
                owner = CASE WHEN i.lease = 'release' OR i.finished_at IS NOT NULL THEN NULL
                             ELSE $14 END,
                lease_until = CASE
                    WHEN i.lease = 'release' OR i.finished_at IS NOT NULL THEN NULL
                    WHEN i.lease = 'takeover' THEN now() + $15 * interval '1 millisecond'
                    ELSE s.lease_until END,
                epoch = s.epoch + CASE WHEN i.lease = 'takeover' THEN 1 ELSE 0 END
            FROM input i
            WHERE s.id = i.id AND s.revision = i.revision
              AND (i.lease = 'takeover' OR (s.owner = $14 AND s.epoch = i.epoch))
            RETURNING s.id, s.revision, s.epoch
         ),
         steps AS (
            UPDATE saga_steps st
            SET status = r.status, attempts = r.attempts,
                compensation_attempts = r.compensation_attempts, output = r.output,
                last_error = r.last_error, started_at = r.started_at, finished_at = r.finished_at,
                generation = r.generation, maybe_applied = r.maybe_applied,
                resolution = r.resolution
            FROM unnest($16::uuid[], $17::int[], $18::text[], $19::bigint[], $20::bigint[],
                        $21::jsonb[], $22::text[], $23::timestamptz[], $24::timestamptz[],
                        $25::bigint[], $26::boolean[], $27::jsonb[])
                AS r(saga_id, step_index, status, attempts, compensation_attempts, output,
                     last_error, started_at, finished_at, generation, maybe_applied, resolution)
            JOIN saga ON saga.id = r.saga_id
            WHERE st.saga_id = r.saga_id AND st.step_index = r.step_index
         ),
         events AS (
            INSERT INTO saga_events (saga_id, kind, step_index, attempt, detail)
            SELECT e.saga_id, e.kind, e.step_index, e.attempt, e.detail
            FROM unnest($28::uuid[], $29::text[], $30::bigint[], $31::bigint[], $32::jsonb[])
                WITH ORDINALITY AS e(saga_id, kind, step_index, attempt, detail, seq)
            JOIN saga ON saga.id = e.saga_id
            ORDER BY e.seq
         )";

/// Writes each transition computed from a saga at its revision that `owner` holds at its epoch (or,
/// taking over, whoever holds it), and does its lease action; returns, in order, what each write
/// committed, or `None` where the saga had moved on (the write changed nothing).
pub(super) async fn update(
    conn: &mut PgConnection,
    writes: &[(&Transition, LeaseAfter)],
    owner: &Owner,
) -> Result<Vec<Option<Committed>>, sqlx::Error> {
    static SQL: LazyLock<String> =
        LazyLock::new(|| format!("WITH {UPDATE_CTES} SELECT id, revision, epoch FROM saga"));
    let mut params = PgArguments::default();
    update_params(&mut params, writes, owner)?;
    let rows: Vec<(Uuid, i64, i64)> = sqlx::query_as_with(&SQL, params).fetch_all(conn).await?;
    Ok(committed(writes, rows))
}

/// What each of `writes` committed, in order, from the (id, revision, epoch) rows written.
fn committed(
    writes: &[(&Transition, LeaseAfter)],
    rows: Vec<(Uuid, i64, i64)>,
) -> Vec<Option<Committed>> {
    let written: HashMap<Uuid, Committed> = rows
        .into_iter()
        .map(|(id, revision, epoch)| (id, Committed { revision, epoch }))
        .collect();
    writes
        .iter()
        .map(|(t, _)| written.get(&t.saga.id.0).copied())
        .collect()
}

/// Appends the parameters of `UPDATE_CTES` for `writes` to `params`.
fn update_params(
    params: &mut PgArguments,
    writes: &[(&Transition, LeaseAfter)],
    owner: &Owner,
) -> Result<(), sqlx::Error> {
    let sagas: Vec<&Saga> = writes.iter().map(|(t, _)| &t.saga).collect();
    let steps = ChangedSteps::of(writes);
    let events = NewEvents::of(writes);
    let leases: Vec<&str> = writes
        .iter()
        .map(|(_, lease)| match lease {
            LeaseAfter::Keep => "keep",
            LeaseAfter::Release => "release",
            LeaseAfter::TakeOver => "takeover",
        })
        .collect();
    // An empty output changes nothing: no merge to write.
    let merged: Vec<Option<Json<&saga_core::JsonMap>>> = writes
        .iter()
        .map(|(t, _)| t.merged.as_ref().filter(|m| !m.is_empty()).map(Json))
        .collect();
    let ids: Vec<Uuid> = sagas.iter().map(|s| s.id.0).collect();
    let revisions: Vec<i64> = sagas.iter().map(|s| s.revision).collect();
    let epochs: Vec<i64> = sagas.iter().map(|s| s.epoch).collect();
    let statuses: Vec<&str> = sagas.iter().map(|s| s.status.as_str()).collect();
    let reasons: Vec<Option<&str>> = sagas
        .iter()
        .map(|s| s.failure.as_ref().map(|f| f.reason.as_str()))
        .collect();
    let messages: Vec<Option<&str>> = sagas
        .iter()
        .map(|s| s.failure.as_ref().map(|f| f.message.as_str()))
        .collect();
    let current: Vec<Option<i32>> = sagas
        .iter()
        .map(|s| {
            s.current_step()
                .map(|i| i32::try_from(i).unwrap_or(i32::MAX))
        })
        .collect();
    let next_attempts: Vec<Option<DateTime<Utc>>> =
        sagas.iter().map(|s| s.next_attempt_at).collect();
    let updated: Vec<DateTime<Utc>> = sagas.iter().map(|s| s.updated_at).collect();
    let finished: Vec<Option<DateTime<Utc>>> = sagas.iter().map(|s| s.finished_at).collect();
    let deadlines: Vec<Option<DateTime<Utc>>> = sagas.iter().map(|s| s.deadline_at).collect();
    bind(params, |p| {
        p.add(ids)?;
        p.add(revisions)?;
        p.add(epochs)?;
        p.add(leases)?;
        p.add(statuses)?;
        p.add(reasons)?;
        p.add(messages)?;
        p.add(merged)?;
        p.add(current)?;
        p.add(next_attempts)?;
        p.add(updated)?;
        p.add(finished)?;
        p.add(deadlines)?;
        p.add(&owner.name)?;
        p.add(millis(owner.lease))?;
        p.add(steps.saga_ids)?;
        p.add(steps.indexes)?;
        p.add(steps.statuses)?;
        p.add(steps.attempts)?;
        p.add(steps.compensation_attempts)?;
        p.add(steps.outputs)?;
        p.add(steps.last_errors)?;
        p.add(steps.started_at)?;
        p.add(steps.finished_at)?;
        p.add(steps.generations)?;
        p.add(steps.maybe_applied)?;
        p.add(steps.resolutions)?;
        p.add(events.saga_ids)?;
        p.add(events.kinds)?;
        p.add(events.step_indexes)?;
        p.add(events.attempts)?;
        p.add(events.details)?;
        Ok(())
    })
}

/// Runs `add` on `params`, turning a value that cannot be encoded into the error a query gives.
fn bind(
    params: &mut PgArguments,
    add: impl FnOnce(&mut PgArguments) -> Result<(), BoxDynError>,
) -> Result<(), sqlx::Error> {
    add(params).map_err(sqlx::Error::Encode)
}

/// `sql` with each parameter `$n` renumbered `$(n + by)`, to follow another statement's parameters.
fn shift_params(sql: &str, by: usize) -> String {
    let mut shifted = String::with_capacity(sql.len() + 16);
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        shifted.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        match rest[..digits].parse::<usize>() {
            Ok(n) => shifted.push_str(&(n + by).to_string()),
            Err(_) => shifted.push_str(&rest[..digits]),
        }
        rest = &rest[digits..];
    }
    shifted.push_str(rest);
    shifted
}

/// The step rows a batch rewrites, column by column (`unnest` reads them as binary arrays: no JSON to
/// parse but the step's own output and resolution).
#[derive(Default)]
struct ChangedSteps<'a> {
    saga_ids: Vec<Uuid>,
    indexes: Vec<i32>,
    statuses: Vec<&'static str>,
    attempts: Vec<i64>,
    compensation_attempts: Vec<i64>,
    outputs: Vec<Option<Json<&'a saga_core::JsonMap>>>,
    last_errors: Vec<Option<&'a str>>,
    started_at: Vec<Option<DateTime<Utc>>>,
    finished_at: Vec<Option<DateTime<Utc>>>,
    generations: Vec<i64>,
    maybe_applied: Vec<bool>,
    resolutions: Vec<Option<Json<&'a saga_core::Resolution>>>,
}

impl<'a> ChangedSteps<'a> {
    fn of(writes: &[(&'a Transition, LeaseAfter)]) -> Self {
        let mut columns = Self::default();
        for (transition, _) in writes {
            let saga = &transition.saga;
            for &index in &transition.changed_steps {
                let step = &saga.steps[index];
                columns.saga_ids.push(saga.id.0);
                columns
                    .indexes
                    .push(i32::try_from(index).unwrap_or(i32::MAX));
                columns.statuses.push(step.status.as_str());
                columns.attempts.push(step.attempts.into());
                columns
                    .compensation_attempts
                    .push(step.compensation_attempts.into());
                columns.outputs.push(step.output.as_ref().map(Json));
                columns.last_errors.push(step.last_error.as_deref());
                columns.started_at.push(step.started_at);
                columns.finished_at.push(step.finished_at);
                columns.generations.push(step.generation.into());
                columns.maybe_applied.push(step.maybe_applied);
                columns.resolutions.push(step.resolution.as_ref().map(Json));
            }
        }
        columns
    }
}

/// The events a batch appends, column by column, in the order they are inserted in.
#[derive(Default)]
struct NewEvents<'a> {
    saga_ids: Vec<Uuid>,
    kinds: Vec<&'static str>,
    step_indexes: Vec<Option<i64>>,
    attempts: Vec<Option<i64>>,
    details: Vec<Json<&'a HistoryEvent>>,
}

impl<'a> NewEvents<'a> {
    fn of(writes: &[(&'a Transition, LeaseAfter)]) -> Self {
        let mut columns = Self::default();
        for (transition, _) in writes {
            for event in &transition.events {
                let (step, attempt) = event_step(event);
                columns.saga_ids.push(transition.saga.id.0);
                columns.kinds.push(event.kind());
                columns
                    .step_indexes
                    .push(step.map(|s| i64::try_from(s).unwrap_or(i64::MAX)));
                columns.attempts.push(attempt.map(i64::from));
                columns.details.push(Json(event));
            }
        }
        columns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The highest `$n` in `sql`.
    fn last_param(sql: &str) -> usize {
        sql.split('$')
            .skip(1)
            .filter_map(|rest| {
                let digits = rest
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(rest.len());
                rest[..digits].parse().ok()
            })
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn the_insert_takes_as_many_parameters_as_the_merged_statement_shifts_the_update_by() {
        assert_eq!(last_param(INSERT_CTES), INSERT_PARAMS);
    }

    #[test]
    fn shifted_parameters_follow_the_ones_before_them() {
        assert_eq!(
            shift_params("unnest($1::uuid[], $12::text[]) WHERE x = $3", 21),
            "unnest($22::uuid[], $33::text[]) WHERE x = $24"
        );
        assert_eq!(last_param(&shift_params(UPDATE_CTES, 21)), 21 + 32);
    }
}
