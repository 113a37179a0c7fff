//! The `saga_barrier` table: one row per (service, saga, step, direction), written in the transaction
//! that does the step's business work.
//!
//! Claiming a row is an `INSERT … ON CONFLICT DO NOTHING`. PostgreSQL's unique index makes a second
//! claimer wait until the first transaction ends, so a duplicate request either finds the committed
//! outcome or, if the first one rolled back, takes the row itself. That same wait is what protects
//! against a compensation racing an in-flight execute.
//!
//! A refusal is recorded after its transaction (claim and business work) rolled back, in a transaction of
//! its own, with the same `INSERT … ON CONFLICT DO NOTHING`: should another delivery have committed an
//! outcome in between, that outcome is the answer. A refused execute row is final for its delivery
//! generation only: an execute of a later generation (an operator retried the step) takes the row over
//! and runs the handler again.

use sqlx::migrate::MigrateError;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::{Direction, Refusal, StepCall, StepError, StepOutput};

/// Creates or upgrades the `saga_barrier` table in the participant's database.
///
/// Runs the SDK's own embedded migrations. They share sqlx's `_sqlx_migrations` table with the
/// participant's migrations, so both sides must tolerate versions they do not know: this one does, and a
/// participant running its own `sqlx::migrate!` on the same database needs `set_ignore_missing(true)`.
pub async fn migrate(pool: &PgPool) -> Result<(), MigrateError> {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.set_ignore_missing(true);
    migrator.run(pool).await
}

/// The `outcome` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The handler ran and committed; `output` holds its answer.
    Succeeded,
    /// The forward handler refused; `error_code`/`error_message` hold the refusal.
    Refused,
    /// The compensation arrived before the forward step, which must now never run.
    Cancelled,
    /// The compensation had nothing to undo.
    Skipped,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Refused => "refused",
            Outcome::Cancelled => "cancelled",
            Outcome::Skipped => "skipped",
        }
    }
}

/// A committed barrier row, as the answer to give a repeated request.
#[derive(Debug)]
pub(crate) enum Recorded {
    Succeeded(StepOutput),
    Refused {
        refusal: Refusal,
        message: String,
        generation: u32,
    },
    Cancelled,
    Skipped,
}

impl Recorded {
    pub(crate) fn outcome(&self) -> Outcome {
        match self {
            Recorded::Succeeded(_) => Outcome::Succeeded,
            Recorded::Refused { .. } => Outcome::Refused,
            Recorded::Cancelled => Outcome::Cancelled,
            Recorded::Skipped => Outcome::Skipped,
        }
    }

    /// The answer to an execute that finds this row on its own step.
    pub(crate) fn replay_execute(self) -> Result<StepOutput, StepError> {
        match self {
            Recorded::Succeeded(output) => Ok(output),
            Recorded::Refused {
                refusal, message, ..
            } => Err(StepError::refused(refusal, message)),
            Recorded::Cancelled => Err(StepError::aborted("step was compensated before it ran")),
            Recorded::Skipped => Err(corrupt_row("skipped execute row")),
        }
    }

    /// The answer to a compensate that finds this row on its own step.
    pub(crate) fn replay_compensate(self) -> Result<StepOutput, StepError> {
        match self {
            Recorded::Succeeded(output) => Ok(output),
            Recorded::Skipped => Ok(StepOutput::new()),
            Recorded::Refused { .. } | Recorded::Cancelled => {
                Err(corrupt_row("compensate row with a forward-only outcome"))
            }
        }
    }
}

/// The barrier rows of one step of one saga, as seen by one participant service.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Barrier<'a> {
    service: &'a str,
    saga_id: Uuid,
    step: &'a str,
    generation: i32,
}

impl<'a> Barrier<'a> {
    pub(crate) fn new(service: &'a str, call: &'a StepCall) -> Self {
        Self {
            service,
            saga_id: call.saga_id,
            step: &call.step,
            generation: i32::try_from(call.generation).unwrap_or(i32::MAX),
        }
    }

