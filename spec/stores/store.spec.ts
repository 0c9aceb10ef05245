/**
 * A processor's `store`: each run one database transaction with the handler's
 * writes, its inbox row and its sends. The same specs run against the real
 * PostgreSQL (`PostgresStore`) and in memory (`MemoryStore`), on the broker.
 */
import { expect } from 'chai';
import type pg from 'pg';
import {
  currentDelivery,
  type DeliveryEvent,
  GenericProducer,
  MessageCommand,
  MessageHandler,
  MessageProcessor,
  type MessageSender,
  type Producer,
  type MessageStore,
  StoreError,
} from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import { PostgresStore } from '../../lib/stores/postgres/index.js';
import { MemoryStore, ProcessorHarness, testProducer } from '../../lib/testing/index.js';
import { brokerUrl } from '../support/broker.js';
import { exchangeFixture } from '../support/components.js';
import { envelopeBytes } from '../support/envelopes.js';
import { aheadOfFence, getOne } from '../support/topology.js';
import { dropSchema, pgPool, uniqueSchema, until } from './support.js';

const quiet = makeLogger('silent');

/** One store under test: made fresh per test, with the rows the handlers wrote counted its own way. */
interface Kind {
  name: string;
  make(): Promise<{ store: MessageStore; table: string; rows(): Promise<number>; waiting(): Promise<number> }>;
  cleanup(): Promise<void>;
}

function postgres(): Kind {
  let pool: pg.Pool | undefined;
  const schemas: string[] = [];
  return {
    name: 'PostgresStore',
    async make() {
      pool ??= await pgPool();
      const p = pool;
      const schema = uniqueSchema('postage_spec');
      schemas.push(schema);
      await p.query(`CREATE SCHEMA "${schema}"`);
      const table = `"${schema}".orders`;
      await p.query(`CREATE TABLE ${table} (id serial PRIMARY KEY, item text NOT NULL)`);
      const store = new PostgresStore({ pool: p, schema, sweepAfterMs: 500, sweepEveryMs: 100 });
      return {
        store,
        table,
        rows: async () => (await p.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0].n as number,
        waiting: async () => (await store.backlog()).waiting,
      };
    },
    async cleanup() {
      if (!pool) return;
      for (const s of schemas.splice(0)) await dropSchema(pool, s);
      await pool.end();
      pool = undefined;
    },
  };
}

function memory(): Kind {
  return {
    name: 'MemoryStore',
    async make() {
      const store = new MemoryStore({ sweepAfterMs: 500, sweepEveryMs: 100 });
      return {
        store,
        table: 'orders',
        rows: async () => store.statements.filter((s) => s.text.startsWith('INSERT INTO orders')).length,
        waiting: async () => store.waiting.length,
      };
    },
    async cleanup() {},
  };
}

