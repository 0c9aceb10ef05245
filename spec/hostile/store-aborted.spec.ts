/**
 * A query that fails inside a PostgreSQL transaction aborts it: every later
 * statement is refused, and a COMMIT ends it as a ROLLBACK without an error.
 * A handler (or a `store.transaction()` callback) that catches such a failure
 * and goes on must not be taken as committed: its writes, its inbox row and
 * its outbox rows are gone.
 */
import { expect } from 'chai';
import type pg from 'pg';
import { currentDelivery, MessageHandler, MessageProcessor, StoreError } from '../../lib/index.js';
import { PostgresStore } from '../../lib/stores/postgres/index.js';
import { exchangeFixture } from '../support/components.js';
import { aheadOfFence, deleteTopology, getOne, unique } from '../support/topology.js';
import { dropSchema, pgPool, uniqueSchema } from '../stores/support.js';

describe('PostgresStore and a transaction a failed query aborted', function () {
  this.timeout(30_000);
  const f = exchangeFixture('aborted');
  let pool: pg.Pool;
  let schema: string;
  let table: string;
  let store: PostgresStore;

  before(async () => {
    pool = await pgPool();
  });
  after(() => pool.end());
  beforeEach(async () => {
    schema = uniqueSchema('postage_aborted');
    table = `"${schema}".orders`;
    await pool.query(`CREATE SCHEMA "${schema}"`);
    await pool.query(`CREATE TABLE ${table} (id integer PRIMARY KEY)`);
    store = new PostgresStore({ pool, schema, sweepAfterMs: 500, sweepEveryMs: 100 });
  });
  afterEach(() => dropSchema(pool, schema));

  const rows = async () => (await pool.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0].n as number;
  const inbox = async () =>
    (await pool.query(`SELECT count(*)::int AS n FROM "${schema}".postage_inbox`)).rows[0].n as number;

  /** Writes row 1, then tries to write it again and swallows the unique violation. */
  async function writeTwice(db: { query(text: string, values?: unknown[]): Promise<unknown> }): Promise<void> {
    await db.query(`INSERT INTO ${table} (id) VALUES (1)`);
    await db.query(`INSERT INTO ${table} (id) VALUES (1)`).catch(() => undefined);
  }

  it('rejects store.transaction() with a StoreError (reason aborted) instead of resolving as if it had committed', async () => {
    const { producer, queue } = await f.output('placed');
    const err = await store
      .transaction(async (db) => {
        await writeTwice(db);
        await producer.message_placed({ id: 1 });
        return 'committed?';
      })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(err).to.be.instanceOf(StoreError);
    expect((err as StoreError).reason).to.equal('aborted');
    expect((err as Error).message).to.match(/rolled back/);
    expect(await rows()).to.equal(0);
    expect(await aheadOfFence(queue)).to.deep.equal([]);
  });

  it('rejects it as well when the callback sent nothing (the COMMIT alone would roll back)', async () => {
    const err = await store.transaction(writeTwice).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(StoreError);
    expect((err as StoreError).reason).to.equal('aborted');
    expect(await rows()).to.equal(0);
  });

  it('still commits a transaction that recovered from a failed query with a savepoint', async () => {
    await store.transaction(async (db) => {
      await db.query(`INSERT INTO ${table} (id) VALUES (1)`);
      await db.query('SAVEPOINT again');
      await db.query(`INSERT INTO ${table} (id) VALUES (1)`).catch(() => undefined);
      await db.query('ROLLBACK TO SAVEPOINT again');
      await db.query(`INSERT INTO ${table} (id) VALUES (2)`);
    });
    expect(await rows()).to.equal(2);
  });

  it('does not ack a delivery whose handler swallowed a failed query as handled: nothing was committed', async () => {
    class Orders extends MessageProcessor {
      @MessageHandler('command', 'order')
      async order() {
        await writeTwice(currentDelivery()!.db!);
      }
    }
    const p = await f.producer();
    const { events, settled } = await f.start(Orders, { store });
    await p.message_order({});
    await settled();
    // Not "acked": that would tell the broker the message was handled when its row and inbox row rolled back.
    expect(events[0].outcome).to.not.equal('acked');
    expect(events[0].error).to.be.instanceOf(StoreError);
    expect(await rows()).to.equal(0);
    expect(await inbox()).to.equal(0);
  });

  it("counts that handler's run as failed: retried, then sent to the error exchange, not deferred for ever", async () => {
    // The processor declares the error exchange and its queue of the same name.
    const errors = unique('aborted-errors');
    try {
      let runs = 0;
      class Orders extends MessageProcessor {
        @MessageHandler('command', 'order')
        async order() {
          runs++;
          await writeTwice(currentDelivery()!.db!);
        }
      }
      const p = await f.producer();
      const { events, settled } = await f.start(Orders, {
        store,
        errorExchange: errors,
        retry: { attempts: 2, backoffMs: 1 },
      });
      await p.message_order({});
      await settled();
      expect(events[0].outcome).to.equal('dead-lettered');
      expect(events[0].error).to.be.instanceOf(StoreError);
      expect(runs).to.equal(2);
      const copy = await getOne(errors);
      expect(copy, 'the failed order in the error queue').to.not.equal(false);
      expect(
        (copy as { properties: { headers?: Record<string, unknown> } }).properties.headers?.['x-error-name'],
      ).to.equal('StoreError');
      expect(await rows()).to.equal(0);
      expect(await inbox()).to.equal(0);
    } finally {
      await deleteTopology([errors], [errors]);
    }
  });
});
