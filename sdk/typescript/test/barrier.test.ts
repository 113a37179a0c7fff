// The idempotency barrier against real PostgreSQL, driven through gRPC like the coordinator drives it:
// the same rules the Rust SDK's tests (crates/saga-participant/tests/barrier.rs) check.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';

import { status } from '@grpc/grpc-js';
import { Pool, type PoolClient } from 'pg';

import {
  type Direction,
  type JsonObject,
  type ParticipantServer,
  ParticipantService,
  StepCall,
  StepError,
  type StepHandler,
  jsonLogger,
  migrate,
  serve,
} from '../src';
import { ParticipantClient, rejection } from './support/client';
import { TestDatabase } from './support/database';

/** A held execute: it signals `entered` after writing its ledger row and waits for `release`. */
class Gate {
  entered: Promise<void>;
  release!: () => void;
  private enter!: () => void;
  private released: Promise<void>;

  constructor() {
    this.entered = new Promise((resolve) => {
      this.enter = resolve;
    });
    this.released = new Promise((resolve) => {
      this.release = resolve;
    });
  }

  async pass(): Promise<void> {
    this.enter();
    await this.released;
  }
}

/**
 * Counts its calls per saga and leaves a `ledger` row per call, so a test can tell whether the handler ran
 * and whether its work committed. Handles every action.
 */
class Recorder implements StepHandler {
  readonly executions = new Map<string, number>();
  readonly compensations = new Map<string, number>();
  readonly gates = new Map<string, Gate>();

  handles(): boolean {
    return true;
  }

  async run(direction: Direction, call: StepCall, tx: PoolClient): Promise<JsonObject> {
    const counts = direction === 'execute' ? this.executions : this.compensations;
    const run = (counts.get(call.sagaId) ?? 0) + 1;
    counts.set(call.sagaId, run);
    await tx.query('INSERT INTO ledger (saga_id, entry) VALUES ($1, $2)', [call.sagaId, direction]);
    if (direction === 'compensate') {
      return { undone: run };
    }
    await this.gates.get(call.sagaId)?.pass();
    switch (call.action) {
      case 'Refuse':
        throw StepError.failedPrecondition('out of stock');
      case 'Invalid':
        throw StepError.invalidArgument('sku must be a string');
      case 'RefuseUntilRetried':
        if (call.generation === 0) {
          throw StepError.failedPrecondition('out of stock until restocked');
        }
        return { run };
      case 'FlakyOnce':
        if (call.attempt === 1) {
          throw StepError.unavailable('warehouse is down');
        }
        return { run };
      default:
        return { run };
    }
  }
}

let database: TestDatabase;
let server: ParticipantServer;
let client: ParticipantClient;
const recorder = new Recorder();

before(async () => {
  database = await TestDatabase.create('sdk_ts_barrier');
  await migrate(database.pool);
  await database.pool.query('CREATE TABLE ledger (saga_id uuid NOT NULL, entry text NOT NULL)');
  const service = new ParticipantService('inventory', database.pool, recorder, { logger: jsonLogger('off') });
  server = await serve(service, '127.0.0.1:0');
  client = new ParticipantClient(server.port);
});

after(async () => {
  // A held execute that a failed test never released would keep its connection, and the pool, forever.
  for (const gate of recorder.gates.values()) {
    gate.release();
  }
  client.close();
  await server.shutdown();
  await database.drop();
});

function step(sagaId: string, action: string, attempt: number, direction: Direction) {
  return {
    saga_id: sagaId,
    saga_type: 'purchase_plan',
    step: 'RESERVE_STOCK',
    action,
    attempt,
    idempotency_key: `${sagaId}:RESERVE_STOCK:${direction}`,
    payload: {},
  };
}

const executeStep = (sagaId: string, action: string, attempt: number) => step(sagaId, action, attempt, 'execute');
const compensateStep = (sagaId: string, attempt: number) => step(sagaId, 'Release', attempt, 'compensate');

async function ledger(sagaId: string): Promise<string[]> {
  const { rows } = await database.pool.query<{ entry: string }>(
    'SELECT entry FROM ledger WHERE saga_id = $1 ORDER BY entry DESC',
    [sagaId],
  );
  return rows.map((row) => row.entry);
}