for (const kind of [postgres(), memory()]) {
  describe(`${kind.name} as a processor's store`, function () {
    this.timeout(30_000);
    const f = exchangeFixture('store');
    let outQueue: string;
    after(() => kind.cleanup());

    /** The input producer, and the output producer with its queue declared (nobody consumes it). */
    async function wire() {
      const { producer: o, queue, ex } = await f.output('placed');
      outQueue = queue;
      return { p: await f.producer(), o, out: ex.name };
    }

    /** A processor whose handler writes an order row, sends `placed`, and then does `then`. */
    function orders(o: Producer<GenericProducer>, table: string, then = () => {}) {
      return class Orders extends MessageProcessor {
        @MessageHandler('command', 'order')
        async order(c: { parameters: { item: string } }) {
          await currentDelivery()!.db!.query(`INSERT INTO ${table} (item) VALUES ($1)`, [c.parameters.item]);
          await o.message_placed({ item: c.parameters.item });
          then();
        }
      };
    }

    it('commits the row and publishes the message once a handler succeeds, and marks its outbox row sent', async () => {
      const { store, table, rows, waiting } = await kind.make();
      const { p, o } = await wire();
      const Orders = orders(o, table);
      const { events, settled } = await f.start(Orders, { store });
      await p.message_order({ item: 'book' });
      await settled();
      expect(events[0].outcome).to.equal('acked');
      const m = await getOne(outQueue);
      expect(m && JSON.parse(m.content.toString()).content.parameters).to.deep.equal({ item: 'book' });
      expect(await rows()).to.equal(1);
      await until(async () => (await waiting()) === 0, 'the outbox row marked sent');
      expect(await aheadOfFence(outQueue)).to.deep.equal([]);
    });

    it('leaves no row and sends nothing when the handler throws after writing and sending', async () => {
      const { store, table, rows, waiting } = await kind.make();
      const { p, o } = await wire();
      const Orders = orders(o, table, () => {
        throw new Error('after the write and the send');
      });
      const { events, settled } = await f.start(Orders, { store });
      await p.message_order({ item: 'book' });
      await settled();
      expect(events[0].outcome).to.equal('rejected');
      expect(await rows()).to.equal(0);
      expect(await waiting()).to.equal(0);
      expect(await aheadOfFence(outQueue)).to.deep.equal([]);
    });

    it('rolls back a run that passes its time limit', async () => {
      const { store, table, rows } = await kind.make();
      const { p, o } = await wire();
      const Orders = orders(o, table);
      class Slow extends Orders {
        @MessageHandler('command', 'order')
        async late() {
          await new Promise((r) => setTimeout(r, 1_000));
        }
      }
      const { events, settled } = await f.start(Slow, { store, handlerTimeoutMs: 200 });
      await p.message_order({ item: 'book' });
      await settled();
      expect(events[0].outcome).to.equal('rejected');
      expect(await rows()).to.equal(0);
      expect(await aheadOfFence(outQueue)).to.deep.equal([]);
    });

    it('handles a message delivered twice to two replicas once: one row, one message', async () => {
      const { store, table, rows, waiting } = await kind.make();
      const { p, o } = await wire();
      const Orders = orders(o, table);
      const opts = { url: f.url, logger: quiet, handleSignals: false, eqk: [[f.ex, [[f.queue, 'k']]]] as const, store };
      const a = new Orders({ ...opts, eqk: [[f.ex, [[f.queue, 'k']]]] });
      const b = new Orders({ ...opts, eqk: [[f.ex, [[f.queue, 'k']]]] });
      await f.h.start(a, b);
      const events: DeliveryEvent[] = [];
      const both = new Promise<void>((resolve) => {
        const see = (e: DeliveryEvent) => {
          events.push(e);
          if (events.length === 2) resolve();
        };
        a.observe(see);
        b.observe(see);
      });
      await Promise.all([
        p.message_order({ item: 'book' }, { _message_id: 'order-1' }),
        p.message_order({ item: 'book' }, { _message_id: 'order-1' }),
      ]);
      await both;
      expect(events.map((e) => e.outcome)).to.deep.equal(['acked', 'acked']);
      expect(await rows()).to.equal(1);
      expect(await getOne(outQueue)).to.not.equal(false);
      // The relay publishes after the ack: once no row waits, a second copy would be ahead of the fence.
      await until(async () => (await waiting()) === 0, 'the outbox rows relayed');
      expect(await aheadOfFence(outQueue)).to.deep.equal([]);
    });

    it('publishes what store.transaction() sent once it commits, and nothing when it rolls back', async () => {
      const { store, table, rows, waiting } = await kind.make();
      const { o } = await wire();
      await store.migrate();
      await store.transaction(async (db) => {
        await db.query(`INSERT INTO ${table} (item) VALUES ($1)`, ['kept']);
        await o.message_placed({ item: 'kept' });
      });
      const m = await getOne(outQueue);
      expect(m && JSON.parse(m.content.toString()).content.parameters).to.deep.equal({ item: 'kept' });
      let thrown: unknown;
      try {
        await store.transaction(async (db) => {
          await db.query(`INSERT INTO ${table} (item) VALUES ($1)`, ['dropped']);
          await o.message_placed({ item: 'dropped' });
          throw new Error('rolled back');
        });
      } catch (err) {
        thrown = err;
      }
      expect((thrown as Error).message).to.equal('rolled back');
      expect(await rows()).to.equal(1);
      await until(async () => (await waiting()) === 0, 'the outbox rows relayed');
      expect(await aheadOfFence(outQueue)).to.deep.equal([]);
    });

    it('publishes a send store.transaction() left running past its commit, and refuses one past its rollback', async () => {
      const { store } = await kind.make();
      const { o } = await wire();
      await store.migrate();
      // Work the callback started and did not await: its send comes after the transaction ended.
      const late = (item: string) =>
        new Promise<void>((resolve, reject) => {
          setTimeout(() => o.message_placed({ item }).then(resolve, reject), 50);
        });
      let kept: Promise<void> | undefined;
      await store.transaction(async () => {
        kept = late('after the commit');
      });
      await kept;
      const m = await getOne(outQueue, 2_000);
      expect(m && JSON.parse(m.content.toString()).content.parameters).to.deep.equal({ item: 'after the commit' });
      let refused: Promise<void> | undefined;
      await store
        .transaction(async () => {
          refused = late('after the rollback');
          throw new Error('rolled back');
        })
        .catch(() => undefined);
      let err: unknown;
      await refused!.catch((e: unknown) => {
        err = e;
      });
      expect(err).to.be.instanceOf(StoreError);
      expect((err as StoreError).reason).to.equal('ended');
      expect(await getOne(outQueue, 300)).to.equal(false);
    });

    it('has its sweeper publish an outbox row a dead process left behind', async () => {
      const { store, waiting } = await kind.make();
      const { out } = await wire();
      // A run that committed and died before its relay: the row is there, nothing was published.
      await store.migrate();
      const tx = await store.begin();
      await tx.send(
        [
          {
            messageId: 'left-behind-1',
            targets: [{ exchange: out, type: 'direct', routingKey: 'placed' }],
            properties: { contentType: 'application/json', mandatory: true, headers: {} },
            body: envelopeBytes('placed', { item: 'orphan' }),
            delayMs: 0,
          },
        ],
        'dead',
      );
      await tx.commit();
      class Sweeps extends MessageProcessor {}
      const { proc } = await f.start(Sweeps, { store });
      const m = await getOne(outQueue, 10_000);
      expect(m ? m.properties.messageId : undefined).to.equal('left-behind-1');
      await until(async () => (await waiting()) === 0, 'the swept row marked sent');
      const d = await proc.rpcDescribe();
      expect(d.outbox).to.deep.include({ waiting: 0, failed: 0 });
    });

    it('refuses deduplicate beside store, saying why', async () => {
      const { store } = await kind.make();
      class P extends MessageProcessor {}
      expect(() => new P({ url: f.url, logger: quiet, handleSignals: false, store, deduplicate: true }))
        .to.throw(StoreError, /inbox already drops/)
        .with.property('reason', 'deduplicate');
    });
  });
}

