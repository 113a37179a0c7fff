/**
 * A {@link StepHandler} built from a table of functions, one per action and direction, so a participant
 * is a list of functions instead of a hand-written `switch` on the action name.
 */
import type { PoolClient } from 'pg';

import type { Direction, StepCall } from './call';
import { StepError } from './errors';
import type { JsonObject } from './json';

/**
 * One action: the business work of a step, given the decoded call and a client inside the barrier's
 * transaction. Do every database write through `tx` so that the work and the barrier row commit
 * together, or not at all. Resolve with the step's output; throw a {@link StepError} to refuse or to
 * report a transient failure (any other error is transient too).
 */
export type Action = (call: StepCall, tx: PoolClient) => Promise<JsonObject>;

/**
 * The business side of a participant service. {@link Router} implements it; implement it by hand only
 * to dispatch in some other way.
 *
 * An execute runs at most once per (saga, step) that commits; a refusal rolls back what was written
 * through `tx` and is replayed to every retry. A compensate runs only for a step whose forward work
 * committed (otherwise the barrier answers OK itself), and any error it throws is retried by the
 * coordinator, refusals included: a compensation cannot refuse.
 */
export interface StepHandler {
  /** Whether `action` exists in `direction`; any other action is `INVALID_ARGUMENT`, before any write. */
  handles(direction: Direction, action: string): boolean;
  /** Runs the call's action in `direction` inside the barrier's transaction. */
  run(direction: Direction, call: StepCall, tx: PoolClient): Promise<JsonObject>;
}

/**
 * Routes each call to the function registered for its action and direction.
 *
 * ```ts
 * const router = new Router().execute('Reserve', reserve).compensate('Release', release);
 * ```
 */
export class Router implements StepHandler {
  private readonly actions: Record<Direction, Map<string, Action>> = {
    execute: new Map(),
    compensate: new Map(),
  };

  /** Registers the forward action `name`; registering a name twice throws (a start-up mistake). */
  execute(name: string, action: Action): this {
    return this.register('execute', name, action);
  }

  /** Registers the compensating action `name`; registering a name twice throws. */
  compensate(name: string, action: Action): this {
    return this.register('compensate', name, action);
  }

  handles(direction: Direction, action: string): boolean {
    return this.actions[direction].has(action);
  }

  /** The registered action names, sorted, by direction. */
  names(): Record<Direction, string[]> {
    return {
      execute: [...this.actions.execute.keys()].sort(),
      compensate: [...this.actions.compensate.keys()].sort(),
    };
  }

  run(direction: Direction, call: StepCall, tx: PoolClient): Promise<JsonObject> {
    const action = this.actions[direction].get(call.action);
    if (action === undefined) {
      // The service checks `handles` first; this only guards a direct caller.
      return Promise.reject(StepError.invalidArgument(`unknown action ${call.action}`));
    }
    return action(call, tx);
  }

  private register(direction: Direction, name: string, action: Action): this {
    if (this.actions[direction].has(name)) {
      throw new Error(`action ${name} is registered twice for ${direction}`);
    }
    this.actions[direction].set(name, action);
    return this;
  }
}