async function replays(sagaId: string, direction: Direction): Promise<number> {
  const { rows } = await database.pool.query<{ replays: number }>(
    'SELECT replays FROM saga_barrier WHERE saga_id = $1 AND direction = $2',
    [sagaId, direction],
  );
  return rows[0].replays;
}

async function barrierRows(sagaId: string): Promise<number> {
  const { rows } = await database.pool.query<{ count: string }>(
    'SELECT count(*) FROM saga_barrier WHERE saga_id = $1',
    [sagaId],
  );
  return Number(rows[0].count);
}

test('a repeated execute returns the first output and runs the handler once', async () => {
  const saga = randomUUID();
  const first = await client.execute(executeStep(saga, 'Reserve', 1));
  const repeat = await client.execute(executeStep(saga, 'Reserve', 2));

  assert.deepEqual(first, { run: 1 });
  assert.deepEqual(repeat, first);
  assert.equal(recorder.executions.get(saga), 1);
  assert.deepEqual(await ledger(saga), ['execute']);
  assert.equal(await replays(saga, 'execute'), 1);
});

test('concurrent duplicates wait for the first delivery and all get its answer', async () => {
  const duplicates = 4;
  const saga = randomUUID();
  const gate = new Gate();
  recorder.gates.set(saga, gate);

  const first = client.execute(executeStep(saga, 'Reserve', 1));
  await gate.entered;
  const later = Array.from({ length: duplicates }, (_, i) => client.execute(executeStep(saga, 'Reserve', i + 2)));
  try {
    await database.waitForLockWaiters(duplicates);
  } finally {
    gate.release();
  }

  const answer = await first;
  for (const duplicate of await Promise.all(later)) {
    assert.deepEqual(duplicate, answer);
  }
  assert.deepEqual(answer, { run: 1 });
  assert.equal(recorder.executions.get(saga), 1);
  assert.deepEqual(await ledger(saga), ['execute']);
  assert.equal(await replays(saga, 'execute'), duplicates);
});

test('an invalid argument writes nothing, not even a barrier row', async () => {
  const saga = randomUUID();
  const invalid = await rejection(client.execute(executeStep(saga, 'Invalid', 1)));

  assert.equal(invalid.code, status.INVALID_ARGUMENT);
  assert.equal(invalid.details, 'sku must be a string');
  assert.equal(await barrierRows(saga), 0);
  assert.deepEqual(await ledger(saga), []);

  // Nothing fences the step: the same key with a corrected request runs the handler.
  const fixed = await client.execute(executeStep(saga, 'Reserve', 2));
  assert.deepEqual(fixed, { run: 2 });
  assert.deepEqual(await ledger(saga), ['execute']);
});

test('a refusal is recorded without its work and replayed to a retry', async () => {
  const saga = randomUUID();
  const first = await rejection(client.execute(executeStep(saga, 'Refuse', 1)));
  const repeat = await rejection(client.execute(executeStep(saga, 'Refuse', 2)));

  assert.equal(first.code, status.FAILED_PRECONDITION);
  assert.equal(first.details, 'out of stock');
  assert.equal(repeat.code, first.code);
  assert.equal(repeat.details, first.details);
  assert.equal(recorder.executions.get(saga), 1);
  assert.deepEqual(await ledger(saga), [], 'refused work rolled back');
  const { rows } = await database.pool.query(
    'SELECT outcome, error_code, error_message, idempotency_key FROM saga_barrier WHERE saga_id = $1',
    [saga],
  );
  assert.deepEqual(rows, [
    {
      outcome: 'refused',
      error_code: 'FAILED_PRECONDITION',
      error_message: 'out of stock',
      idempotency_key: `${saga}:RESERVE_STOCK:execute`,
    },
  ]);
});