describe('PostgresStore', function () {
  this.timeout(30_000);
  let pool: pg.Pool;
  const schemas: string[] = [];
  before(async () => {
    pool = await pgPool(2);
  });
  after(async () => {
    for (const s of schemas) await dropSchema(pool, s);
    await pool.end();
  });

  it('refuses outbox settings it cannot use, for both stores, and keeps rows for good with an Infinity retention', async () => {
    for (const [bad, text] of [
      [{ sweepEveryMs: 0 }, /sweepEveryMs must be/],
      [{ sweepEveryMs: Number.NaN }, /sweepEveryMs must be/],
      // Past what a timer holds: Node fires it after 1 ms, and the sweeper would query without pause.
      [{ sweepEveryMs: 2 ** 31 }, /sweepEveryMs must be/],
      [{ sweepAfterMs: -1 }, /sweepAfterMs must be/],
      [{ sweepAfterMs: Number.POSITIVE_INFINITY }, /sweepAfterMs must be/],
      [{ maxAttempts: 0 }, /maxAttempts must be/],
      [{ inboxRetentionMs: Number.NaN }, /inboxRetentionMs must be/],
      [{ sentRetentionMs: -5 }, /sentRetentionMs must be/],
    ] as const) {
      expect(() => new PostgresStore({ pool, ...bad }), JSON.stringify(bad)).to.throw(TypeError, text);
      expect(() => new MemoryStore({ ...bad }), JSON.stringify(bad)).to.throw(TypeError, text);
    }
    const schema = uniqueSchema('postage_spec');
    schemas.push(schema);
    const store = new PostgresStore({ pool, schema, inboxRetentionMs: Number.POSITIVE_INFINITY });
    await store.migrate();
    // What the sweeper asks each minute: PostgreSQL refused an infinite interval ("interval out of range").
    await store.prune({ sentOlderThanMs: 1_000, inboxOlderThanMs: Number.POSITIVE_INFINITY });
  });

  it('creates its tables once when replicas migrate at the same moment', async () => {
    const schema = uniqueSchema('postage_spec');
    schemas.push(schema);
    const stores = [1, 2, 3].map(() => new PostgresStore({ pool, schema, prefix: 'px_' }));
    await Promise.all(stores.map((s) => s.migrate()));
    const { rows } = await pool.query(
      `SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name`,
      [schema],
    );
    expect(rows.map((r) => r.table_name)).to.deep.equal(['px_inbox', 'px_outbox', 'px_schema_version']);
    const v = await pool.query(`SELECT version FROM "${schema}".px_schema_version`);
    expect(v.rows).to.deep.equal([{ version: 1 }]);
  });

  it('makes a new schema once when stores with other prefixes migrate into it at the same moment', async () => {
    // Each prefix has a lock of its own; the schema they share needs one too (CREATE SCHEMA IF NOT EXISTS run at
    // once by two transactions fails one of them on pg_namespace's unique index).
    for (let round = 0; round < 5; round++) {
      const schema = uniqueSchema('postage_spec');
      schemas.push(schema);
      const stores = ['a_', 'b_', 'c_', 'd_'].map((prefix) => new PostgresStore({ pool, schema, prefix }));
      await Promise.all(stores.map((s) => s.migrate()));
      const { rows } = await pool.query(
        `SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = $1`,
        [schema],
      );
      expect(rows[0].n).to.equal(12);
    }
  });

  it('refuses at ready() a pool too small for concurrency runs plus the relay', async () => {
    const url = await brokerUrl();
    const store = new PostgresStore({ pool, schema: uniqueSchema('postage_spec') });
    class P extends MessageProcessor {}
    const p = new P({ url, logger: quiet, handleSignals: false, concurrency: 4, store });
    let err: unknown;
    try {
      await p.ready();
    } catch (e) {
      err = e;
    }
    await p.close();
    expect(err).to.be.instanceOf(StoreError).with.property('reason', 'pool');
    expect((err as Error).message).to.match(/at most 2 connection\(s\), and this processor needs 5/);
  });

  it('counts every processor started on one store against its pool, and frees their share when they close', async () => {
    const url = await brokerUrl();
    const schema = uniqueSchema('postage_spec');
    schemas.push(schema);
    const five = await pgPool(5);
    const store = new PostgresStore({ pool: five, schema });
    class Orders extends MessageProcessor {}
    class Billing extends MessageProcessor {}
    class Audit extends MessageProcessor {}
    const make = (P: typeof MessageProcessor, concurrency: number) =>
      new P({ url, logger: quiet, handleSignals: false, concurrency, store });
    const orders = make(Orders, 2);
    const billing = make(Billing, 1);
    const audit = make(Audit, 1);
    try {
      // 3 + 2 connections: the pool's five, each one alone would pass, and so do both together.
      await orders.ready();
      await billing.ready();
      let err: unknown;
      try {
        await audit.ready();
      } catch (e) {
        err = e;
      }
      expect(err).to.be.instanceOf(StoreError).with.property('reason', 'pool');
      expect((err as Error).message).to.equal(
        "the store's pool opens at most 5 connection(s), and the processors started on it in this process need 7: " +
          'Orders 3 (concurrency 2 + its relay), Billing 2 (concurrency 1 + its relay), ' +
          'Audit 2 (concurrency 1 + its relay). ' +
          "Raise the pool's max to 7, lower their concurrency, or give each its own pool and store",
      );
      // Orders closed gives its three back: a new Audit fits beside Billing.
      await orders.close();
      const again = make(Audit, 1);
      try {
        await again.ready();
      } finally {
        await again.close();
      }
    } finally {
      await Promise.all([orders.close(), billing.close(), audit.close()]);
      await dropSchema(five, schema);
      await five.end();
    }
  });

  it("never ends the application's pool", async () => {
    const url = await brokerUrl();
    const schema = uniqueSchema('postage_spec');
    schemas.push(schema);
    const store = new PostgresStore({ pool, schema });
    class P extends MessageProcessor {}
    const p = new P({ url, logger: quiet, handleSignals: false, store });
    await p.ready();
    await p.close();
    expect((await pool.query('SELECT 1 AS one')).rows).to.deep.equal([{ one: 1 }]);
  });
});

