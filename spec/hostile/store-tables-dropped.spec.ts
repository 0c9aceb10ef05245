/**
 * An operator drops the store's outbox and inbox while a processor runs (a
 * reset by hand, a restore that left them out), leaving the version table
 * that says they exist. With `autoMigrate` (the default) the store makes
 * them again rather than failing every delivery until a restart, or for
 * good, since a restart read "version 1" and made nothing.
 */
import { expect } from 'chai';
import type pg from 'pg';
import { currentDelivery, MessageHandler, MessageProcessor } from '../../lib/index.js';
import { PostgresStore } from '../../lib/stores/postgres/index.js';
import { deferred, exchangeFixture } from '../support/components.js';
import { within } from '../support/wait.js';
import { dropSchema, pgPool, uniqueSchema } from '../stores/support.js';

describe('PostgresStore whose tables an operator dropped', function () {
  this.timeout(40_000);
  const f = exchangeFixture('tables-dropped');
  let pool: pg.Pool;
  let schema: string;

  before(async () => {
    pool = await pgPool();
  });
  after(() => pool.end());
  beforeEach(async () => {
    schema = uniqueSchema('postage_dropped');
  });
  afterEach(() => dropSchema(pool, schema));

  const drop = () => pool.query(`DROP TABLE "${schema}".postage_outbox, "${schema}".postage_inbox`);

  it('makes them again while it runs, and handles the messages that came meanwhile', async () => {
    const store = new PostgresStore({ pool, schema });
    const done = deferred();
    class Jobs extends MessageProcessor {
      @MessageHandler('command', 'job')
      async job() {
        await currentDelivery()!.db!.query('SELECT 1');
        done.resolve();
      }
    }
    await f.start(Jobs, { store, concurrency: 1 });
    await drop();
    const p = await f.producer();
    await p.message_job({}, { _message_id: 'after-the-drop' });
    await within(done.promise, { timeout: 15_000, message: 'the message handled once the tables were back' });
    const { rows } = await pool.query(`SELECT message_id FROM "${schema}".postage_inbox`);
    expect(rows).to.deep.equal([{ message_id: 'after-the-drop' }]);
  });

  it('makes them again at the next start when the version table was left behind', async () => {
    await new PostgresStore({ pool, schema }).migrate();
    await drop();
    await new PostgresStore({ pool, schema }).migrate();
    const { rows } = await pool.query(
      `SELECT to_regclass($1) IS NOT NULL AS outbox, to_regclass($2) IS NOT NULL AS inbox,
        (SELECT count(*)::int FROM "${schema}".postage_schema_version) AS versions`,
      [`"${schema}".postage_outbox`, `"${schema}".postage_inbox`],
    );
    expect(rows[0]).to.deep.equal({ outbox: true, inbox: true, versions: 1 });
  });
});
