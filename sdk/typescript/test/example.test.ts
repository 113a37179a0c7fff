// The README's example participant (examples/loyalty) served over gRPC against real PostgreSQL, so the
// example people copy is known to work; plus its fault injection and the README check that it shows
// these very files.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { type ServiceError, credentials, loadPackageDefinition, status } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { protoPath as healthProto } from 'grpc-health-check';

import { type JsonObject, type ParticipantServer } from '../src';
import { FaultInjection, parseFault } from '../examples/loyalty/faults';
import { LoyaltyModule } from '../examples/loyalty/loyalty.module';
import { ParticipantClient, rejection } from './support/client';
import { TestDatabase } from './support/database';

const SOURCES = join(__dirname, '..', '..');

let database: TestDatabase;
let server: ParticipantServer;
let client: ParticipantClient;
let stop: () => void;

before(async () => {
  database = await TestDatabase.create('sdk_ts_example');
  const stopping = new Promise<void>((resolve) => {
    stop = resolve;
  });
  process.env.SAGA_LOG_LEVEL = 'off';
  server = await new LoyaltyModule(database.pool).start('127.0.0.1:0', (service) => new FaultInjection(service, stopping));
  client = new ParticipantClient(server.port);
});

after(async () => {
  stop();
  client.close();
  await server.shutdown();
  await database.drop();
});

function request(saga: string, action: string, direction: 'execute' | 'compensate', payload: JsonObject, attempt = 1) {
  return {
    saga_id: saga,
    saga_type: 'purchase_plan',
    step: 'AWARD_POINTS',
    action,
    attempt,
    idempotency_key: `${saga}:AWARD_POINTS:${direction}`,
    payload,
  };
}

async function balance(userId: string): Promise<number> {
  const { rows } = await database.pool.query<{ points: string }>(
    'SELECT points FROM loyalty.balances WHERE user_id = $1',
    [userId],
  );
  return Number(rows[0]?.points ?? 0);
}

test('the example awards points once per saga and revokes them on compensation', async () => {
  const saga = randomUUID();
  const award = request(saga, 'AwardPoints', 'execute', { userId: 'u1', amountCents: 2999 });

  const first = await client.execute(award);
  const repeat = await client.execute({ ...award, attempt: 2 });
  assert.equal(first.points, 29);
  assert.deepEqual(repeat, first);
  assert.equal(await balance('u1'), 29, 'awarded once');

  const revoke = request(saga, 'RevokePoints', 'compensate', { userId: 'u1', amountCents: 2999 });
  assert.deepEqual(await client.compensate(revoke), { revokedAwards: 1 });
  assert.deepEqual(await client.compensate({ ...revoke, attempt: 2 }), { revokedAwards: 1 });
  assert.equal(await balance('u1'), 0, 'revoked once');
});

test('the example refuses a purchase too small to earn points, and replays the refusal', async () => {
  const saga = randomUUID();
  const small = request(saga, 'AwardPoints', 'execute', { userId: 'u2', amountCents: 99 });
  const refused = await rejection(client.execute(small));
  const again = await rejection(client.execute({ ...small, attempt: 2 }));
  assert.equal(refused.code, status.OUT_OF_RANGE);
  assert.equal(refused.details, '99 cents earn no points');
  assert.equal(again.code, refused.code);
  assert.equal(await balance('u2'), 0);
});

test('the example rejects bad requests before writing anything', async () => {
  const cases: [string, JsonObject, string][] = [
    ['AwardPoints', { amountCents: 100 }, 'missing field "userId" in payload'],
    ['AwardPoints', { userId: 'u3', amountCents: 'ten' }, 'field "amountCents" must be an integer'],
    ['Steal', { userId: 'u3' }, 'unknown action Steal for service loyalty'],
    ['RevokePoints', { userId: 'u3' }, 'unknown action RevokePoints for service loyalty'],
    ['AwardPoints', { userId: 'u3', amountCents: 100, faults: { AWARD_POINTS: 'explode' } }, 'invalid fault "explode" for AWARD_POINTS: expected refuse, unavailable[:N], hang[:N], apply-then-fail[:N] or delay:<duration> (e.g. delay:200ms)'],
  ];
  const sagas: string[] = [];
  for (const [action, payload, message] of cases) {
    const saga = randomUUID();
    sagas.push(saga);
    const invalid = await rejection(client.execute(request(saga, action, 'execute', payload)));
    assert.deepEqual([invalid.code, invalid.details], [status.INVALID_ARGUMENT, message]);
  }
  const { rows } = await database.pool.query('SELECT count(*)::int AS n FROM saga_barrier WHERE saga_id = ANY($1)', [sagas]);
  assert.equal(rows[0].n, 0);
  assert.equal(await balance('u3'), 0);
});

