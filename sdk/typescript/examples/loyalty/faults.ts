/**
 * Fault injection, the demo participants' convention (crates/participants/src/faults.rs) so one saga
 * payload drives Rust and TypeScript participants alike:
 *
 * ```json
 * {"faults": {"AWARD_POINTS": "apply-then-fail:1", "AWARD_POINTS:compensate": "unavailable:2"}}
 * ```
 * The key is a step name (its execute) or `STEP:compensate`. Modes: `refuse` (FAILED_PRECONDITION),
 * `unavailable[:N]` (UNAVAILABLE, step not run), `hang[:N]` (no answer until the caller's deadline, step
 * not run), `apply-then-fail[:N]` (the step runs through the barrier and commits, then the answer is
 * replaced by UNAVAILABLE, as when a reply is lost), `delay:<n>ms|s|m` (waits, then runs the step). With
 * `:N` a fault hits attempts 1..=N only. Faults that skip the step sit in front of the barrier, so they
 * record nothing.
 */
import type { Metadata } from '@grpc/grpc-js';
import { type JsonObject, type SagaParticipant, StepError, type StepRequestMessage, structToJson } from '../../src';

type Direction = 'execute' | 'compensate';

type Fault =
  | { mode: 'refuse' }
  | { mode: 'unavailable' | 'hang' | 'apply-then-fail'; attempts: number | undefined }
  | { mode: 'delay'; ms: number };

/** Applies the payload's faults around `inner`; `stopping` ends hangs and delays at shutdown. */
export class FaultInjection implements SagaParticipant {
  constructor(
    private readonly inner: SagaParticipant,
    private readonly stopping: Promise<void>,
  ) {}

  execute(request: StepRequestMessage, metadata: Metadata): Promise<JsonObject> {
    return this.call('execute', request, metadata);
  }

  compensate(request: StepRequestMessage, metadata: Metadata): Promise<JsonObject> {
    return this.call('compensate', request, metadata);
  }

  private async call(direction: Direction, request: StepRequestMessage, metadata: Metadata): Promise<JsonObject> {
    const forward = () => this.inner[direction](request, metadata);
    const fault = faultFor(request, direction);
    if (fault === undefined || !hitsAttempt(fault, request.attempt)) {
      return forward();
    }
    switch (fault.mode) {
      case 'refuse':
        throw StepError.failedPrecondition('injected fault: refuse');
      case 'unavailable':
        throw StepError.unavailable('injected fault: unavailable');
      case 'hang':
        await this.stopping;
        throw StepError.unavailable('injected fault: hang ended by shutdown');
      case 'delay': {
        let timer: NodeJS.Timeout | undefined;
        const elapsed = new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(true), fault.ms);
        });
        const ran = await Promise.race([elapsed, this.stopping.then(() => false)]);
        clearTimeout(timer);
        if (!ran) {
          throw StepError.unavailable('injected fault: delay ended by shutdown');
        }
        return forward();
      }
      case 'apply-then-fail':
        await forward().catch(() => undefined);
        throw StepError.unavailable('injected fault: apply-then-fail, the step ran and its answer was dropped');
    }
  }
}

function hitsAttempt(fault: Fault, attempt: number): boolean {
  return !('attempts' in fault) || fault.attempts === undefined || attempt <= fault.attempts;
}

/** The fault the payload sets for this step and direction; a malformed one is INVALID_ARGUMENT. */
export function faultFor(request: StepRequestMessage, direction: Direction): Fault | undefined {
  const faults = structToJson(request.payload).faults;
  if (faults === undefined || faults === null) {
    return undefined;
  }
  if (typeof faults !== 'object' || Array.isArray(faults)) {
    throw StepError.invalidArgument('payload field faults must be an object');
  }
  const key = direction === 'execute' ? request.step : `${request.step}:compensate`;
  const mode = faults[key];
  if (mode === undefined) {
    return undefined;
  }
  if (typeof mode !== 'string') {
    throw StepError.invalidArgument(`fault for ${key} must be a string`);
  }
  const fault = parseFault(mode);
  if (fault === undefined) {
    throw StepError.invalidArgument(
      `invalid fault ${JSON.stringify(mode)} for ${key}: expected refuse, unavailable[:N], hang[:N], ` +
        'apply-then-fail[:N] or delay:<duration> (e.g. delay:200ms)',
    );
  }
  return fault;
}

const UNITS_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000 };

export function parseFault(text: string): Fault | undefined {
  const [name, argument, ...rest] = text.split(':');
  if (rest.length > 0) {
    return undefined;
  }
  switch (name) {
    case 'refuse':
      return argument === undefined ? { mode: 'refuse' } : undefined;
    case 'unavailable':
    case 'hang':
    case 'apply-then-fail': {
      if (argument === undefined) {
        return { mode: name, attempts: undefined };
      }
      return /^\d+$/.test(argument) ? { mode: name, attempts: Number(argument) } : undefined;
    }
    case 'delay': {
      const match = /^(\d+)(ms|s|m)$/.exec(argument ?? '');
      return match ? { mode: 'delay', ms: Number(match[1]) * UNITS_MS[match[2]] } : undefined;
    }
    default:
      return undefined;
  }
}