describe('MemoryStore', function () {
  this.timeout(30_000);
  const f = exchangeFixture('memstore');

  it('runs a handler again as a new run when the database reports a serialization failure', async () => {
    let failures = 1;
    const store = new MemoryStore({
      answer: () => {
        if (failures-- > 0) throw Object.assign(new Error('could not serialize access'), { code: '40001' });
        return { rows: [], rowCount: 1 };
      },
    });
    let runs = 0;
    class Orders extends MessageProcessor {
      @MessageHandler('command', 'k')
      async order() {
        runs++;
        await currentDelivery()!.db!.query('INSERT INTO orders (item) VALUES ($1)', ['book']);
      }
    }
    const { events, settled } = await f.start(Orders, { store });
    const p = await f.producer();
    await p.message_k({});
    await settled();
    expect(events[0].outcome).to.equal('acked');
    expect(runs).to.equal(2);
    expect(store.statements.map((s) => s.text)).to.deep.equal(['INSERT INTO orders (item) VALUES ($1)']);
    expect(store.inbox.size).to.equal(1);
  });
});

describe('MemoryStore retention', () => {
  it('removes sent outbox rows and inbox entries past their retention, as PostgresStore does', async () => {
    const store = new MemoryStore();
    const tx = await store.begin();
    expect(await tx.receive('c', 'm-1')).to.equal(true);
    const [sent, unsent] = await tx.send(
      ['a', 'b'].map((id) => ({
        messageId: id,
        targets: [{ exchange: 'x', type: 'direct', routingKey: 'k' }],
        properties: {},
        body: Buffer.from('{}'),
        delayMs: 0,
      })),
      'spec',
    );
    await tx.commit();
    await store.markSent([sent]);
    await store.prune({ sentOlderThanMs: 60_000, inboxOlderThanMs: 60_000 });
    expect([store.outbox.length, store.inbox.size], 'young: kept').to.deep.equal([2, 1]);
    const later = Date.now() + 5;
    while (Date.now() < later);
    await store.prune({ sentOlderThanMs: 1, inboxOlderThanMs: 1 });
    expect(
      store.outbox.map((r) => r.key),
      'the unsent row stays',
    ).to.deep.equal([unsent]);
    expect(store.inbox.size).to.equal(0);
  });
});

