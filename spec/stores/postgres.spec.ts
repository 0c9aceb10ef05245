/**
 * `PostgresStore` against the real PostgreSQL, for what the in-memory store
 * can only play: a real serialization failure, sweepers of two replicas on one
 * table, retention, the run's own transaction joined from inside a handler
 * (and from a `Handler` class), and an RPC answered after its commit.
 */
import { expect } from 'chai';
import type pg from 'pg';
import {
  currentDelivery,
  type DeliveryEvent,
  GenericProducer,
  Handler,
  MessageHandler,
  MessageProcessor,
  type MessageSender,
  RpcHandler,
  type RpcSender,
} from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import { PostgresStore } from '../../lib/stores/postgres/index.js';
import type { StoredOutboxMessage, StoreTransaction } from '../../lib/stores/store.js';
import { brokerUrl } from '../support/broker.js';
import { deferred, exchangeFixture } from '../support/components.js';
import { deleteTopology, getOne, queueState, unique } from '../support/topology.js';
import { until as awaitValue, within } from '../support/wait.js';
import { dropSchema, pgPool, uniqueSchema, until } from './support.js';

const quiet = makeLogger('silent');

describe('PostgresStore on the real PostgreSQL', function () {
  this.timeout(30_000);
  const f = exchangeFixture('pgstore', brokerUrl, unique, deleteTopology);
  let pool: pg.Pool;
  let schema: string;
  const schemas: string[] = [];

  before(async () => {
    pool = await pgPool(8);
  });
  after(async () => {
    for (const s of schemas) await dropSchema(pool, s);
    await pool.end();
  });
  beforeEach(async () => {
    schema = uniqueSchema('postage_pg');
    schemas.push(schema);
    await pool.query(`CREATE SCHEMA "${schema}"`);
    await pool.query(`CREATE TABLE "${schema}".counters (id int PRIMARY KEY, n int NOT NULL)`);
    await pool.query(`INSERT INTO "${schema}".counters VALUES (1, 0)`);
  });

  /** Declares `queue` bound to `exchange` by `key`, with nobody consuming it (a spec reads it with getOne). */
  async function declareOnly(exchange: { name: string; type: 'direct'; durable: boolean }, queue: string, key: string) {
    class Idle extends MessageProcessor {}
    const idle = new Idle({ url: f.url, logger: quiet, handleSignals: false, eqk: [[exchange, [[queue, key]]]] });
    await idle.consumer.ready();
    f.h.onClose(() => idle.close());
  }

  /** A second exchange and its queue bound by `key`, and a producer with `message_<key>` to it; gone after the test. */
  async function output<K extends string>(key: K) {
    const out = { name: unique('pgstore-out'), type: 'direct' as const, durable: false };
    const outQueue = unique('pgstore-out-q');
    f.h.onClose(() => deleteTopology([outQueue], [out.name]));
    class Out extends GenericProducer {
      static override eks = [[out, key] as const];
    }
    const o = (await Out.create({ url: f.url, logger: quiet })) as unknown as Out &
      Record<`message_${K}`, MessageSender>;
    f.h.onClose(() => o.close());
    await declareOnly(out, outQueue, key);
    return { o, outQueue };
  }

  /** Commits `n` outbox rows (ids left-0…) to an exchange nobody has, as a crashed process would leave them. */
  async function leaveRows(store: PostgresStore, n: number): Promise<void> {
    const tx = await store.begin();
    await tx.send(
      Array.from({ length: n }, (_, i) => ({
        messageId: `left-${i}`,
        targets: [{ exchange: 'nowhere', type: 'direct' as const, routingKey: 'k' }],
        properties: { headers: {} },
        body: Buffer.from('{}'),
        delayMs: 0,
      })),
      'dead',
    );
    await tx.commit();
  }

  function settled(p: MessageProcessor): Promise<DeliveryEvent> {
    return within(new Promise<DeliveryEvent>((resolve) => p.observe(resolve)), {
      timeout: 15_000,
      message: 'the delivery settled',
    });
  }

  it('runs the handler again as a new run when PostgreSQL reports a serialization failure (40001)', async () => {
    const store = new PostgresStore({ pool, schema, isolation: 'repeatable read' });
    const counters = `"${schema}".counters`;
    const codes: unknown[] = [];
    let runs = 0;
    class Counter extends MessageProcessor {
      @MessageHandler('command', 'k')
      async bump() {
        runs++;
        const db = currentDelivery()!.db!;
        await db.query(`SELECT n FROM ${counters} WHERE id = 1`);
        // The first run's snapshot is taken; another transaction changes the row and commits meanwhile.
        if (runs === 1) await pool.query(`UPDATE ${counters} SET n = n + 100 WHERE id = 1`);
        try {
          await db.query(`UPDATE ${counters} SET n = n + 1 WHERE id = 1`);
        } catch (err) {
          codes.push((err as { code?: unknown }).code);
          throw err;
        }
      }
    }
    const proc = new Counter({
      url: f.url,
      logger: quiet,
      handleSignals: false,
      eqk: [[f.ex, [[f.queue, 'k']]]],
      store,
    });
    await f.h.start(proc);
    const done = settled(proc);
    const p = await f.producer();
    await p.message_k({});
    expect((await done).outcome).to.equal('acked');
    expect(codes).to.deep.equal(['40001']);
    expect(runs).to.equal(2);
    const { rows } = await pool.query(`SELECT n FROM ${counters} WHERE id = 1`);
    expect(rows[0].n, 'the outside update and the second run, not the first').to.equal(101);
  });

  it("joins the run's transaction from store.transaction() inside a handler, and from a Handler class's this.delivery.db", async () => {
    const store = new PostgresStore({ pool, schema });
    const counters = `"${schema}".counters`;
    const seen: Array<{ run: string; joined: string; handlerClass: string }> = [];
    class Joins extends MessageProcessor {
      @MessageHandler('command', 'k')
      static Bump = class extends Handler<Joins, { parameters: { fail: boolean } }> {
        async call() {
          const txid = 'SELECT txid_current()::text AS id';
          const run = (await currentDelivery()!.db!.query<{ id: string }>(txid)).rows[0].id;
          const joined = await store.transaction(async (db) => {
            await db.query(`UPDATE ${counters} SET n = n + 1 WHERE id = 1`);
            return (await db.query<{ id: string }>(txid)).rows[0].id;
          });
          const handlerClass = (await this.delivery!.db!.query<{ id: string }>(txid)).rows[0].id;
          seen.push({ run, joined, handlerClass });
          if (this.data.parameters.fail) throw new Error('after the joined write');
        }
      };
    }
    const proc = new Joins({ url: f.url, logger: quiet, handleSignals: false, eqk: [[f.ex, [[f.queue, 'k']]]], store });
    await f.h.start(proc);
    const p = await f.producer();
    let done = settled(proc);
    await p.message_k({ fail: true });
    expect((await done).outcome).to.equal('rejected');
    done = settled(proc);
    await p.message_k({ fail: false });
    expect((await done).outcome).to.equal('acked');
    for (const s of seen) expect([s.joined, s.handlerClass]).to.deep.equal([s.run, s.run]);
    expect(seen).to.have.length(2);
    // The failed run's joined write rolled back with it; the second one's committed.
    const { rows } = await pool.query(`SELECT n FROM ${counters} WHERE id = 1`);
    expect(rows[0].n).to.equal(1);
  });

  it("answers an RPC after its run's commit: the caller reads the row the handler wrote", async () => {
    // A commit that takes 300 ms: a reply sent before it would reach the caller while the row is not visible yet.
    class SlowCommit extends PostgresStore {
      override async begin(): Promise<StoreTransaction> {
        const tx = await super.begin();
        return {
          ...tx,
          commit: async () => {
            await new Promise((r) => setTimeout(r, 300));
            await tx.commit();
          },
        };
      }
    }
    const store = new SlowCommit({ pool, schema });
    const counters = `"${schema}".counters`;
    class Bumps extends MessageProcessor {
      @RpcHandler('command', 'bump')
      async bump() {
        const { rows } = await currentDelivery()!.db!.query<{ n: number }>(
          `UPDATE ${counters} SET n = n + 1 WHERE id = 1 RETURNING n`,
        );
        return rows[0].n;
      }
    }
    await f.h.start(
      new Bumps({ url: f.url, logger: quiet, handleSignals: false, eqk: [[f.ex, [[f.queue, 'k']]]], store }),
    );
    const exchange = f.ex;
    class Caller extends GenericProducer {
      static override eks = [[exchange, 'k'] as const];
      declare rpc_bump: RpcSender;
    }
    const caller = await Caller.create({ url: f.url, logger: quiet });
    f.h.onClose(() => caller.close());
    const r = await caller.rpc_bump({}, { _timeout: 10 });
    expect(r.ok && r.value).to.equal(1);
    // Read at once on another connection: committed before the reply went out.
    const { rows } = await pool.query(`SELECT n FROM ${counters} WHERE id = 1`);
    expect(rows[0].n).to.equal(1);
  });

  it("runs middleware inside the run's transaction, each of concurrent runs (concurrency 4) in its own", async () => {
    const store = new PostgresStore({ pool, schema });
    const log = `"${schema}".log`;
    await pool.query(`CREATE TABLE ${log} (n int NOT NULL, txid text NOT NULL)`);
    const txids = new Set<string>();
    const gate = deferred();
    let inFlight = 0;
    class Audited extends MessageProcessor {
      @MessageHandler('command', 'k')
      async job(c: { parameters: { n: number } }) {
        // All four runs hold their transactions at once before any ends.
        if (++inFlight === 4) gate.resolve();
        await gate.promise;
        if (c.parameters.n % 2 === 1) throw new Error('odd runs fail after the middleware wrote');
      }
    }
    const proc = new Audited({
      url: f.url,
      logger: quiet,
      handleSignals: false,
      concurrency: 4,
      eqk: [[f.ex, [[f.queue, 'k']]]],
      store,
    });
    proc.use(async (ctx, next) => {
      const db = currentDelivery()!.db!;
      const { rows } = await db.query<{ id: string }>('SELECT txid_current()::text AS id');
      txids.add(rows[0].id);
      await db.query(`INSERT INTO ${log} (n, txid) VALUES ($1, $2)`, [
        (ctx.message.content as { parameters: { n: number } }).parameters.n,
        rows[0].id,
      ]);
      await next();
    });
    await f.h.start(proc);
    const events: DeliveryEvent[] = [];
    const all = deferred();
    proc.observe((e) => {
      events.push(e);
      if (events.length === 4) all.resolve();
    });
    const p = await f.producer();
    for (const n of [0, 1, 2, 3]) await p.message_k({ n });
    await within(all.promise, { timeout: 15_000, message: 'four deliveries settled' });
    expect(txids.size, 'one transaction per run').to.equal(4);
    const { rows } = await pool.query(`SELECT n FROM ${log} ORDER BY n`);
    expect(
      rows.map((r) => r.n),
      "the failed runs' middleware writes rolled back",
    ).to.deep.equal([0, 2]);
  });

  it('sends at once what a handler sends with _outbox: false, and writes no outbox row of it', async () => {
    const store = new PostgresStore({ pool, schema });
    const { o, outQueue } = await output('now');
    class Notifies extends MessageProcessor {
      @MessageHandler('command', 'k')
      async job() {
        await o.message_now({}, { _outbox: false });
        throw new Error('the run fails after the send');
      }
    }
    const proc = new Notifies({
      url: f.url,
      logger: quiet,
      handleSignals: false,
      eqk: [[f.ex, [[f.queue, 'k']]]],
      store,
    });
    await f.h.start(proc);
    const done = settled(proc);
    const p = await f.producer();
    await p.message_k({});
    expect((await done).outcome).to.equal('rejected');
    expect(await getOne(outQueue), 'published although the run rolled back').to.not.equal(false);
    expect((await pool.query(`SELECT count(*)::int AS n FROM "${schema}".postage_outbox`)).rows[0].n).to.equal(0);
  });

  it('calls an RPC from a run at once, not through the outbox, and writes no outbox row of it', async () => {
    const store = new PostgresStore({ pool, schema });
    const counters = `"${schema}".counters`;
    const ask = { name: unique('pgstore-ask'), type: 'direct' as const, durable: false };
    const askQueue = unique('pgstore-ask-q');
    f.h.onClose(() => deleteTopology([askQueue], [ask.name]));
    class Answers extends MessageProcessor {
      @RpcHandler('command', 'price')
      price() {
        return 42;
      }
    }
    class Asker extends GenericProducer {
      static override eks = [[ask, 'price'] as const];
      declare rpc_price: RpcSender;
    }
    const asker = await Asker.create({ url: f.url, logger: quiet });
    f.h.onClose(() => asker.close());
    class Prices extends MessageProcessor {
      @MessageHandler('command', 'k')
      async job() {
        // Held until the commit, the call would wait for its answer for ever: it goes out now.
        const r = await asker.rpc_price({}, { _timeout: 5 });
        await currentDelivery()!.db!.query(`UPDATE ${counters} SET n = $1 WHERE id = 1`, [r.ok ? r.value : -1]);
      }
    }
    const proc = new Prices({
      url: f.url,
      logger: quiet,
      handleSignals: false,
      eqk: [[f.ex, [[f.queue, 'k']]]],
      store,
    });
    await f.h.start(
      new Answers({ url: f.url, logger: quiet, handleSignals: false, eqk: [[ask, [[askQueue, 'price']]]] }),
      proc,
    );
    const done = settled(proc);
    const p = await f.producer();
    await p.message_k({});
    expect((await done).outcome).to.equal('acked');
    expect((await pool.query(`SELECT n FROM ${counters} WHERE id = 1`)).rows[0].n).to.equal(42);
    expect((await pool.query(`SELECT count(*)::int AS n FROM "${schema}".postage_outbox`)).rows[0].n).to.equal(0);
  });

  it('lets close() wait for the relay to publish what it holds, and mark it sent', async () => {
    const gate = deferred();
    const holding = deferred();
    const store = new PostgresStore({
      pool,
      schema,
      onRelay: async (step) => {
        if (step !== 'committed') return;
        holding.resolve();
        await gate.promise;
      },
    });
    const { o, outQueue } = await output('later');
    class Sends extends MessageProcessor {
      @MessageHandler('command', 'k')
      async job() {
        await o.message_later({});
      }
    }
    const proc = new Sends({ url: f.url, logger: quiet, handleSignals: false, eqk: [[f.ex, [[f.queue, 'k']]]], store });
    await f.h.start(proc);
    const p = await f.producer();
    await p.message_k({});
    await within(holding.promise, { message: 'the relay holds the committed row' });
    let closed = false;
    const closing = proc.close().then(() => {
      closed = true;
    });
    // close() is under way (it stopped consuming) and waits on the relay: it has not resolved.
    await awaitValue(async () => (await queueState(f.queue)).consumers === 0, {
      message: 'close() stopped consuming',
    });
    expect(closed, 'closed while the relay still held its row').to.equal(false);
    gate.resolve();
    await within(closing, { message: 'close() once the relay finished' });
    expect(await getOne(outQueue)).to.not.equal(false);
    expect(await store.backlog()).to.deep.include({ waiting: 0 });
  });

  it('lets the sweepers of two replicas share rows left behind, and publish none twice', async () => {
    const a = new PostgresStore({ pool, schema });
    const b = new PostgresStore({ pool, schema });
    await leaveRows(a, 40);
    const published: Array<{ by: string; id: string }> = [];
    // A publish that takes a while, so the two sweeps overlap: each holds its rows' locks meanwhile.
    const publish = (by: string) => async (m: StoredOutboxMessage) => {
      published.push({ by, id: m.messageId });
      await new Promise((r) => setTimeout(r, 10));
      return { sent: true } as const;
    };
    const sweepAll = async (store: PostgresStore, by: string) => {
      while ((await store.sweep({ olderThanMs: 0, limit: 5 }, publish(by))) > 0);
    };
    await Promise.all([sweepAll(a, 'a'), sweepAll(b, 'b')]);
    const ids = published.map((p) => p.id);
    expect(new Set(ids).size, 'no row published twice').to.equal(ids.length);
    expect(ids).to.have.length(40);
    expect(new Set(published.map((p) => p.by))).to.deep.equal(new Set(['a', 'b']));
    expect(await a.backlog()).to.deep.include({ waiting: 0, failed: 0 });
  });

  it("publishes a sweep's rows at once in row order, waits for their confirms together, and records each verdict", async () => {
    const store = new PostgresStore({ pool, schema });
    await leaveRows(store, 10);
    const calls: string[] = [];
    const allCalled = deferred();
    const confirms = deferred();
    // The first publish goes alone (it may open the channel); the other nine are all begun before any is confirmed.
    const publish = async (m: StoredOutboxMessage) => {
      calls.push(m.messageId);
      if (calls.length === 1) return { sent: true } as const;
      if (calls.length === 10) allCalled.resolve();
      await confirms.promise;
      return m.messageId === 'left-5'
        ? ({ sent: false, error: 'refused', retryAt: new Date(Date.now() + 60_000) } as const)
        : ({ sent: true } as const);
    };
    const sweeping = store.sweep({ olderThanMs: 0, limit: 100 }, publish);
    try {
      await within(allCalled.promise, { message: 'the rows after the first published before any confirm' });
    } finally {
      confirms.resolve();
    }
    expect(await sweeping).to.equal(9);
    expect(calls).to.deep.equal(Array.from({ length: 10 }, (_, i) => `left-${i}`));
    const { rows } = await pool.query(
      `SELECT message_id FROM "${schema}".postage_outbox WHERE sent_at IS NULL AND last_error = 'refused'`,
    );
    expect(rows.map((r) => r.message_id)).to.deep.equal(['left-5']);
    expect(await store.backlog()).to.deep.include({ waiting: 1, failed: 0 });
  });

  it('removes sent outbox rows and inbox rows past their retention, and keeps the rest', async () => {
    const store = new PostgresStore({
      pool,
      schema,
      sentRetentionMs: 60_000,
      inboxRetentionMs: 60_000,
      sweepEveryMs: 100,
    });
    const tx = await store.begin();
    await tx.receive('c', 'old-in');
    await tx.receive('c', 'new-in');
    const message = (messageId: string) => ({
      messageId,
      targets: [{ exchange: 'nowhere', type: 'direct', routingKey: 'k' }],
      properties: { headers: {} },
      body: Buffer.from('{}'),
      delayMs: 0,
    });
    const keys = await tx.send([message('old-sent'), message('new-sent'), message('old-unsent')], 'spec');
    await tx.commit();
    await store.markSent(keys.slice(0, 2));
    const outbox = `"${schema}".postage_outbox`;
    const inbox = `"${schema}".postage_inbox`;
    // Two hours old: past both retentions (the unsent row's age never removes it).
    await pool.query(`UPDATE ${outbox} SET sent_at = now() - interval '2 hours' WHERE message_id = 'old-sent'`);
    await pool.query(
      `UPDATE ${outbox} SET created_at = now() - interval '2 hours', next_attempt_at = now() + interval '1 hour'
       WHERE message_id = 'old-unsent'`,
    );
    await pool.query(`UPDATE ${inbox} SET received_at = now() - interval '2 hours' WHERE message_id = 'old-in'`);
    // A processor's sweeper prunes on its first pass.
    class Idle extends MessageProcessor {}
    await f.h.start(new Idle({ url: f.url, logger: quiet, handleSignals: false, store }));
    const left = async () => ({
      outbox: (await pool.query(`SELECT message_id FROM ${outbox} ORDER BY message_id`)).rows.map((r) => r.message_id),
      inbox: (await pool.query(`SELECT message_id FROM ${inbox} ORDER BY message_id`)).rows.map((r) => r.message_id),
    });
    const kept = { outbox: ['new-sent', 'old-unsent'], inbox: ['new-in'] };
    await until(
      async () => JSON.stringify(await left()) === JSON.stringify(kept),
      'the sweeper pruned the old sent row and the old inbox row',
    );
    // Pruned, and it stays so: nothing else went with them.
    expect(await left()).to.deep.equal(kept);
  });
});