test('apply-then-fail commits the step and drops its answer; the retry gets the first answer', async () => {
  const saga = randomUUID();
  const payload = { userId: 'u4', amountCents: 500, faults: { AWARD_POINTS: 'apply-then-fail:1' } };
  const lost = await rejection(client.execute(request(saga, 'AwardPoints', 'execute', payload, 1)));
  assert.equal(lost.code, status.UNAVAILABLE);
  assert.equal(await balance('u4'), 5, 'the first attempt applied');
  const retried = await client.execute(request(saga, 'AwardPoints', 'execute', payload, 2));
  assert.equal(retried.points, 5);
  assert.equal(await balance('u4'), 5, 'the retry did not apply again');
  const { rows } = await database.pool.query(
    "SELECT replays FROM saga_barrier WHERE saga_id = $1 AND direction = 'execute'",
    [saga],
  );
  assert.equal(rows[0].replays, 1);
});

test('unavailable and refuse faults run nothing', async () => {
  const saga = randomUUID();
  const payload = { userId: 'u5', amountCents: 700, faults: { AWARD_POINTS: 'unavailable:1', 'AWARD_POINTS:compensate': 'refuse' } };
  const down = await rejection(client.execute(request(saga, 'AwardPoints', 'execute', payload, 1)));
  assert.equal(down.code, status.UNAVAILABLE);
  assert.equal(await balance('u5'), 0);
  assert.equal((await client.execute(request(saga, 'AwardPoints', 'execute', payload, 2))).points, 7);
  const refused = await rejection(client.compensate(request(saga, 'RevokePoints', 'compensate', payload)));
  assert.equal(refused.code, status.FAILED_PRECONDITION);
  assert.equal(await balance('u5'), 7);
});

test('fault modes parse as the demo participants parse them', () => {
  assert.deepEqual(parseFault('refuse'), { mode: 'refuse' });
  assert.deepEqual(parseFault('unavailable:3'), { mode: 'unavailable', attempts: 3 });
  assert.deepEqual(parseFault('hang'), { mode: 'hang', attempts: undefined });
  assert.deepEqual(parseFault('apply-then-fail:2'), { mode: 'apply-then-fail', attempts: 2 });
  assert.deepEqual(parseFault('delay:200ms'), { mode: 'delay', ms: 200 });
  assert.deepEqual(parseFault('delay:1s'), { mode: 'delay', ms: 1000 });
  for (const bad of ['', 'explode', 'unavailable:', 'unavailable:-1', 'refuse:2', 'delay', 'delay:soon', 'hang:x']) {
    assert.equal(parseFault(bad), undefined, bad);
  }
});

test('health reports the participant service as serving', async () => {
  const health = loadPackageDefinition(loadSync(healthProto, { keepCase: true, enums: String })) as any;
  const checker = new health.grpc.health.v1.Health(`127.0.0.1:${server.port}`, credentials.createInsecure());
  const answer = await new Promise<{ status: string }>((resolve, reject) =>
    checker.Check({ service: 'saga.v1.SagaParticipant' }, (err: ServiceError | null, res: { status: string }) =>
      err ? reject(err) : resolve(res),
    ),
  );
  checker.close();
  assert.equal(answer.status, 'SERVING');
});

test('the README shows the example verbatim', () => {
  const readme = readFileSync(join(SOURCES, 'README.md'), 'utf8');
  for (const file of ['points.service.ts', 'loyalty.module.ts']) {
    const source = readFileSync(join(SOURCES, 'examples', 'loyalty', file), 'utf8');
    assert.ok(readme.includes(source), `README.md must contain examples/loyalty/${file} verbatim`);
  }
});