describe('MemoryStore in the ProcessorHarness', () => {
  it("records a run's outbox rows, and drops a message whose id a run committed already", async () => {
    const store = new MemoryStore();
    class Out extends GenericProducer {
      static override eks = [[{ name: 'harness-out', type: 'direct' }, 'placed'] as const];
      declare message_placed: MessageSender<{ item: string }>;
    }
    const out = testProducer(Out);
    let runs = 0;
    class Orders extends MessageProcessor {
      @MessageHandler('command', 'order')
      async order(c: { parameters: { item: string } }) {
        runs++;
        await currentDelivery()!.db!.query('INSERT INTO orders (item) VALUES ($1)', [c.parameters.item]);
        await out.message_placed({ item: c.parameters.item });
      }
    }
    const h = await ProcessorHarness.start(Orders, { handleSignals: false, store });
    try {
      const first = await h.deliver(new MessageCommand('order', { item: 'book' }), { messageId: 'o-1' });
      const again = await h.deliver(new MessageCommand('order', { item: 'book' }), { messageId: 'o-1' });
      expect([first.outcome, again.outcome]).to.deep.equal(['acked', 'acked']);
      expect(runs).to.equal(1);
      expect(store.outbox.map((r) => JSON.parse(r.body.toString()).content.parameters)).to.deep.equal([
        { item: 'book' },
      ]);
      await until(() => out.sent.length === 1 && store.waiting.length === 0, 'the relay published the row');
    } finally {
      await h.close();
    }
  });
});
