/** Where the SDK reports what happened: lowercase messages, data in fields. */

/** The SDK's log sink; give your own to route lines into your application's logger. */
export interface Logger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
}

const LEVELS = ['debug', 'info', 'warn', 'off'] as const;

/** A level name, lowest first; `off` writes nothing. */
export type Level = (typeof LEVELS)[number];

/**
 * JSON lines on stderr (`{"level":"warn","message":"step attempt failed","saga_id":…}`) at `level` and
 * above; the default level comes from `SAGA_LOG_LEVEL`, else `warn`.
 */
export function jsonLogger(level: Level = levelFromEnv()): Logger {
  const threshold = LEVELS.indexOf(level);
  const write = (at: Level) => (message: string, fields: Record<string, unknown> = {}) => {
    if (LEVELS.indexOf(at) >= threshold) {
      process.stderr.write(`${JSON.stringify({ level: at, message, ...fields }, errorFields)}\n`);
    }
  };
  return { debug: write('debug'), info: write('info'), warn: write('warn') };
}

function levelFromEnv(): Level {
  const level = process.env.SAGA_LOG_LEVEL;
  return (LEVELS as readonly string[]).includes(level ?? '') ? (level as Level) : 'warn';
}

/** Errors as their message and cause chain, which JSON.stringify would write as `{}`. */
function errorFields(_key: string, value: unknown): unknown {
  if (value instanceof Error) {
    const cause: unknown = value.cause;
    return cause === undefined ? value.message : { message: value.message, cause };
  }
  return value;
}
