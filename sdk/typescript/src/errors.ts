/**
 * What a step answers when it cannot succeed, and the one table that turns it into a gRPC status.
 *
 * The coordinator reads the status code, not the message: a refusal ({@link Refused}) is definite (no
 * retry, the saga compensates), anything else ({@link Transient}) is retried with the same idempotency
 * key. Only the short message crosses the wire; causes stay in the participant's logs.
 */
import { status as Status } from '@grpc/grpc-js';
import { DatabaseError } from 'pg';

/** The business refusals the coordinator treats as definite, by their canonical gRPC names. */
export const REFUSAL_CODES = [
  'ABORTED',
  'FAILED_PRECONDITION',
  'INVALID_ARGUMENT',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'PERMISSION_DENIED',
  'OUT_OF_RANGE',
] as const;

/** One of {@link REFUSAL_CODES}; also how the barrier stores a refusal (`error_code`). */
export type RefusalCode = (typeof REFUSAL_CODES)[number];

/** Whether `name` is a refusal code. */
export function isRefusalCode(name: string): name is RefusalCode {
  return (REFUSAL_CODES as readonly string[]).includes(name);
}

/** Why a step did not succeed: a {@link Refused} or a {@link Transient}. */
export abstract class StepError extends Error {
  /** The gRPC status code the coordinator sees. */
  abstract readonly code: Status;

  /** `ABORTED`: the step conflicts with what already happened. */
  static aborted(message: string): Refused {
    return new Refused('ABORTED', message);
  }

  /** `FAILED_PRECONDITION`: the system is not in a state that allows the step. */
  static failedPrecondition(message: string): Refused {
    return new Refused('FAILED_PRECONDITION', message);
  }

  /** `INVALID_ARGUMENT`: the payload is missing a field or holds a bad value. Writes nothing. */
  static invalidArgument(message: string): Refused {
    return new Refused('INVALID_ARGUMENT', message);
  }

  /** `NOT_FOUND`: something the step refers to does not exist. */
  static notFound(message: string): Refused {
    return new Refused('NOT_FOUND', message);
  }

  /** `ALREADY_EXISTS`: the step would create something that exists. */
  static alreadyExists(message: string): Refused {
    return new Refused('ALREADY_EXISTS', message);
  }

  /** `PERMISSION_DENIED`: the saga's subject may not do this. */
  static permissionDenied(message: string): Refused {
    return new Refused('PERMISSION_DENIED', message);
  }

  /** `OUT_OF_RANGE`: a value is outside what the step accepts. */
  static outOfRange(message: string): Refused {
    return new Refused('OUT_OF_RANGE', message);
  }

  /** `UNAVAILABLE`: a dependency is down; nothing is recorded and the coordinator retries. */
  static unavailable(message: string, cause?: unknown): Transient {
    return new Transient(Status.UNAVAILABLE, message, cause);
  }

  /** `INTERNAL`: something unexpected failed; nothing is recorded and the coordinator retries. */
  static internal(message: string, cause?: unknown): Transient {
    return new Transient(Status.INTERNAL, message, cause);
  }
}

/**
 * A definite business "no". The barrier records it (the handler's database work rolled back) and every
 * retry gets the same answer, except `INVALID_ARGUMENT`, which depends on the request alone and writes
 * nothing.
 */
export class Refused extends StepError {
  readonly code: Status;

  constructor(
    readonly refusal: RefusalCode,
    message: string,
  ) {
    super(message);
    this.name = 'Refused';
    this.code = Status[refusal];
  }
}

/** A failure whose outcome the coordinator cannot know: nothing is recorded, the step is retried. */
export class Transient extends StepError {
  constructor(
    readonly code: Status.UNAVAILABLE | Status.INTERNAL,
    message: string,
    cause?: unknown,
  ) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'Transient';
  }
}

/** Node's system error codes for a database that cannot be reached. */
const CONNECTION_ERRORS = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH']);

/**
 * Any thrown value as a {@link StepError}. A `pg` query error is `INTERNAL` ("database error"); a
 * database that cannot be reached is `UNAVAILABLE`; anything else unexpected is `INTERNAL`. All three
 * are transient: the split only tells an operator where to look.
 */
export function toStepError(err: unknown): StepError {
  if (err instanceof StepError) {
    return err;
  }
  if (err instanceof DatabaseError) {
    return StepError.internal('database error', err);
  }
  if (isUnreachable(err)) {
    return StepError.unavailable('database unavailable', err);
  }
  return StepError.internal('step failed', err);
}

function isUnreachable(err: unknown): boolean {
  if (!(err instanceof Error)) {
    return false;
  }
  const code = (err as NodeJS.ErrnoException).code;
  if (code !== undefined && CONNECTION_ERRORS.has(code)) {
    return true;
  }
  // pg's own connection failures carry no code, only these messages.
  return /^(Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error)/.test(
    err.message,
  );
}
