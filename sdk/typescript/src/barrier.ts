/**
 * The `saga_barrier` table: one row per (service, saga, step, direction), written in the transaction that
 * does the step's business work. Same table, same rows, same rules as the Rust SDK's barrier, so Rust and
 * TypeScript participants can share a database.
 *
 * Claiming a row is an `INSERT … ON CONFLICT DO NOTHING`. PostgreSQL's unique index makes a second
 * claimer wait until the first transaction ends, so a duplicate request either finds the committed
 * outcome or, if the first one rolled back, takes the row itself. That same wait is what protects
 * against a compensation racing an in-flight execute.
 *
 * A refused execute row is final for its delivery generation only: an execute of a later generation (an
 * operator retried the step) takes the row over and runs the handler again.
 */
import type { ClientBase } from 'pg';

import type { Direction, StepCall } from './call';
import { Refused, StepError, isRefusalCode, type RefusalCode } from './errors';
import type { JsonObject } from './json';

/**
 * The `outcome` column. `succeeded`: the handler ran and committed, `output` holds its answer;
 * `refused`: the forward handler refused, `error_code`/`error_message` hold the refusal; `cancelled`:
 * the compensation arrived before the forward step, which must now never run; `skipped`: the
 * compensation had nothing to undo.
 */
export type Outcome = 'succeeded' | 'refused' | 'cancelled' | 'skipped';

/** A committed barrier row, as the answer to give a repeated request. */
export type Recorded =
  | { outcome: 'succeeded'; output: JsonObject }
  | { outcome: 'refused'; refusal: RefusalCode; message: string; generation: number }
  | { outcome: 'cancelled' }
  | { outcome: 'skipped' };

/** The answer to an execute that finds this row on its own step. */
export function replayExecute(recorded: Recorded): JsonObject {
  switch (recorded.outcome) {
    case 'succeeded':
      return recorded.output;
    case 'refused':
      throw new Refused(recorded.refusal, recorded.message);
    case 'cancelled':
      throw StepError.aborted('step was compensated before it ran');
    case 'skipped':
      throw corruptRow('skipped execute row');
  }
}

/** The answer to a compensate that finds this row on its own step. */
export function replayCompensate(recorded: Recorded): JsonObject {
  switch (recorded.outcome) {
    case 'succeeded':
      return recorded.output;
    case 'skipped':
      return {};
    case 'refused':
    case 'cancelled':
      throw corruptRow('compensate row with a forward-only outcome');
  }
}

interface BarrierRow {
  outcome: string;
  output: JsonObject | null;
  error_code: string | null;
  error_message: string | null;
  generation: number;
}

/** The barrier rows of one step of one saga, as seen by one participant service. */
export class Barrier {
  private readonly key: [string, string, string];
  private readonly generation: number;

  constructor(service: string, call: StepCall) {
    this.key = [service, call.sagaId, call.step];
    this.generation = call.generation;
  }

  /**
   * Inserts the row for `direction` with `outcome` unless one exists, waiting for any transaction that
   * holds an uncommitted row. Returns `undefined` when this transaction now owns the row, or the
   * committed row it found. A row claimed as `succeeded` is provisional until {@link setOutput} or
   * {@link setRefused} rewrites it; nobody else sees it before this transaction commits.
   */
  async claim(
    tx: ClientBase,
    direction: Direction,
    idempotencyKey: string | null,
    outcome: Outcome,
  ): Promise<Recorded | undefined> {
    const inserted = await tx.query(
      `INSERT INTO saga_barrier (service, saga_id, step, direction, outcome, idempotency_key, generation)
       VALUES ($1, $2, $3, $4, $5, $6, $7)
       ON CONFLICT (service, saga_id, step, direction) DO NOTHING`,
      [...this.key, direction, outcome, idempotencyKey, this.generation],
    );
    if (inserted.rowCount === 1) {
      return undefined;
    }
    const recorded = await this.load(tx, direction);
    const retried = recorded.outcome === 'refused' && recorded.generation < this.generation;
    if (direction === 'execute' && outcome === 'succeeded' && retried) {
      return this.retakeRefused(tx, idempotencyKey);
    }
    return recorded;
  }

  /**
   * Takes over an execute row refused in an earlier generation, for this (later) one. A concurrent
   * duplicate of this generation may have taken it first: then its committed outcome is the answer.
   */
  private async retakeRefused(tx: ClientBase, idempotencyKey: string | null): Promise<Recorded | undefined> {
    const retaken = await tx.query(
      `UPDATE saga_barrier
       SET outcome = 'succeeded', error_code = NULL, error_message = NULL, generation = $4, idempotency_key = $5
       WHERE service = $1 AND saga_id = $2 AND step = $3 AND direction = 'execute'
         AND outcome = 'refused' AND generation < $4`,
      [...this.key, this.generation, idempotencyKey],
    );
    if (retaken.rowCount === 1) {
      return undefined;
    }
    return this.load(tx, 'execute');
  }

  /** Stores the handler's output on a row this transaction claimed. */
  async setOutput(tx: ClientBase, direction: Direction, output: JsonObject): Promise<void> {
    await tx.query(
      `UPDATE saga_barrier SET outcome = 'succeeded', output = $5
       WHERE service = $1 AND saga_id = $2 AND step = $3 AND direction = $4`,
      [...this.key, direction, JSON.stringify(output)],
    );
  }

  /** Turns the execute row this transaction claimed into a recorded refusal. */
  async setRefused(tx: ClientBase, refusal: RefusalCode, message: string): Promise<void> {
    await tx.query(
      `UPDATE saga_barrier SET outcome = 'refused', error_code = $4, error_message = $5, generation = $6
       WHERE service = $1 AND saga_id = $2 AND step = $3 AND direction = 'execute'`,
      [...this.key, refusal, message, this.generation],
    );
  }

  /**
   * Counts one delivery the row answered without running the handler, so operators (and tests) can see
   * how many duplicates the barrier absorbed.
   */
  async countReplay(tx: ClientBase, direction: Direction): Promise<void> {
    await tx.query(
      `UPDATE saga_barrier SET replays = replays + 1
       WHERE service = $1 AND saga_id = $2 AND step = $3 AND direction = $4`,
      [...this.key, direction],
    );
  }

  private async load(tx: ClientBase, direction: Direction): Promise<Recorded> {
    // A fresh statement under READ COMMITTED sees the row whose commit the claim waited for.
    const { rows } = await tx.query<BarrierRow>(
      `SELECT outcome, output, error_code, error_message, generation FROM saga_barrier
       WHERE service = $1 AND saga_id = $2 AND step = $3 AND direction = $4`,
      [...this.key, direction],
    );
    const row = rows[0];
    if (row === undefined) {
      throw corruptRow('conflicting row vanished');
    }
    return toRecorded(row);
  }
}

function toRecorded(row: BarrierRow): Recorded {
  switch (row.outcome) {
    case 'succeeded':
      return { outcome: 'succeeded', output: row.output ?? {} };
    case 'refused': {
      const code = row.error_code ?? '';
      if (!isRefusalCode(code)) {
        throw corruptRow(`${JSON.stringify(code)} is not a refusal code`);
      }
      return { outcome: 'refused', refusal: code, message: row.error_message ?? '', generation: row.generation };
    }
    case 'cancelled':
    case 'skipped':
      return { outcome: row.outcome };
    default:
      throw corruptRow(`unknown outcome ${JSON.stringify(row.outcome)}`);
  }
}

function corruptRow(detail: string): StepError {
  return StepError.internal('corrupt barrier row', new Error(detail));
}
