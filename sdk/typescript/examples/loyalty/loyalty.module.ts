// The loyalty participant, shaped like a NestJS module: it owns its provider, its schema and the router
// that names the actions saga definitions use. In a NestJS app, PointsService is an @Injectable() and
// start() runs from onModuleInit.
import type { Pool } from 'pg';
import { type ParticipantServer, ParticipantService, Router, type SagaParticipant, migrate, serve } from '../../src';
import { PointsService } from './points.service';

export class LoyaltyModule {
  private readonly points = new PointsService();

  constructor(private readonly pool: Pool) {}

  router(): Router {
    return new Router()
      .execute('AwardPoints', (call, tx) => this.points.award(call, tx))
      .compensate('RevokePoints', (call, tx) => this.points.revoke(call, tx));
  }

  /** The barrier table (the SDK's migrations), then this service's own tables. */
  async migrate(): Promise<void> {
    await migrate(this.pool);
    await this.pool.query(`CREATE SCHEMA IF NOT EXISTS loyalty;
      CREATE TABLE IF NOT EXISTS loyalty.awards (id uuid PRIMARY KEY, saga_id uuid NOT NULL, user_id text NOT NULL,
        points bigint NOT NULL CHECK (points > 0), status text NOT NULL CHECK (status IN ('AWARDED', 'REVOKED')));
      CREATE INDEX IF NOT EXISTS awards_saga_id ON loyalty.awards (saga_id);
      CREATE TABLE IF NOT EXISTS loyalty.balances (user_id text PRIMARY KEY, points bigint NOT NULL CHECK (points >= 0));`);
  }

  /** Serves the actions behind the barrier; `wrap` may put something in front of it (fault injection). */
  async start(address: string, wrap = (service: SagaParticipant) => service): Promise<ParticipantServer> {
    await this.migrate();
    return serve(wrap(new ParticipantService('loyalty', this.pool, this.router())), address);
  }
}
