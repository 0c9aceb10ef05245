/**
 * A processor's `store` beside the ways a processor spreads its work: `concurrency` with `orderBy` (one transaction
 * per run, each key's rows committed in its order, different keys at once) and `partitions` over three replicas, one
 * losing its connection and one closing while they work. Against the real PostgreSQL and broker.
 */
import { expect } from 'chai';
import type pg from 'pg';
import {
  currentDelivery,
  type ExchangeObject,
  GenericProducer,
  MessageHandler,
  MessageProcessor,
  type MessageSender,
  type StoreClient,
} from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import { PostgresStore } from '../../lib/stores/postgres/index.js';
import { closeConnectionsNamed } from '../support/broker.js';
import { counter, deferred, exchangeFixture, Harness } from '../support/components.js';
import { sendKeyed } from '../support/ordering.js';
import { deleteTopology, unique } from '../support/topology.js';
import { within } from '../support/wait.js';
import { dropSchema, pgPool, uniqueSchema, until } from './support.js';

const quiet = makeLogger('silent');

interface Keyed {
  parameters: { key: string; seq: number };
}

describe('a store beside concurrency, orderBy and partitions', function () {
  this.timeout(120_000);
  const f = exchangeFixture('pgorder');
  let pool: pg.Pool;
  let schema: string;
  let events: string;

  before(async () => {
    pool = await pgPool(10);
  });
  after(async () => {
    await pool.end();
  });
  beforeEach(async () => {
    schema = uniqueSchema('postage_order');
    events = `"${schema}".events`;
    await pool.query(`CREATE SCHEMA "${schema}"`);
    await pool.query(
      `CREATE TABLE ${events} (id bigserial PRIMARY KEY, key text NOT NULL, seq int NOT NULL, txid bigint NOT NULL)`,
    );
  });
  afterEach(async () => {
    await dropSchema(pool, schema);
  });

  /**
   * Where the handlers' own sends go: a producer, and a processor (no store) recording what arrives, `key/seq` for
   * each message in arrival order.
   */
  async function downstream(h: Harness): Promise<{ send: MessageSender; got: string[] }> {
    const ex = { name: unique('pgorder-down'), type: 'direct' as const, durable: false };
    const queue = unique('pgorder-down-q');
    h.onClose(() => deleteTopology([queue], [ex.name]));
    const got: string[] = [];
    class Sink extends MessageProcessor {
      @MessageHandler('command', 'done')
      done(c: Keyed) {
        got.push(`${c.parameters.key}/${c.parameters.seq}`);
      }
    }
    await h.start(new Sink({ url: f.url, logger: quiet, handleSignals: false, eqk: [[ex, [[queue, 'done']]]] }));
    class Out extends GenericProducer {
      static override eks = [[ex, 'done'] as const];
      declare message_done: MessageSender;
    }
    const out = await Out.create({ url: f.url, logger: quiet });
    h.onClose(() => out.close());
    return { send: (p, o) => out.message_done(p, o), got };
  }

  /**
   * A run's work: its key's previous row must be committed already (else a problem is noted), then its row, then
   * its send (held for the outbox of the same transaction).
   */
  async function writeInOrder(db: StoreClient, c: Keyed, send: MessageSender, problems: string[]): Promise<void> {
    const { key, seq } = c.parameters;
    const { rows } = await db.query<{ last: number }>(
      `SELECT coalesce(max(seq), -1)::int AS last FROM ${events} WHERE key = $1`,
      [key],
    );
    if (rows[0].last !== seq - 1) problems.push(`${key}/${seq} ran after ${key}/${rows[0].last} had committed`);
    await db.query(`INSERT INTO ${events} (key, seq, txid) VALUES ($1, $2, txid_current())`, [key, seq]);
    await send({ key, seq });
  }

  /** Each key's committed rows, in the order they were written. */
  async function rowsByKey(): Promise<Map<string, number[]>> {
    const { rows } = await pool.query<{ key: string; seq: number }>(`SELECT key, seq FROM ${events} ORDER BY id`);
    const byKey = new Map<string, number[]>();
    for (const r of rows) byKey.set(r.key, [...(byKey.get(r.key) ?? []), r.seq]);
    return byKey;
  }

  const inSequence = (n: number) => Array.from({ length: n }, (_, i) => i);

  it("runs each delivery in a transaction of its own with concurrency 4 and orderBy: each key's rows commit in its order, different keys at once", async () => {
    const KEYS = 4;
    const PER_KEY = 40;
    const N = KEYS * PER_KEY;
    const down = await downstream(f.h);
    const store = new PostgresStore({ pool, schema });
    const problems: string[] = [];
    const firstTx = new Set<string>();
    const allFirstIn = deferred();
    const tried = new Set<string>();
    let failedRuns = 0;
    let inFlight = 0;
    let most = 0;
    const settled = counter(N);
    class Ordered extends MessageProcessor {
      @MessageHandler('command', 'k')
      async job(c: Keyed) {
        const db = currentDelivery()!.db!;
        most = Math.max(most, ++inFlight);
        try {
          const { key, seq } = c.parameters;
          if (seq === 0) {
            // Every key's first run holds its transaction open until all of them do: keys run at once.
            const { rows } = await db.query<{ id: string }>('SELECT txid_current()::text AS id');
            firstTx.add(rows[0].id);
            if (firstTx.size === KEYS) allFirstIn.resolve();
            await within(allFirstIn.promise, { timeout: 10_000, message: 'the first run of every key in flight' });
          }
          await writeInOrder(db, c, down.send, problems);
          // Some runs fail once after writing and sending: the second run is a new transaction, the first vanishes.
          if (seq % 7 === 3 && !tried.has(`${key}/${seq}`)) {
            tried.add(`${key}/${seq}`);
            failedRuns++;
            throw new Error('fails once, after its write and its send');
          }
        } finally {
          inFlight--;
        }
      }
    }
    const proc = new Ordered({
      url: f.url,
      logger: quiet,
      handleSignals: false,
      eqk: [[f.ex, [[f.queue, 'k']]]],
      concurrency: 4,
      orderBy: (c) => (c as Keyed).parameters.key,
      retry: { attempts: 2, backoffMs: 1 },
      store,
    });
    proc.observe((e) => {
      if (e.outcome === 'acked') settled.hit();
    });
    await f.h.start(proc);
    const p = await f.producer();
    await sendKeyed((params, o) => p.message_k(params, o), N, KEYS, 40);
    await within(settled.done, { timeout: 60_000, message: () => `${N} deliveries acked (${settled.count()})` });
    await until(async () => (await store.backlog()).waiting === 0, 'the outbox drained');
    await until(() => down.got.length >= N, `${N} messages downstream`);

    expect(problems, 'a run began before the previous run of its key had committed').to.deep.equal([]);
    const byKey = await rowsByKey();
    expect([...byKey.keys()].sort()).to.deep.equal(['k0', 'k1', 'k2', 'k3']);
    for (const [key, seqs] of byKey)
      expect(seqs, `${key}'s rows in the order written`).to.deep.equal(inSequence(PER_KEY));
    const { rows } = await pool.query<{ runs: number }>(`SELECT count(DISTINCT txid)::int AS runs FROM ${events}`);
    expect(rows[0].runs, 'one transaction per committed run').to.equal(N);
    expect(firstTx.size).to.equal(KEYS);
    expect(most, 'runs of different keys at once').to.equal(4);
    expect(failedRuns).to.equal(KEYS * Math.floor((PER_KEY + 3) / 7));
    // The failed runs' sends rolled back with their rows: each message once, none twice.
    expect(new Set(down.got).size).to.equal(N);
    expect(down.got).to.have.length(N);
  });

  it('writes each row once and in its key order with partitions over three replicas, one dropped and one closed mid-run', async () => {
    const PARTITIONS = 4;
    const KEYS = 20;
    const N = 600;
    const h = new Harness();
    const exchange: ExchangeObject = { name: unique('pgorder-parts-ex'), type: 'direct' };
    const queue = unique('pgorder-parts-q');
    const names = Array.from({ length: PARTITIONS }, (_, i) => `${queue}.p${i}`);
    const pools: pg.Pool[] = [];
    try {
      const down = await downstream(h);
      const problems: string[] = [];
      const firsts = new Set<string>();
      let runs = 0;
      // Once a third is handled, the next run (on whichever replica has work then) waits, its row written and its send
      // held, until its replica's connection is gone: it commits then, and its redelivery finds the message in the
      // inbox.
      let holdOn = false;
      let heldId: string | undefined;
      let heldOn = 0;
      const holding = deferred();
      const release = deferred();
      const runsOf = new Map<string, number>();
      const third = counter(N / 3);
      const twoThirds = counter((2 * N) / 3);
      class Worker extends MessageProcessor {
        @MessageHandler('command', 'work')
        async work(c: Keyed) {
          runs++;
          const id = `${c.parameters.key}/${c.parameters.seq}`;
          runsOf.set(id, (runsOf.get(id) ?? 0) + 1);
          await writeInOrder(currentDelivery()!.db!, c, down.send, problems);
          if (holdOn && heldId === undefined) {
            heldId = id;
            heldOn = Number(String(this.fingerprint.pid).slice(String(process.pid).length));
            holding.resolve();
            await release.promise;
          }
          if (!firsts.has(id)) {
            firsts.add(id);
            third.hit();
            twoThirds.hit();
          }
        }
      }
      // Each replica as its own process would have it: its own pool and store, on the same tables.
      const replica = async (i: number) => {
        const own = await pgPool(3);
        pools.push(own);
        return new Worker({
          url: f.url,
          logger: quiet,
          handleSignals: false,
          fingerprint: { name: 'worker', pid: `${process.pid}${i}` },
          connectionName: `${queue}-replica-${i}`,
          concurrency: 2,
          partitions: PARTITIONS,
          eqk: [[exchange, [[queue, 'work']]]],
          store: new PostgresStore({ pool: own, schema, sweepAfterMs: 500, sweepEveryMs: 100 }),
        });
      };
      const replicas = [await replica(1), await replica(2), await replica(3)];
      await h.start(...replicas);
      class Sender extends GenericProducer {
        static override eks = [[exchange, 'work'] as const];
        declare message_work: MessageSender;
      }
      const sender = await Sender.create({ url: f.url, logger: quiet });
      h.onClose(() => sender.close());
      const sending = sendKeyed((params, o) => sender.message_work(params, o), N, KEYS, 50);
      await within(third.done, { timeout: 60_000, message: 'a third of the messages handled' });
      holdOn = true;
      await within(holding.promise, { timeout: 30_000, message: 'a run held in its transaction' });
      const lost = deferred();
      replicas[heldOn - 1].on('disconnected', () => lost.resolve());
      expect(await closeConnectionsNamed(`${queue}-replica-${heldOn}`)).to.equal(1);
      await within(lost.promise, { timeout: 10_000, message: `replica ${heldOn} lost its connection` });
      release.resolve();
      await within(twoThirds.done, { timeout: 60_000, message: 'two thirds of the messages handled' });
      // Another replica closes cleanly: the one that lost its connection and the closed one leave one running.
      const closing = heldOn === 3 ? 0 : 2;
      await replicas[closing].close();
      await sending;
      await until(
        async () => (await pool.query(`SELECT count(*)::int AS n FROM ${events}`)).rows[0].n >= N,
        `${N} rows written`,
      );
      await until(
        async () =>
          (await pool.query(`SELECT count(*)::int AS n FROM "${schema}".postage_outbox WHERE sent_at IS NULL`)).rows[0]
            .n === 0,
        'the outbox drained',
      );
      await until(() => new Set(down.got).size >= N, `${N} distinct messages downstream`);

      expect(problems, 'a run began before the previous run of its key had committed').to.deep.equal([]);
      const byKey = await rowsByKey();
      expect(byKey.size).to.equal(KEYS);
      for (const [key, seqs] of byKey)
        expect(seqs, `${key}'s rows, each once, in order`).to.deep.equal(inSequence(N / KEYS));
      // Every committed run wrote its row and its outbox row together, and every outbox row went out.
      const outbox = await pool.query<{ n: number; sent: number }>(
        `SELECT count(*)::int AS n, count(sent_at)::int AS sent FROM "${schema}".postage_outbox`,
      );
      expect(outbox.rows[0]).to.deep.equal({ n: N, sent: N });
      const described = await Promise.all(replicas.filter((_, i) => i !== closing).map((r) => r.rpcDescribe()));
      for (const d of described) expect(d.outbox).to.include({ failed: 0 });
      // The held run committed after its delivery was lost: its redelivery was dropped by the inbox, not run.
      expect(runsOf.get(heldId!), `${heldId} run once`).to.equal(1);
      const repeats = down.got.length - N;
      console.log(
        `      ${N} messages, ${runs} handler runs (${runs - N} beyond one each), ${heldId} held across the drop, ` +
          `${repeats} published twice downstream`,
      );
    } finally {
      await h.close();
      for (const p of pools) await p.end();
      await deleteTopology(names, [`${queue}.partitions`, `${queue}.replicas`, exchange.name]);
    }
  });
});