test('a refusal is replayed within its generation and run again after an operator retry', async () => {
  const saga = randomUUID();
  const inGeneration = (generation: number, attempt: number) => ({
    ...executeStep(saga, 'RefuseUntilRetried', attempt),
    generation,
  });

  const refused = await rejection(client.execute(inGeneration(0, 1)));
  const replayed = await rejection(client.execute(inGeneration(0, 2)));
  assert.equal(refused.code, status.FAILED_PRECONDITION);
  assert.equal(replayed.code, status.FAILED_PRECONDITION);
  assert.equal(recorder.executions.get(saga), 1, 'the refusal is replayed');

  // The operator retried the step: generation 1 runs the handler afresh, and succeeds.
  const retried = await client.execute(inGeneration(1, 1));
  assert.deepEqual(retried, { run: 2 });
  assert.deepEqual(await ledger(saga), ['execute'], 'only the run that succeeded committed');
  // From now on the success is the answer, whatever the generation of a (late or later) delivery.
  for (const [generation, attempt] of [[1, 2], [0, 3], [2, 1]]) {
    assert.deepEqual(await client.execute(inGeneration(generation, attempt)), retried, `generation ${generation}`);
  }
  assert.equal(recorder.executions.get(saga), 2);
  assert.equal(await replays(saga, 'execute'), 4);
  const { rows } = await database.pool.query('SELECT outcome, generation FROM saga_barrier WHERE saga_id = $1', [saga]);
  assert.deepEqual(rows, [{ outcome: 'succeeded', generation: 1 }]);
});

test('a transient error records nothing, so the retry runs the handler again', async () => {
  const saga = randomUUID();
  const first = await rejection(client.execute(executeStep(saga, 'FlakyOnce', 1)));
  const retry = await client.execute(executeStep(saga, 'FlakyOnce', 2));

  assert.equal(first.code, status.UNAVAILABLE);
  assert.equal(first.details, 'warehouse is down');
  assert.deepEqual(retry, { run: 2 });
  assert.equal(recorder.executions.get(saga), 2);
  assert.deepEqual(await ledger(saga), ['execute'], "only the retry's work committed");
});

test('a compensation before the step ran undoes nothing and the late execute is aborted', async () => {
  const saga = randomUUID();
  const compensated = await client.compensate(compensateStep(saga, 1));
  const late = await rejection(client.execute(executeStep(saga, 'Reserve', 1)));
  const compensatedAgain = await client.compensate(compensateStep(saga, 2));

  assert.deepEqual(compensated, {});
  assert.deepEqual(compensatedAgain, {});
  assert.equal(late.code, status.ABORTED);
  assert.equal(late.details, 'step was compensated before it ran');
  assert.equal(recorder.executions.get(saga), undefined);
  assert.equal(recorder.compensations.get(saga), undefined);
  assert.deepEqual(await ledger(saga), []);
  assert.equal(await replays(saga, 'execute'), 1, 'the late execute');
  assert.equal(await replays(saga, 'compensate'), 1);
  const { rows } = await database.pool.query(
    'SELECT direction, outcome, idempotency_key FROM saga_barrier WHERE saga_id = $1 ORDER BY direction',
    [saga],
  );
  assert.deepEqual(rows, [
    { direction: 'compensate', outcome: 'skipped', idempotency_key: `${saga}:RESERVE_STOCK:compensate` },
    { direction: 'execute', outcome: 'cancelled', idempotency_key: null },
  ]);
});

test('a compensation after the step ran calls the handler once, even when repeated', async () => {
  const saga = randomUUID();
  await client.execute(executeStep(saga, 'Reserve', 1));
  const first = await client.compensate(compensateStep(saga, 1));
  const repeat = await client.compensate(compensateStep(saga, 2));
  const executeAfter = await client.execute(executeStep(saga, 'Reserve', 2));

  assert.deepEqual(first, { undone: 1 });
  assert.deepEqual(repeat, first);
  assert.deepEqual(executeAfter, { run: 1 }, 'execute still replays its own answer');
  assert.equal(recorder.executions.get(saga), 1);
  assert.equal(recorder.compensations.get(saga), 1);
  assert.deepEqual(await ledger(saga), ['execute', 'compensate']);
  assert.equal(await replays(saga, 'compensate'), 1);
});

