// Decoding a step request and the payload accessors: the same messages as the Rust SDK's.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Metadata, status } from '@grpc/grpc-js';

import { type JsonObject, Refused, StepCall, type StepRequestMessage, jsonToStruct } from '../src';

function request(payload: JsonObject = {}): StepRequestMessage {
  return {
    saga_id: '0195B1D0-0000-7000-8000-000000000001',
    saga_type: 'purchase_plan',
    step: 'CREATE_ORDER',
    action: 'CreateOrder',
    attempt: 2,
    idempotency_key: 'key-1',
    payload: jsonToStruct(payload) as StepRequestMessage['payload'],
    generation: 0,
  };
}

function invalid(decode: () => unknown): string {
  try {
    decode();
  } catch (err) {
    assert.ok(err instanceof Refused);
    assert.equal(err.code, status.INVALID_ARGUMENT);
    return err.message;
  }
  throw new Error('expected INVALID_ARGUMENT');
}

test('decodes every field of the request', () => {
  const call = StepCall.fromRequest(request({ userId: 'u1', nested: { list: [1, 'a', null, true] } }));
  assert.equal(call.sagaId, '0195b1d0-0000-7000-8000-000000000001');
  assert.equal(call.sagaType, 'purchase_plan');
  assert.equal(call.step, 'CREATE_ORDER');
  assert.equal(call.action, 'CreateOrder');
  assert.equal(call.attempt, 2);
  assert.equal(call.idempotencyKey, 'key-1');
  assert.deepEqual(call.payload, { userId: 'u1', nested: { list: [1, 'a', null, true] } });
  assert.equal(call.traceparent, undefined);
  assert.equal(call.generation, 0);
});

test('the generation field wins over the metadata entry, which is only a fallback', () => {
  const metadata = new Metadata();
  metadata.set('x-saga-generation', '2');
  assert.equal(StepCall.fromRequest({ ...request(), generation: 3 }, metadata).generation, 3);
  assert.equal(StepCall.fromRequest(request(), metadata).generation, 2);
  metadata.set('x-saga-generation', 'two');
  assert.equal(StepCall.fromRequest(request(), metadata).generation, 0);
});

test('the trace context comes from the traceparent metadata', () => {
  const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
  const metadata = new Metadata();
  metadata.set('traceparent', traceparent);
  assert.equal(StepCall.fromRequest(request(), metadata).traceparent, traceparent);
});

test('the request key wins over the metadata key, which is only a fallback', () => {
  const metadata = new Metadata();
  metadata.set('x-idempotency-key', 'from-header');
  assert.equal(StepCall.fromRequest(request(), metadata).idempotencyKey, 'key-1');
  assert.equal(StepCall.fromRequest({ ...request(), idempotency_key: '' }, metadata).idempotencyKey, 'from-header');
  assert.equal(invalid(() => StepCall.fromRequest({ ...request(), idempotency_key: '' })), 'missing idempotency key');
});

test('rejects a malformed saga id and missing names', () => {
  assert.equal(invalid(() => StepCall.fromRequest({ ...request(), saga_id: 'nope' })), 'saga_id "nope" is not a uuid');
  assert.equal(
    invalid(() => StepCall.fromRequest({ ...request(), saga_id: '0195b1d0-00007000-8000-000000000001' })),
    'saga_id "0195b1d0-00007000-8000-000000000001" is not a uuid',
  );
  assert.equal(invalid(() => StepCall.fromRequest({ ...request(), step: '' })), 'missing step');
  assert.equal(invalid(() => StepCall.fromRequest({ ...request(), action: '' })), 'missing action');
});

test('a uuid without hyphens is accepted in its canonical form', () => {
  const call = StepCall.fromRequest({ ...request(), saga_id: '0195b1d0000070008000000000000001' });
  assert.equal(call.sagaId, '0195b1d0-0000-7000-8000-000000000001');
});

test('accessors return typed values', () => {
  const call = StepCall.fromRequest(
    request({ userId: 'u1', amountCents: 2999, orderId: '0195B1D0-0000-7000-8000-0000000000AA', nothing: null }),
  );
  assert.equal(call.str('userId'), 'u1');
  assert.equal(call.optStr('userId'), 'u1');
  assert.equal(call.optStr('nothing'), undefined);
  assert.equal(call.integer('amountCents'), 2999);
  assert.equal(call.uuid('orderId'), '0195b1d0-0000-7000-8000-0000000000aa');
  assert.equal(call.optUuid('absent'), undefined);
});

test('accessors refuse missing or mistyped fields with a readable message', () => {
  const call = StepCall.fromRequest(request({ userId: '', amountCents: 1.5, orderId: 'x', planId: 7, paymentId: 7 }));
  assert.equal(invalid(() => call.str('planName')), 'missing field "planName" in payload');
  assert.equal(invalid(() => call.str('userId')), 'field "userId" must be a non-empty string');
  assert.equal(invalid(() => call.optStr('planId')), 'field "planId" must be a non-empty string');
  assert.equal(invalid(() => call.integer('amountCents')), 'field "amountCents" must be an integer');
  assert.equal(invalid(() => call.optUuid('orderId')), 'field "orderId" must be a uuid');
  assert.equal(invalid(() => call.uuid('paymentId')), 'field "paymentId" must be a uuid');
});
