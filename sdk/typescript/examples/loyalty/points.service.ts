// The loyalty service's business work, shaped like a NestJS provider: one method per action, each given
// the decoded call and a client inside the barrier's transaction. Runs once per saga step, however often
// sagad delivers it.
import { randomUUID } from 'node:crypto';
import type { PoolClient } from 'pg';
import { type JsonObject, StepCall, StepError } from '../../src';

export class PointsService {
  /** One point per whole unit of money spent: `{awardId, points}`. */
  async award(call: StepCall, tx: PoolClient): Promise<JsonObject> {
    const userId = call.str('userId'); // missing or not a string: INVALID_ARGUMENT, nothing written
    const points = Math.floor(call.integer('amountCents') / 100);
    if (points <= 0) {
      throw StepError.outOfRange(`${call.integer('amountCents')} cents earn no points`); // recorded, replayed
    }
    const awardId = randomUUID();
    await tx.query(
      `INSERT INTO loyalty.awards (id, saga_id, user_id, points, status) VALUES ($1, $2, $3, $4, 'AWARDED')`,
      [awardId, call.sagaId, userId, points],
    );
    await tx.query(
      `INSERT INTO loyalty.balances (user_id, points) VALUES ($1, $2)
       ON CONFLICT (user_id) DO UPDATE SET points = balances.points + EXCLUDED.points`,
      [userId, points],
    );
    return { awardId, points };
  }

  /** Takes the saga's points back, found by saga id (the award's answer may never have arrived). */
  async revoke(call: StepCall, tx: PoolClient): Promise<JsonObject> {
    const revoked = await tx.query<{ user_id: string; points: string }>(
      `UPDATE loyalty.awards SET status = 'REVOKED' WHERE saga_id = $1 AND status = 'AWARDED'
       RETURNING user_id, points`,
      [call.sagaId],
    );
    for (const { user_id, points } of revoked.rows) {
      await tx.query('UPDATE loyalty.balances SET points = points - $2 WHERE user_id = $1', [user_id, points]);
    }
    return { revokedAwards: revoked.rowCount ?? 0 };
  }
}
