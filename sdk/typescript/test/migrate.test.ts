// The barrier's migrations: the Rust SDK's files, recorded exactly as sqlx records them, so a database
// migrated by either SDK is up to date for the other.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { MigrateError, migrate } from '../src';
import { TestDatabase } from './support/database';

/** The Rust SDK's migration directory, read here straight from the repository. */
const RUST_MIGRATIONS = join(__dirname, '..', '..', '..', '..', 'crates', 'saga-participant', 'migrations');

let database: TestDatabase;

before(async () => {
  database = await TestDatabase.create('sdk_ts_migrate');
});

after(async () => {
  await database.drop();
});

test("every Rust SDK migration is recorded with sqlx's version, description and SHA-384 checksum", async () => {
  await Promise.all([migrate(database.pool), migrate(database.pool), migrate(database.pool)]);

  const expected = readdirSync(RUST_MIGRATIONS)
    .filter((file) => file.endsWith('.sql'))
    .sort()
    .map((file) => {
      const [, version, description] = /^(\d+)_(.+)\.sql$/.exec(file) ?? [];
      const sql = readFileSync(join(RUST_MIGRATIONS, file));
      return {
        version,
        description: description.replace(/_/g, ' '),
        success: true,
        checksum: createHash('sha384').update(sql).digest('hex'),
      };
    });
  const { rows } = await database.pool.query(
    `SELECT version::text, description, success, encode(checksum, 'hex') AS checksum, execution_time > 0 AS timed
     FROM _sqlx_migrations ORDER BY version`,
  );
  assert.deepEqual(
    rows.map(({ timed: _timed, ...row }) => row),
    expected,
  );
  assert.ok(rows.every((row) => row.timed), 'execution time recorded');
  assert.ok(expected.length >= 2);

  const columns = await database.pool.query<{ column_name: string }>(
    "SELECT column_name FROM information_schema.columns WHERE table_name = 'saga_barrier' ORDER BY ordinal_position",
  );
  assert.deepEqual(
    columns.rows.map((row) => row.column_name),
    ['service', 'saga_id', 'step', 'direction', 'outcome', 'idempotency_key', 'output', 'error_code', 'error_message', 'created_at', 'replays'],
  );
});

test('versions the SDK does not know are left alone, a changed known one is refused', async () => {
  await migrate(database.pool);
  await database.pool.query(
    `INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
     VALUES (20990101000000, 'someone else''s', true, '\\x00', 1)`,
  );
  await migrate(database.pool);

  await database.pool.query(
    "UPDATE _sqlx_migrations SET checksum = '\\x01' WHERE version = 20250101000000",
  );
  await assert.rejects(migrate(database.pool), (err: unknown) => {
    assert.ok(err instanceof MigrateError);
    assert.equal(err.message, "migration 20250101000000 was applied with other contents than this SDK's");
    return true;
  });
});
