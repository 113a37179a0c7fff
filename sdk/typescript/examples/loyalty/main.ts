/**
 * `node dist/examples/loyalty/main.js`: serves the loyalty example participant, with the demo's fault
 * injection, until SIGTERM or SIGINT.
 *
 * Settings from the environment: `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/sagad_demo`)
 * and `LISTEN_ADDR` (default `0.0.0.0:50065`; port 0 picks a free one). Once bound, stdout gets one line,
 * `loyalty listening on <host>:<port>`, so a caller that passed port 0 learns the real port.
 */
import { Pool } from 'pg';

import { FaultInjection } from './faults';
import { LoyaltyModule } from './loyalty.module';

async function main(): Promise<void> {
  const pool = new Pool({ connectionString: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/sagad_demo' });
  const address = process.env.LISTEN_ADDR ?? '0.0.0.0:50065';
  let stop = () => {};
  const stopping = new Promise<void>((resolve) => {
    stop = resolve;
  });
  const server = await new LoyaltyModule(pool).start(address, (service) => new FaultInjection(service, stopping));
  process.stdout.write(`loyalty listening on ${address.slice(0, address.lastIndexOf(':'))}:${server.port}\n`);

  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  stop();
  await server.shutdown();
  await pool.end();
}

main().catch((err: unknown) => {
  process.stderr.write(`loyalty: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
