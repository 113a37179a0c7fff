/**
 * The `saga.v1.SagaParticipant` service: decodes a step request and runs the handler behind the
 * idempotency barrier, in one database transaction with the business work.
 */
import type { Metadata } from '@grpc/grpc-js';
import type { Pool, PoolClient } from 'pg';

import { Barrier, replayCompensate, replayExecute } from './barrier';
import { type Direction, StepCall, type StepRequestMessage } from './call';
import { Refused, type StepError, toStepError } from './errors';
import type { JsonObject } from './json';
import { type Logger, jsonLogger } from './log';
import type { StepHandler } from './router';

/**
 * What {@link serve} serves: one function per RPC, resolving with the step's output or rejecting with a
 * {@link StepError} (any other error is answered `INTERNAL`). {@link ParticipantService} is one; wrap it
 * to add behaviour in front of the barrier (the example's fault injection does).
 */
export interface SagaParticipant {
  execute(request: StepRequestMessage, metadata: Metadata): Promise<JsonObject>;
  compensate(request: StepRequestMessage, metadata: Metadata): Promise<JsonObject>;
}

/** Options of a {@link ParticipantService}. */
export interface ServiceOptions {
  /** Where to log; JSON lines on stderr by default. */
  logger?: Logger;
}

/** How a transaction ends: commit, then answer with `value` or throw `error` (a recorded refusal). */
type Settled = { output: JsonObject } | { refused: StepError };

/**
 * A participant service: a {@link StepHandler} wrapped in the idempotency barrier.
 *
 * - A repeated execute or compensate returns the first answer without calling the handler again, and
 *   counts the repeat in the row's `replays` column.
 * - A refusal is recorded (the handler's work rolled back) and replayed; a transient error records
 *   nothing, so the retry runs the handler afresh.
 * - `INVALID_ARGUMENT` (including an action the handler does not handle) writes nothing at all, barrier
 *   row included: it depends on the request alone, so every repeat gets the same answer without a record.
 * - A compensation for a step that never ran calls nothing and fences the step: a late execute answers
 *   `ABORTED`.
 *
 * The barrier table must exist: run {@link migrate} at start-up.
 */
export class ParticipantService implements SagaParticipant {
  private readonly logger: Logger;

  /**
   * Wraps `handler`. `service` names the participant in its barrier rows (e.g. `loyalty`), so several
   * services, in any language, can share one database.
   */
  constructor(
    readonly service: string,
    private readonly pool: Pool,
    private readonly handler: StepHandler,
    options: ServiceOptions = {},
  ) {
    this.logger = options.logger ?? jsonLogger();
    // An idle connection the server closes (a restart, a failover) makes the pool emit 'error', which
    // kills the process unless someone listens; the next call simply gets a fresh connection.
    pool.on('error', (error) => this.logger.warn('idle database connection failed', { service, error }));
  }

  execute(request: StepRequestMessage, metadata: Metadata): Promise<JsonObject> {
    return this.serve('execute', request, metadata, (call) => this.executeStep(call));
  }

  compensate(request: StepRequestMessage, metadata: Metadata): Promise<JsonObject> {
    return this.serve('compensate', request, metadata, (call) => this.compensateStep(call));
  }

  private async serve(
    direction: Direction,
    request: StepRequestMessage,
    metadata: Metadata,
    step: (call: StepCall) => Promise<JsonObject>,
  ): Promise<JsonObject> {
    // Validated before anything touches the database.
    const call = StepCall.fromRequest(request, metadata);
    if (!this.handler.handles(direction, call.action)) {
      throw new Refused('INVALID_ARGUMENT', `unknown action ${call.action} for service ${this.service}`);
    }
    const fields = {
      direction,
      service: this.service,
      saga_id: call.sagaId,
      saga_type: call.sagaType,
      step: call.step,
      action: call.action,
      attempt: call.attempt,
      traceparent: call.traceparent,
    };
    try {
      const output = await step(call);
      this.logger.debug(direction === 'execute' ? 'step executed' : 'step compensated', fields);
      return output;
    } catch (err) {
      const error = toStepError(err);
      if (error instanceof Refused) {
        this.logger.info('step refused', { ...fields, code: error.refusal, reason: error.message });
      } else {
        this.logger.warn('step attempt failed', { ...fields, error });
      }
      throw error;
    }
  }