test('an execute that arrives after its compensation is aborted and never runs', async () => {
  const saga = randomUUID();
  // The coordinator gave up on the forward call (its deadline passed while the request was still in the
  // network) and compensated; then the forward request arrives.
  await client.compensate(compensateStep(saga, 1));
  for (const attempt of [1, 2]) {
    const late = await rejection(client.execute(executeStep(saga, 'Reserve', attempt)));
    assert.equal(late.code, status.ABORTED, `attempt ${attempt}`);
  }
  assert.equal(recorder.executions.get(saga), undefined);
  assert.deepEqual(await ledger(saga), []);
  assert.equal(await replays(saga, 'execute'), 2);
});

test('a compensation after a refusal has nothing to undo', async () => {
  const saga = randomUUID();
  await rejection(client.execute(executeStep(saga, 'Refuse', 1)));
  const compensated = await client.compensate(compensateStep(saga, 1));

  assert.deepEqual(compensated, {});
  assert.equal(recorder.compensations.get(saga), undefined);
});

test('a compensation racing an in-flight execute waits for it, then undoes it', async () => {
  const saga = randomUUID();
  const gate = new Gate();
  recorder.gates.set(saga, gate);

  const execute = client.execute(executeStep(saga, 'Reserve', 1));
  await gate.entered;
  const compensate = client.compensate(compensateStep(saga, 1));
  try {
    await database.waitForLockWaiters(1);
  } finally {
    gate.release();
  }

  assert.deepEqual(await execute, { run: 1 });
  assert.deepEqual(await compensate, { undone: 1 });
  assert.equal(recorder.compensations.get(saga), 1);
  assert.deepEqual(await ledger(saga), ['execute', 'compensate']);
});

test('a malformed request is rejected before the barrier', async () => {
  const saga = randomUUID();
  const malformed = await rejection(client.execute({ ...executeStep(saga, 'Reserve', 1), saga_id: 'not-a-uuid' }));
  assert.equal(malformed.code, status.INVALID_ARGUMENT);
  assert.equal(malformed.details, 'saga_id "not-a-uuid" is not a uuid');
  const { rows } = await database.pool.query("SELECT count(*)::int AS n FROM saga_barrier WHERE step = 'RESERVE_STOCK' AND saga_id = $1", [saga]);
  assert.equal(rows[0].n, 0);
  assert.equal(recorder.executions.get(saga), undefined);
});

test('a handler that fails with a database error answers INTERNAL and records nothing', async () => {
  const saga = randomUUID();
  const broken = new ParticipantService(
    'inventory',
    database.pool,
    {
      handles: () => true,
      run: async (_direction, _call, tx) => {
        await tx.query('INSERT INTO no_such_table VALUES (1)');
        return {};
      },
    },
    { logger: jsonLogger('off') },
  );
  const brokenServer = await serve(broken, '127.0.0.1:0');
  const brokenClient = new ParticipantClient(brokenServer.port);
  try {
    const failed = await rejection(brokenClient.execute(executeStep(saga, 'Reserve', 1)));
    assert.equal(failed.code, status.INTERNAL);
    assert.equal(failed.details, 'database error', 'the cause stays in the logs');
    assert.equal(await barrierRows(saga), 0);
  } finally {
    brokenClient.close();
    await brokenServer.shutdown();
  }
});

test('an idle connection the server cuts does not crash the participant; the next call reconnects', async () => {
  const pool = new Pool({ connectionString: database.url, max: 1, application_name: 'idle-victim' });
  const service = new ParticipantService('inventory', pool, recorder, { logger: jsonLogger('off') });
  const victimServer = await serve(service, '127.0.0.1:0');
  const victimClient = new ParticipantClient(victimServer.port);
  try {
    await victimClient.execute(executeStep(randomUUID(), 'Reserve', 1));
    assert.equal(pool.idleCount, 1);
    await database.pool.query(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'idle-victim'",
    );
    // The pool drops the dead client when its 'error' arrives; without a listener that would kill the process.
    while (pool.idleCount > 0) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.deepEqual(await victimClient.execute(executeStep(randomUUID(), 'Reserve', 1)), { run: 1 });
  } finally {
    victimClient.close();
    await victimServer.shutdown();
    await pool.end();
  }
});
