/**
 * The SQL of `PostgresStore`: its tables, and each statement it runs, for a
 * schema and a table prefix. docs/database.md quotes these.
 */

/** A checked, quoted identifier: names come from options, never from messages. */
export function ident(name: string, what: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,50}$/.test(name))
    throw new TypeError(
      `${what} must be letters, digits and _ (not starting with a digit), not ${JSON.stringify(name)}`,
    );
  return `"${name}"`;
}

/** The tables' names, quoted. */
export interface Tables {
  schema: string;
  /** The schema's name as given, unquoted (for the catalogs). */
  schemaName: string;
  outbox: string;
  inbox: string;
  version: string;
  /** What the advisory lock of `migrate()` is keyed on. */
  lockKey: string;
  /** The advisory lock's key for making the schema, which stores with other prefixes share. */
  schemaLockKey: string;
  /** Index names are per schema: prefixed, unqualified. */
  prefix: string;
}

export function tables(schema: string, prefix: string): Tables {
  const s = ident(schema, 'schema');
  ident(`${prefix}x`, 'prefix');
  return {
    schema: s,
    schemaName: schema,
    outbox: `${s}.${ident(`${prefix}outbox`, 'prefix')}`,
    inbox: `${s}.${ident(`${prefix}inbox`, 'prefix')}`,
    version: `${s}.${ident(`${prefix}schema_version`, 'prefix')}`,
    lockKey: `postage-ts:${schema}.${prefix}`,
    schemaLockKey: `postage-ts:${schema}`,
    prefix,
  };
}

/** The migrations, in order: `migrate()` applies those past the version the tables are at. */
export function migrations(t: Tables): string[] {
  return [
    `CREATE TABLE IF NOT EXISTS ${t.outbox} (
  seq bigserial PRIMARY KEY,
  message_id text NOT NULL,
  source text NOT NULL,
  targets jsonb NOT NULL,
  properties jsonb NOT NULL,
  body bytea NOT NULL,
  delay_ms integer NOT NULL DEFAULT 0,
  created_at timestamptz NOT NULL DEFAULT now(),
  attempts integer NOT NULL DEFAULT 0,
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  last_error text,
  sent_at timestamptz,
  failed_at timestamptz
);
CREATE INDEX IF NOT EXISTS "${t.prefix}outbox_waiting" ON ${t.outbox} (seq) WHERE sent_at IS NULL AND failed_at IS NULL;
CREATE INDEX IF NOT EXISTS "${t.prefix}outbox_sent" ON ${t.outbox} (sent_at) WHERE sent_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS ${t.inbox} (
  consumer text NOT NULL,
  message_id text NOT NULL,
  received_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer, message_id)
);
CREATE INDEX IF NOT EXISTS "${t.prefix}inbox_received" ON ${t.inbox} (received_at);`,
  ];
}

export const sql = {
  present:
    'SELECT to_regclass($1) IS NOT NULL AS version, to_regclass($2) IS NOT NULL AS outbox, ' +
    'to_regclass($3) IS NOT NULL AS inbox',
  schemaPresent: 'SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1) AS present',
  versionTable: (t: Tables) => `CREATE TABLE IF NOT EXISTS ${t.version} (version integer NOT NULL)`,
  lock: 'SELECT pg_advisory_xact_lock(hashtext($1))',
  version: (t: Tables) => `SELECT max(version) AS version FROM ${t.version}`,
  setVersion: (t: Tables) => `INSERT INTO ${t.version} (version) VALUES ($1)`,
  receive: (t: Tables) =>
    `INSERT INTO ${t.inbox} (consumer, message_id) VALUES ($1, $2) ON CONFLICT (consumer, message_id) DO NOTHING`,
  /** One row per message; `$1`…`$6` repeated per row. */
  send: (t: Tables, rows: number) => {
    const values: string[] = [];
    for (let i = 0; i < rows; i++) {
      const b = i * 6;
      values.push(`($${b + 1}, $${b + 2}, $${b + 3}::jsonb, $${b + 4}::jsonb, $${b + 5}, $${b + 6})`);
    }
    const columns = '(message_id, source, targets, properties, body, delay_ms)';
    return `INSERT INTO ${t.outbox} ${columns} VALUES ${values.join(', ')} RETURNING seq`;
  },
  markSent: (t: Tables) => `UPDATE ${t.outbox} SET sent_at = now() WHERE seq = ANY($1::bigint[]) AND sent_at IS NULL`,
  markUnsent: (t: Tables) =>
    `UPDATE ${t.outbox} SET attempts = attempts + 1, last_error = $2,
  next_attempt_at = coalesce($3, next_attempt_at), failed_at = CASE WHEN $3::timestamptz IS NULL THEN now() END
WHERE seq = $1 AND sent_at IS NULL`,
  due: (t: Tables) =>
    `SELECT seq, message_id, targets, properties, body, delay_ms, attempts, created_at FROM ${t.outbox}
WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= now()
  AND created_at <= now() - make_interval(secs => $1::double precision / 1000)
ORDER BY seq LIMIT $2 FOR UPDATE SKIP LOCKED`,
  backlog: (t: Tables) =>
    `SELECT count(*) FILTER (WHERE failed_at IS NULL)::int AS waiting,
  coalesce(extract(epoch FROM clock_timestamp() - min(created_at) FILTER (WHERE failed_at IS NULL)) * 1000, 0)::float8
    AS oldest_ms,
  count(*) FILTER (WHERE failed_at IS NOT NULL)::int AS failed
FROM ${t.outbox} WHERE sent_at IS NULL`,
  pruneSent: (t: Tables) =>
    `DELETE FROM ${t.outbox} WHERE sent_at < now() - make_interval(secs => $1::double precision / 1000)`,
  pruneInbox: (t: Tables) =>
    `DELETE FROM ${t.inbox} WHERE received_at < now() - make_interval(secs => $1::double precision / 1000)`,
};
