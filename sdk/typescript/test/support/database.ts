/**
 * A fresh PostgreSQL database per test file, dropped when the file's tests are done, so files never see
 * each other's rows and can run in parallel. The server comes from `SAGA_TEST_PG` (default
 * `postgres://postgres@127.0.0.1:5432`), as for the Rust tests.
 */
import { randomUUID } from 'node:crypto';

import { Client, Pool } from 'pg';

const SERVER = process.env.SAGA_TEST_PG ?? 'postgres://postgres@127.0.0.1:5432';

export class TestDatabase {
  readonly pool: Pool;

  private constructor(
    readonly name: string,
    readonly url: string,
  ) {
    this.pool = new Pool({ connectionString: url, max: 20 });
    // The shared server may cut idle connections (a restart by another test run); the next query
    // reconnects, so an idle client's error must not crash the test process.
    this.pool.on('error', () => {});
  }

  /** Creates an empty database named `<prefix>_<random>`. */
  static async create(prefix: string): Promise<TestDatabase> {
    const name = `${prefix}_${randomUUID().replace(/-/g, '')}`;
    await admin(async (client) => {
      await client.query(`CREATE DATABASE "${name}"`);
    });
    return new TestDatabase(name, `${SERVER}/${name}`);
  }

  /** Closes the pool and drops the database. */
  async drop(): Promise<void> {
    await this.pool.end();
    await admin(async (client) => {
      await client.query(`DROP DATABASE IF EXISTS "${this.name}" WITH (FORCE)`);
    });
  }

  /** Polls until `count` sessions of this database are blocked on a lock (later claims waiting). */
  async waitForLockWaiters(count: number): Promise<void> {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const { rows } = await this.pool.query<{ waiters: string }>(
        `SELECT count(*) AS waiters FROM pg_stat_activity
         WHERE datname = current_database() AND wait_event_type = 'Lock'`,
      );
      if (Number(rows[0].waiters) >= count) {
        return;
      }
      if (Date.now() > deadline) {
        throw new Error(`fewer than ${count} requests waited on the first execute's barrier row`);
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }
}

async function admin(work: (client: Client) => Promise<void>): Promise<void> {
  const client = new Client({ connectionString: `${SERVER}/postgres` });
  await client.connect();
  try {
    await work(client);
  } finally {
    await client.end();
  }
}
