// Copies what the SDK shares with the rest of the repository into dist/assets at build time, so that the
// repository's files stay the only source of truth: the participant protocol (proto/) and the barrier
// table's migrations (the Rust SDK's, applied with the same bookkeeping so both SDKs share a database).
import { cpSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const assets = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'assets');

const proto = join('proto', 'saga', 'v1', 'participant.proto');
mkdirSync(dirname(join(assets, proto)), { recursive: true });
cpSync(join(root, proto), join(assets, proto));

// Emptied first: a migration renamed or removed in the repository must not linger from an earlier build.
const migrations = join(root, 'crates', 'saga-participant', 'migrations');
rmSync(join(assets, 'migrations'), { recursive: true, force: true });
mkdirSync(join(assets, 'migrations'), { recursive: true });
for (const file of readdirSync(migrations).filter((name) => name.endsWith('.sql'))) {
  cpSync(join(migrations, file), join(assets, 'migrations', file));
}
