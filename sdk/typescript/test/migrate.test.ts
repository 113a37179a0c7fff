// The barrier's migrations: the Rust SDK's files, recorded exactly as sqlx records them, so a database
// migrated by either SDK is up to date for the other.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { MigrateError, migrate } from '../src';
import { crc32, lockId } from '../src/migrate';
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
  assert.ok(expected.length >= 3);

  const columns = await database.pool.query<{ column_name: string }>(
    "SELECT column_name FROM information_schema.columns WHERE table_name = 'saga_barrier' ORDER BY ordinal_position",
  );
  assert.deepEqual(
    columns.rows.map((row) => row.column_name),
    ['service', 'saga_id', 'step', 'direction', 'outcome', 'idempotency_key', 'output', 'error_code', 'error_message', 'created_at', 'replays', 'generation'],
  );
});

test('versions the SDK does not know are left alone, a changed known one is refused', async () => {
  await migrate(database.pool);
  await database.pool.query(
    `INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
     VALUES (20990101000000, 'someone else''s', true, '\\x00', 1)`,
  );
  await migrate(database.pool);

  const corrupt = "UPDATE _sqlx_migrations SET checksum = $1 WHERE version = 20250101000000 RETURNING 1";
  const { rows } = await database.pool.query<{ checksum: Buffer }>(
    'SELECT checksum FROM _sqlx_migrations WHERE version = 20250101000000',
  );
  await database.pool.query(corrupt, [Buffer.from([1])]);
  await assert.rejects(migrate(database.pool), (err: unknown) => {
    assert.ok(err instanceof MigrateError);
    assert.equal(err.message, "migration 20250101000000 was applied with other contents than this SDK's");
    return true;
  });
  await database.pool.query(corrupt, [rows[0].checksum]);
});

test("the advisory lock key is sqlx's: 0x3d32ad9e times the CRC-32 of the database name", () => {
  assert.equal(crc32('123456789'), 0xcbf43926, 'the CRC-32 check value');
  assert.equal(crc32(''), 0);
  assert.equal(lockId('sagad'), (0x3d32ad9en * BigInt(crc32('sagad'))).toString());
  assert.equal(lockId('123456789'), (0x3d32ad9en * 0xcbf43926n).toString());
});

test('the lock is held while migrating, so concurrent start-ups queue on it', async () => {
  const holder = await database.pool.connect();
  try {
    await holder.query('SELECT pg_advisory_lock($1)', [lockId(database.name)]);
    let finished = false;
    const waiting = migrate(database.pool).then(() => {
      finished = true;
    });
    await database.waitForLockWaiters(1);
    assert.equal(finished, false, 'the migrator waits for the lock');
    await holder.query('SELECT pg_advisory_unlock($1)', [lockId(database.name)]);
    await waiting;
    assert.equal(finished, true);
  } finally {
    holder.release();
  }
});