  private executeStep(call: StepCall): Promise<JsonObject> {
    const barrier = new Barrier(this.service, call);
    return this.transaction(async (tx) => {
      const recorded = await barrier.claim(tx, 'execute', call.idempotencyKey, 'succeeded');
      if (recorded !== undefined) {
        this.logger.debug('replaying the recorded execute outcome', { outcome: recorded.outcome });
        await barrier.countReplay(tx, 'execute');
        return settle(() => replayExecute(recorded));
      }
      // A savepoint around the handler lets a refusal undo the business work while the barrier row (and
      // the lock it holds against duplicates and compensations) stays, so the refusal is recorded in the
      // same transaction with no window for another request to slip in.
      await tx.query('SAVEPOINT saga_step_work');
      let output: JsonObject;
      try {
        output = await this.handler.run('execute', call, tx);
      } catch (err) {
        const error = toStepError(err);
        // An invalid argument drops the claim too (rollback below); a transient error records nothing.
        if (!(error instanceof Refused) || error.refusal === 'INVALID_ARGUMENT') {
          throw error;
        }
        await tx.query('ROLLBACK TO SAVEPOINT saga_step_work');
        await barrier.setRefused(tx, error.refusal, error.message);
        return { refused: error };
      }
      await tx.query('RELEASE SAVEPOINT saga_step_work');
      await barrier.setOutput(tx, 'execute', output);
      return { output };
    });
  }

  private compensateStep(call: StepCall): Promise<JsonObject> {
    const barrier = new Barrier(this.service, call);
    return this.transaction(async (tx) => {
      // Claim the execute row first: if an execute is in flight this waits for it to end, and if the
      // forward step never ran, the row marked cancelled fences off a late execute.
      const forward = await barrier.claim(tx, 'execute', null, 'cancelled');
      const mustUndo = forward?.outcome === 'succeeded';
      const recorded = await barrier.claim(
        tx,
        'compensate',
        call.idempotencyKey,
        mustUndo ? 'succeeded' : 'skipped',
      );
      if (recorded !== undefined) {
        this.logger.debug('replaying the recorded compensate outcome', { outcome: recorded.outcome });
        await barrier.countReplay(tx, 'compensate');
        return settle(() => replayCompensate(recorded));
      }
      if (!mustUndo) {
        this.logger.debug('nothing to compensate: the forward step did not commit any work', {
          forward: forward?.outcome,
        });
        return { output: {} };
      }
      // Any error rolls everything back: nothing recorded, the coordinator retries (a compensation
      // cannot refuse).
      const output = await this.handler.run('compensate', call, tx);
      await barrier.setOutput(tx, 'compensate', output);
      return { output };
    });
  }

  /** Runs `work` in a transaction: committed when it settles, rolled back when it throws. */
  private async transaction(work: (tx: PoolClient) => Promise<Settled>): Promise<JsonObject> {
    let tx: PoolClient;
    try {
      tx = await this.pool.connect();
    } catch (err) {
      throw toStepError(err);
    }
    let broken: Error | undefined;
    let settled: Settled;
    try {
      await tx.query('BEGIN');
      settled = await work(tx);
      await tx.query('COMMIT');
    } catch (err) {
      await tx.query('ROLLBACK').catch((rollback: Error) => {
        broken = rollback;
      });
      throw toStepError(err);
    } finally {
      // A connection whose rollback failed is in an unknown state: drop it rather than reuse it.
      tx.release(broken);
    }
    if ('refused' in settled) {
      throw settled.refused;
    }
    return settled.output;
  }
}

/** A recorded answer as a settled transaction: the replay's refusal is committed, then thrown. */
function settle(replay: () => JsonObject): Settled {
  try {
    return { output: replay() };
  } catch (err) {
    if (err instanceof Refused) {
      return { refused: err };
    }
    throw err;
  }
}
