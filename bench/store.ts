/**
 * The price of the PostgreSQL store: a relay whose handler writes one row and
 * sends one message per delivery, to a sink, the row written by the user's own
 * code both ways. `memory`: the in-memory outbox (the default), the row
 * through the application's pool in a statement of its own; `postgres`: the
 * processor's `store` (a `PostgresStore`), the row through the run's
 * transaction, with its inbox row and its outbox row, relayed after the commit.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import {
  currentDelivery,
  GenericProducer,
  MessageHandler,
  MessageProcessor,
  MicroScheduler,
  type ExchangeObject,
} from '../dist/index.js';
import { PostgresStore } from '../dist/stores/postgres/index.js';
import { dropQueue, envelope, PREFETCH, sendAll, uid, WINDOW } from './cases.js';

const PG_URL = process.env.POSTAGE_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

export interface StoreRun {
  /** Messages through the relay per second (written, sent, and received by the sink). */
  perSecond: number;
  /** This process's CPU (user and system; relay, sink and producer together) per message, in microseconds. */
  cpuUsPerMessage: number;
}

export async function storeRelay(url: string, n: number, mode: 'memory' | 'postgres'): Promise<StoreRun> {
  const pool = new pg.Pool({ connectionString: PG_URL, max: 4 });
  try {
    await pool.query('SELECT 1');
  } catch (err) {
    await pool.end();
    throw new Error(`the store bench needs PostgreSQL at ${PG_URL} (${(err as Error).message}): see DEVELOPERS.md`);
  }
  const schema = `postage_bench_${randomBytes(4).toString('hex')}`;
  await pool.query(`CREATE SCHEMA ${schema}`);
  await pool.query(`CREATE TABLE ${schema}.orders (id serial PRIMARY KEY, item text NOT NULL)`);
  const insert = `INSERT INTO ${schema}.orders (item) VALUES ($1)`;
  const ex: ExchangeObject = { name: '', type: 'direct' };
  const inQ = uid();
  const outQ = uid();
  let got = 0;
  let finish!: () => void;
  const done = new Promise<void>((r) => (finish = r));
  class Next extends GenericProducer {
    static override eks = [[ex, outQ] as const];
  }
  const next = await Next.create({ url });
  const body = envelope(100);
  const store = mode === 'postgres' ? new PostgresStore({ pool, schema }) : undefined;
  class Relay extends MessageProcessor {
    @MessageHandler('command', 'payload')
    async payload() {
      // The user's own write: through the run's transaction with a store, through the pool without.
      const db = currentDelivery()?.db ?? pool;
      await db.query(insert, ['book']);
      await next.forward(body);
    }
  }
  class Sink extends MessageProcessor {
    @MessageHandler('command', 'payload')
    payload() {
      if (++got === n) finish();
    }
  }
  const relay = new Relay({ url, prefetch: PREFETCH, eqk: [[ex, [[inQ, inQ]]]], ...(store ? { store } : {}) });
  const sink = new Sink({ url, prefetch: PREFETCH, eqk: [[ex, [[outQ, outQ]]]] });
  await relay.ready();
  await sink.ready();
  const s = new MicroScheduler();
  s.addMicrothread(relay);
  s.addMicrothread(sink);
  const running = s.run();
  class Source extends GenericProducer {
    static override eks = [[ex, inQ] as const];
  }
  const p = await Source.create({ url });
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await sendAll(p, body, n, WINDOW);
  await done;
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  s.stop();
  await running;
  await relay.close();
  await sink.close();
  await dropQueue(url, inQ, outQ);
  await p.close();
  await next.close();
  await pool.query(`DROP SCHEMA ${schema} CASCADE`);
  await pool.end();
  return { perSecond: n / seconds, cpuUsPerMessage: (cpu.user + cpu.system) / n };
}
