/**
 * Creates or upgrades the `saga_barrier` table with the Rust SDK's own migration files (copied into the
 * package at build time) and the same bookkeeping as sqlx's migrator: the `_sqlx_migrations` table, the
 * same checksums (SHA-384 of each file) and the same advisory lock. A database migrated by either SDK is
 * therefore up to date for the other, whichever starts first, and concurrent start-ups queue on one lock.
 */
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Pool, PoolClient } from 'pg';

/** Where the build puts the Rust SDK's migrations (`crates/saga-participant/migrations`). */
const MIGRATIONS_DIR = join(__dirname, '..', 'assets', 'migrations');

/** One migration file: `<version>_<description>.sql`. */
export interface Migration {
  version: bigint;
  /** The file name's description, underscores as spaces, as sqlx records it. */
  description: string;
  sql: string;
  checksum: Buffer;
}

/** The SDK's migrations, oldest first. */
export function sdkMigrations(dir: string = MIGRATIONS_DIR): Migration[] {
  return readdirSync(dir)
    .map((file) => /^(\d+)_(.+)\.sql$/.exec(file))
    .filter((match): match is RegExpExecArray => match !== null && !match[2].endsWith('.down'))
    .map(([file, version, description]) => {
      const sql = readFileSync(join(dir, file), 'utf8');
      return {
        version: BigInt(version),
        description: description.replace(/_/g, ' ').replace(/\.up$/, ''),
        sql,
        checksum: createHash('sha384').update(sql, 'utf8').digest(),
      };
    })
    .sort((a, b) => (a.version < b.version ? -1 : a.version > b.version ? 1 : 0));
}

/** A migration that cannot be applied. */
export class MigrateError extends Error {
  constructor(message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'MigrateError';
  }
}

/**
 * Creates or upgrades the barrier table in the participant's database. Versions it does not know (the
 * participant's own sqlx migrations, say) are left alone, as the Rust SDK does.
 */
export async function migrate(pool: Pool): Promise<void> {
  const client = await pool.connect();
  try {
    await runMigrations(client, sdkMigrations());
  } finally {
    client.release();
  }
}

async function runMigrations(client: PoolClient, migrations: Migration[]): Promise<void> {
  const { rows } = await client.query<{ name: string }>('SELECT current_database() AS name');
  const lock = lockId(rows[0].name);
  await client.query('SELECT pg_advisory_lock($1)', [lock]);
  try {
    await client.query(`CREATE TABLE IF NOT EXISTS _sqlx_migrations (
      version BIGINT PRIMARY KEY,
      description TEXT NOT NULL,
      installed_on TIMESTAMPTZ NOT NULL DEFAULT now(),
      success BOOLEAN NOT NULL,
      checksum BYTEA NOT NULL,
      execution_time BIGINT NOT NULL
    )`);
    const dirty = await client.query<{ version: string }>(
      'SELECT version FROM _sqlx_migrations WHERE success = false ORDER BY version LIMIT 1',
    );
    if (dirty.rows.length > 0) {
      throw new MigrateError(`migration ${dirty.rows[0].version} is partially applied; fix and remove it`);
    }
    const applied = await client.query<{ version: string; checksum: Buffer }>(
      'SELECT version, checksum FROM _sqlx_migrations',
    );
    const checksums = new Map(applied.rows.map((row) => [BigInt(row.version), row.checksum]));
    for (const migration of migrations) {
      const checksum = checksums.get(migration.version);
      if (checksum === undefined) {
        await apply(client, migration);
      } else if (!checksum.equals(migration.checksum)) {
        throw new MigrateError(
          `migration ${migration.version} was applied with other contents than this SDK's`,
        );
      }
    }
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [lock]);
  }
}

async function apply(client: PoolClient, migration: Migration): Promise<void> {
  const started = process.hrtime.bigint();
  try {
    await client.query('BEGIN');
    await client.query(migration.sql);
    await client.query(
      `INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
       VALUES ($1, $2, TRUE, $3, -1)`,
      [migration.version.toString(), migration.description, migration.checksum],
    );
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK');
    throw new MigrateError(`migration ${migration.version} failed`, err);
  }
  const elapsed = process.hrtime.bigint() - started;
  await client.query('UPDATE _sqlx_migrations SET execution_time = $1 WHERE version = $2', [
    elapsed.toString(),
    migration.version.toString(),
  ]);
}

/** sqlx's advisory lock key for a database: 0x3d32ad9e × CRC-32 (IEEE) of its name. */
export function lockId(database: string): string {
  return (0x3d32ad9en * BigInt(crc32(database))).toString();
}

/** CRC-32 (IEEE 802.3, reflected), computed here because `zlib.crc32` needs Node 20.15. */
export function crc32(text: string): number {
  let crc = 0xffffffff;
  for (const byte of Buffer.from(text, 'utf8')) {
    crc ^= byte;
    for (let bit = 0; bit < 8; bit++) {
      crc = (crc >>> 1) ^ (0xedb88320 & -(crc & 1));
    }
  }
  return (crc ^ 0xffffffff) >>> 0;
}
