/**
 * An application that runs as a PostgreSQL role which may use the store's
 * tables but not create anything (the tables made by a DBA from
 * docs/database.md's SQL, or by a deploy step): the usual least-privilege
 * setup. PostgreSQL checks the privilege to create before it looks at
 * IF NOT EXISTS, so a migrate() that always issues its DDL fails there.
 */
import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import pg from 'pg';
import { currentDelivery, MessageHandler, MessageProcessor } from '../../lib/index.js';
import { PostgresStore } from '../../lib/stores/postgres/index.js';
import { exchangeFixture } from '../support/components.js';
import { getOne } from '../support/topology.js';
import { until } from '../support/wait.js';
import { dropSchema, PG_URL, pgPool, uniqueSchema } from '../stores/support.js';

describe('PostgresStore run by a role that may only use its tables', function () {
  this.timeout(30_000);
  const f = exchangeFixture('privileges');
  let admin: pg.Pool;
  let app: pg.Pool;
  let role: string;
  let schema: string;

  before(async () => {
    admin = await pgPool();
    role = `postage_spec_app_${randomBytes(4).toString('hex')}`;
    await admin.query(`CREATE ROLE "${role}" LOGIN`);
    const url = new URL(PG_URL);
    url.username = role;
    url.password = '';
    app = new pg.Pool({ connectionString: url.toString(), max: 4, connectionTimeoutMillis: 5000 });
    app.on('error', () => undefined);
  });
  after(async () => {
    await app.end();
    await admin.query(`DROP OWNED BY "${role}"`).catch(() => undefined);
    await admin.query(`DROP ROLE IF EXISTS "${role}"`);
    await admin.end();
  });
  beforeEach(async () => {
    schema = uniqueSchema('postage_priv');
    // What the DBA does: the tables (and the application's own) made by an owner, the role given their use only.
    await new PostgresStore({ pool: admin, schema }).migrate();
    await admin.query(`CREATE TABLE "${schema}".orders (item text NOT NULL)`);
    await admin.query(`GRANT USAGE ON SCHEMA "${schema}" TO "${role}"`);
    await admin.query(`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "${schema}" TO "${role}"`);
    await admin.query(`GRANT USAGE ON ALL SEQUENCES IN SCHEMA "${schema}" TO "${role}"`);
  });
  afterEach(() => dropSchema(admin, schema));

  function orders(table: string, send: () => Promise<void>) {
    return class Orders extends MessageProcessor {
      @MessageHandler('command', 'order')
      async order(c: { parameters: { item: string } }) {
        await currentDelivery()!.db!.query(`INSERT INTO ${table} (item) VALUES ($1)`, [c.parameters.item]);
        await send();
      }
    };
  }

  it('migrates (nothing to do), runs and relays with autoMigrate left on, the default', async () => {
    const store = new PostgresStore({ pool: app, schema });
    await store.migrate();
    const { producer: out, queue } = await f.output('placed');
    const Orders = orders(`"${schema}".orders`, () => out.message_placed({}));
    const { events, settled } = await f.start(Orders, { store, concurrency: 1 });
    const p = await f.producer();
    await p.message_order({ item: 'book' });
    await settled();
    expect(events[0].outcome).to.equal('acked');
    expect((await admin.query(`SELECT item FROM "${schema}".orders`)).rows).to.deep.equal([{ item: 'book' }]);
    expect(await getOne(queue)).to.not.equal(undefined);
    await until(async () => (await store.backlog()).waiting === 0, { message: 'the outbox row marked sent' });
  });

  it('creates nothing at ready() when the store says autoMigrate: false', async () => {
    const other = uniqueSchema('postage_priv_none');
    try {
      const store = new PostgresStore({ pool: admin, schema: other, autoMigrate: false });
      await f.start(
        orders(`"${other}".orders`, async () => undefined),
        { store, concurrency: 1 },
      );
      const { rows } = await admin.query(`SELECT to_regnamespace($1) AS s`, [other]);
      expect(rows[0].s).to.equal(null);
    } finally {
      await dropSchema(admin, other);
    }
  });
});
