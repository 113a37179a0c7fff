/** One step request, decoded and validated at the edge, with typed accessors for the payload. */
import type { Metadata } from '@grpc/grpc-js';

import { StepError } from './errors';
import { type JsonObject, type JsonValue, type StructMessage, structToJson } from './json';

/** gRPC metadata entry the coordinator also puts the idempotency key in. */
export const IDEMPOTENCY_KEY_HEADER = 'x-idempotency-key';

/** gRPC metadata entry the coordinator also puts the delivery generation in. */
export const GENERATION_HEADER = 'x-saga-generation';

/** gRPC metadata entry carrying the saga's W3C trace context. */
export const TRACEPARENT_HEADER = 'traceparent';

/** `saga.v1.StepRequest` as @grpc/proto-loader decodes it (`keepCase`, `defaults`). */
export interface StepRequestMessage {
  saga_id: string;
  saga_type: string;
  step: string;
  action: string;
  attempt: number;
  idempotency_key: string;
  payload: StructMessage | null;
  generation: number;
}

/** Which way a step is being driven; also how the barrier stores it. */
export type Direction = 'execute' | 'compensate';

/** A UUID hyphenated or as 32 hex digits, the forms both PostgreSQL and the Rust SDK accept. */
const UUID = /^(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32})$/i;

/** One step request as a handler sees it. */
export class StepCall {
  private constructor(
    /** The saga this step belongs to, a lowercase hyphenated UUID. */
    readonly sagaId: string,
    /** The saga's definition name, e.g. `purchase_plan`. */
    readonly sagaType: string,
    /** The step name from the definition, e.g. `ALLOCATE_DEVICE`. */
    readonly step: string,
    /** The action to run: the forward action for execute, the compensating one for compensate. */
    readonly action: string,
    /** Attempt number for this direction of this step, from 1. */
    readonly attempt: number,
    /** Stable per (saga, step, direction) across retries. */
    readonly idempotencyKey: string,
    /**
     * Delivery generation: 0 until an operator retries the step, then 1, 2, ... A refusal recorded in an
     * earlier generation is not replayed: the step runs again.
     */
    readonly generation: number,
    /** The saga state so far: the start payload merged with every earlier step's output. */
    readonly payload: JsonObject,
    /** The W3C `traceparent` the coordinator sent as metadata, if any. */
    readonly traceparent: string | undefined,
  ) {}

  /**
   * Decodes a request. The request's `idempotency_key` and `generation` fields are authoritative; the
   * `x-idempotency-key` and `x-saga-generation` metadata entries are only fallbacks for callers that leave
   * them unset.
   */
  static fromRequest(request: StepRequestMessage, metadata?: Metadata): StepCall {
    const header = (name: string): string | undefined => {
      const value = metadata?.get(name)[0];
      return typeof value === 'string' && value !== '' ? value : undefined;
    };
    const sagaId = canonicalUuid(request.saga_id);
    if (sagaId === undefined) {
      throw StepError.invalidArgument(`saga_id ${JSON.stringify(request.saga_id ?? '')} is not a uuid`);
    }
    if (!request.step) {
      throw StepError.invalidArgument('missing step');
    }
    if (!request.action) {
      throw StepError.invalidArgument('missing action');
    }
    const idempotencyKey = request.idempotency_key || header(IDEMPOTENCY_KEY_HEADER);
    if (idempotencyKey === undefined) {
      throw StepError.invalidArgument('missing idempotency key');
    }
    const headerGeneration = Number(header(GENERATION_HEADER) ?? 0);
    const generation = request.generation || (Number.isSafeInteger(headerGeneration) ? headerGeneration : 0);
    return new StepCall(
      sagaId,
      request.saga_type ?? '',
      request.step,
      request.action,
      request.attempt ?? 0,
      idempotencyKey,
      Math.max(0, generation),
      structToJson(request.payload),
      header(TRACEPARENT_HEADER),
    );
  }

  /** A payload field that must be present and not null. */
  field(name: string): JsonValue {
    const value = this.payload[name];
    if (value === undefined || value === null) {
      throw StepError.invalidArgument(`missing field ${JSON.stringify(name)} in payload`);
    }
    return value;
  }

  /** A required non-empty string field. */
  str(name: string): string {
    const value = this.field(name);
    if (typeof value !== 'string' || value === '') {
      throw wrongType(name, 'a non-empty string');
    }
    return value;
  }

  /** An optional string field: absent or null is `undefined`, any other non-string is an error. */
  optStr(name: string): string | undefined {
    return this.isAbsent(name) ? undefined : this.str(name);
  }

  /** A required integer field, e.g. an amount in cents. */
  integer(name: string): number {
    const value = this.field(name);
    if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
      throw wrongType(name, 'an integer');
    }
    return value;
  }

  /** A required UUID field (a string in the payload), lowercase hyphenated. */
  uuid(name: string): string {
    const value = this.field(name);
    const uuid = typeof value === 'string' ? canonicalUuid(value) : undefined;
    if (uuid === undefined) {
      throw wrongType(name, 'a uuid');
    }
    return uuid;
  }

  /** An optional UUID field: absent or null is `undefined`. */
  optUuid(name: string): string | undefined {
    return this.isAbsent(name) ? undefined : this.uuid(name);
  }

  private isAbsent(name: string): boolean {
    const value = this.payload[name];
    return value === undefined || value === null;
  }
}

function wrongType(name: string, expected: string): StepError {
  return StepError.invalidArgument(`field ${JSON.stringify(name)} must be ${expected}`);
}

/** The hyphenated or simple (32 hex digits) form of a UUID, as PostgreSQL stores it, or undefined. */
function canonicalUuid(text: string | undefined): string | undefined {
  if (text === undefined || !UUID.test(text)) {
    return undefined;
  }
  const hex = text.replace(/-/g, '').toLowerCase();
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