    /// Inserts the row for `direction` with `outcome` unless one exists, waiting for any transaction
    /// that holds an uncommitted row. Returns `None` when this transaction now owns the row, or the
    /// committed row it found.
    ///
    /// A row claimed with [`Outcome::Succeeded`] is provisional until [`Barrier::set_output`] rewrites it
    /// or the transaction rolls back; nobody else sees it before this transaction commits.
    pub(crate) async fn claim(
        self,
        conn: &mut PgConnection,
        direction: Direction,
        idempotency_key: Option<&str>,
        outcome: Outcome,
    ) -> Result<Option<Recorded>, StepError> {
        let inserted = sqlx::query(
            "INSERT INTO saga_barrier (service, saga_id, step, direction, outcome, idempotency_key,
                                       generation)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (service, saga_id, step, direction) DO NOTHING",
        )
        .bind(self.service)
        .bind(self.saga_id)
        .bind(self.step)
        .bind(direction.as_str())
        .bind(outcome.as_str())
        .bind(idempotency_key)
        .bind(self.generation)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if inserted == 1 {
            return Ok(None);
        }
        let recorded = self.load(conn, direction).await?;
        let retried = matches!(recorded, Recorded::Refused { generation, .. }
            if i64::from(generation) < i64::from(self.generation));
        if direction == Direction::Execute && outcome == Outcome::Succeeded && retried {
            return self.retake_refused(conn, idempotency_key, None).await;
        }
        Ok(Some(recorded))
    }

    /// Takes over an execute row refused in an earlier generation, for this (later) one: provisionally
    /// succeeded (a claim), or refused again with `refusal`. A concurrent duplicate of this generation may
    /// have taken it first: then its committed outcome is the answer.
    async fn retake_refused(
        self,
        conn: &mut PgConnection,
        idempotency_key: Option<&str>,
        refusal: Option<(Refusal, &str)>,
    ) -> Result<Option<Recorded>, StepError> {
        let (code, message) = refusal
            .map(|(code, message)| (code.as_str(), message))
            .unzip();
        let retaken = sqlx::query(
            "UPDATE saga_barrier
             SET outcome = CASE WHEN $4::text IS NULL THEN 'succeeded' ELSE 'refused' END,
                 error_code = $4, error_message = $5, generation = $6, idempotency_key = $7
             WHERE service = $1 AND saga_id = $2 AND step = $3 AND direction = 'execute'
               AND outcome = 'refused' AND generation < $6",
        )
        .bind(self.service)
        .bind(self.saga_id)
        .bind(self.step)
        .bind(code)
        .bind(message)
        .bind(self.generation)
        .bind(idempotency_key)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if retaken == 1 {
            return Ok(None);
        }
        self.load(conn, Direction::Execute).await.map(Some)
    }

    /// Stores the handler's output on a row this transaction claimed.
    pub(crate) async fn set_output(
        self,
        conn: &mut PgConnection,
        direction: Direction,
        output: &StepOutput,
    ) -> Result<(), StepError> {
        sqlx::query(
            "UPDATE saga_barrier SET outcome = 'succeeded', output = $5
             WHERE service = $1 AND saga_id = $2 AND step = $3 AND direction = $4",
        )
        .bind(self.service)
        .bind(self.saga_id)
        .bind(self.step)
        .bind(direction.as_str())
        .bind(Json(output))
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Records a refusal of this generation on the execute row, unless another delivery committed an
    /// outcome there first: returns `None` when this transaction now holds the refusal, or the outcome it
    /// found. Like [`Barrier::claim`], a refusal from an earlier generation is taken over, not replayed.
    pub(crate) async fn record_refusal(
        self,
        conn: &mut PgConnection,
        idempotency_key: &str,
        refusal: Refusal,
        message: &str,
    ) -> Result<Option<Recorded>, StepError> {
        let inserted = sqlx::query(
            "INSERT INTO saga_barrier (service, saga_id, step, direction, outcome, idempotency_key,
                                       generation, error_code, error_message)
             VALUES ($1, $2, $3, 'execute', 'refused', $4, $5, $6, $7)
             ON CONFLICT (service, saga_id, step, direction) DO NOTHING",
        )
        .bind(self.service)
        .bind(self.saga_id)
        .bind(self.step)
        .bind(idempotency_key)
        .bind(self.generation)
        .bind(refusal.as_str())
        .bind(message)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if inserted == 1 {
            return Ok(None);
        }
        let recorded = self.load(conn, Direction::Execute).await?;
        if !matches!(recorded, Recorded::Refused { generation, .. }
            if i64::from(generation) < i64::from(self.generation))
        {
            return Ok(Some(recorded));
        }
        self.retake_refused(conn, Some(idempotency_key), Some((refusal, message)))
            .await
    }

    /// Counts one delivery the row answered without running the handler, so operators (and tests) can
    /// see how many duplicates the barrier absorbed.
    pub(crate) async fn count_replay(
        self,
        conn: &mut PgConnection,
        direction: Direction,
    ) -> Result<(), StepError> {
        sqlx::query(
            "UPDATE saga_barrier SET replays = replays + 1
             WHERE service = $1 AND saga_id = $2 AND step = $3 AND direction = $4",
        )
        .bind(self.service)
        .bind(self.saga_id)
        .bind(self.step)
        .bind(direction.as_str())
        .execute(conn)
        .await?;
        Ok(())
    }

    async fn load(
        self,
        conn: &mut PgConnection,
        direction: Direction,
    ) -> Result<Recorded, StepError> {
        // A fresh statement under READ COMMITTED sees the row whose commit the claim waited for.
        let row: Option<BarrierRow> = sqlx::query_as(
            "SELECT outcome, output, error_code, error_message, generation FROM saga_barrier
             WHERE service = $1 AND saga_id = $2 AND step = $3 AND direction = $4",
        )
        .bind(self.service)
        .bind(self.saga_id)
        .bind(self.step)
        .bind(direction.as_str())
        .fetch_optional(conn)
        .await?;
        row.ok_or_else(|| corrupt_row("conflicting row vanished"))?
            .into_recorded()
    }
}

#[derive(sqlx::FromRow)]
struct BarrierRow {
    outcome: String,
    output: Option<Json<StepOutput>>,
    error_code: Option<String>,
    error_message: Option<String>,
    generation: i32,
}

impl BarrierRow {
    fn into_recorded(self) -> Result<Recorded, StepError> {
        match self.outcome.as_str() {
            "succeeded" => Ok(Recorded::Succeeded(
                self.output.map(|Json(output)| output).unwrap_or_default(),
            )),
            "refused" => {
                let refusal = self
                    .error_code
                    .as_deref()
                    .unwrap_or_default()
                    .parse::<Refusal>()
                    .map_err(|err| StepError::internal("corrupt barrier row", err))?;
                Ok(Recorded::Refused {
                    refusal,
                    message: self.error_message.unwrap_or_default(),
                    generation: u32::try_from(self.generation).unwrap_or_default(),
                })
            }
            "cancelled" => Ok(Recorded::Cancelled),
            "skipped" => Ok(Recorded::Skipped),
            other => Err(corrupt_row(format!("unknown outcome {other:?}"))),
        }
    }
}

fn corrupt_row(detail: impl Into<String>) -> StepError {
    let detail: String = detail.into();
    StepError::internal("corrupt barrier row", detail)
}
