/**
 * Fault: a component with a PostgreSQL store dies (SIGKILL) at the outbox's
 * worst moments and is started again. Injected by running it as a child
 * process (spec/fixtures/outbox-worker.ts) over 1,000 messages, each writing a
 * row and sending one message downstream, and killing it four times: once
 * stopped by its test hook after a commit and before that run's publish, once
 * after a publish and before its row is marked sent, twice at a random moment
 * mid-stream. Must hold: exactly 1,000 rows upstream; every downstream message
 * received at least once; a downstream processor with a store of its own
 * records each exactly once (its inbox drops the duplicates the kills cause).
 */
import { spawn } from 'node:child_process';
import amqp from 'amqplib';
import { expect } from 'chai';
import type pg from 'pg';
import {
  currentDelivery,
  type DeliveryEvent,
  MessageHandler,
  MessageProcessor,
  MicroScheduler,
} from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import { PostgresStore } from '../../lib/stores/postgres/index.js';
import { dropSchema, PG_URL, pgPool, uniqueSchema, until } from '../stores/support.js';
import { brokerUrl } from '../support/broker.js';
import { deleteTopology, unique } from '../support/topology.js';

const N = 1_000;
const quiet = makeLogger('silent');

/** Workers alive: killed when the spec ends, however it ends (a schema cannot be dropped under their locks). */
const live = new Set<ReturnType<typeof spawn>>();

interface Worker {
  /** Resolves with the line the worker printed when it stopped at its pause. */
  paused: Promise<string>;
  kill(): Promise<void>;
}

/** Starts the worker; resolves once it consumes. */
async function startWorker(
  url: string,
  queue: string,
  exchange: string,
  schema: string,
  pauseAt = '',
): Promise<Worker> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'spec/fixtures/outbox-worker.ts', queue, exchange, schema],
    {
      env: {
        ...process.env,
        POSTAGE_URL: url,
        POSTAGE_TEST_PG_URL: PG_URL,
        PAUSE_AT: pauseAt,
        POSTAGE_LOG_LEVEL: process.env.WORKER_LOG ?? 'error',
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  let out = '';
  let onPause: (line: string) => void = () => undefined;
  const paused = new Promise<string>((resolve) => {
    onPause = resolve;
  });
  const ready = new Promise<void>((resolve, reject) => {
    const deadline = setTimeout(() => reject(new Error('the worker did not print ready within 30 s')), 30_000);
    child.stdout.on('data', (c: Buffer) => {
      out += c;
      if (out.includes('ready\n')) {
        clearTimeout(deadline);
        resolve();
      }
      const m = /paused \S+ \S+/.exec(out);
      if (m) onPause(m[0]);
    });
    void exited.then(() => reject(new Error(`the worker exited before it was ready: ${out}`)));
  });
  await ready;
  live.add(child);
  void exited.then(() => live.delete(child));
  return {
    paused,
    kill: async () => {
      child.kill('SIGKILL');
      await exited;
    },
  };
}

async function publishItems(url: string, queue: string): Promise<void> {
  const conn = await amqp.connect(url);
  const ch = await conn.createConfirmChannel();
  await ch.assertQueue(queue, { durable: true });
  for (let n = 0; n < N; n++) {
    const body = {
      type: 'command',
      name: 'item',
      category: 'message',
      version: '2',
      fingerprint: {},
      content: { parameters: { n } },
      _reserved: {},
    };
    ch.publish('', queue, Buffer.from(JSON.stringify(body)), {
      persistent: true,
      messageId: `item-${n}`,
      contentType: 'application/json',
    });
  }
  await ch.waitForConfirms();
  await conn.close();
}

describe('fault: a component with a database outbox is killed mid-stream', function () {
  this.timeout(400_000);
  let pool: pg.Pool;
  const schema = uniqueSchema('postage_crash');
  const queue = unique('outbox-crash-in');
  const downQueue = unique('outbox-crash-down');
  const exchange = unique('outbox-crash-out');

  before(async () => {
    pool = await pgPool();
    await pool.query(`CREATE SCHEMA "${schema}"`);
    await pool.query(`CREATE TABLE "${schema}".items (n integer NOT NULL)`);
    await pool.query(`CREATE TABLE "${schema}".received (n integer NOT NULL)`);
  });
  after(async () => {
    for (const c of live) c.kill('SIGKILL');
    await deleteTopology([queue, downQueue], [exchange]).catch(() => undefined);
    await dropSchema(pool, schema);
    await pool.end();
  });

  it('ends with 1,000 rows, every message downstream, and each recorded there exactly once', async () => {
    const url = await brokerUrl();
    const count = async (table: string, distinct = false) =>
      (await pool.query(`SELECT count(${distinct ? 'DISTINCT n' : '*'})::int AS c FROM "${schema}".${table}`)).rows[0]
        .c as number;

    // Downstream: its own store (another prefix), recording each message it is given.
    const downStore = new PostgresStore({ pool, schema, prefix: 'down_' });
    const events: DeliveryEvent[] = [];
    class Downstream extends MessageProcessor {
      @MessageHandler('command', 'done')
      async done(c: { parameters: { n: number } }) {
        await currentDelivery()!.db!.query(`INSERT INTO "${schema}".received (n) VALUES ($1)`, [c.parameters.n]);
      }
    }
    const down = new Downstream({
      url,
      logger: quiet,
      handleSignals: false,
      concurrency: 4,
      eqk: [
        [{ name: exchange, type: 'direct', durable: true }, [[{ name: downQueue, flags: { durable: true } }, 'done']]],
      ],
      store: downStore,
    });
    down.observe((e) => events.push(e));
    await down.ready();
    const scheduler = new MicroScheduler({ name: 'downstream' });
    scheduler.addMicrothread(down);
    const running = scheduler.run();

    await publishItems(url, queue);
    const started = Date.now();
    let kills = 0;
    // Where the spec is, when POSTAGE_SPEC_TRACE is set: a slow machine shows which wait it spends its time in.
    const phase = (what: string) => {
      if (process.env.POSTAGE_SPEC_TRACE) console.log(`      ${Date.now() - started} ms: ${what}`);
    };
    const pauses: string[] = [];

    // 1: stopped by the hook after its commit, before its publish.
    let w = await startWorker(url, queue, exchange, schema, 'committed:40');
    pauses.push(await w.paused);
    await w.kill();
    kills++;
    phase('killed after a commit');
    // 2: after its publish, before its row is marked sent.
    w = await startWorker(url, queue, exchange, schema, 'published:40');
    pauses.push(await w.paused);
    await w.kill();
    kills++;
    phase('killed after a publish');
    // 3 and 4: at a random moment, once some more rows are in.
    for (let i = 0; i < 2; i++) {
      w = await startWorker(url, queue, exchange, schema);
      const from = await count('items');
      const more = 50 + Math.floor(Math.random() * 150);
      await until(async () => (await count('items')) >= Math.min(N, from + more), `${more} more rows`, 60_000);
      await w.kill();
      kills++;
      phase(`killed at random, ${await count('items')} rows in`);
    }
    // What the dead processes left in the outbox, unpublished: the restarted worker's sweeper publishes it.
    const leftBehind = async () =>
      (
        await pool.query(
          `SELECT count(*)::int AS c FROM "${schema}".postage_outbox WHERE sent_at IS NULL AND created_at < $1`,
          [new Date()],
        )
      ).rows[0].c as number;
    const left = await leftBehind();
    const before = await count('items');
    const lastStart = Date.now();
    w = await startWorker(url, queue, exchange, schema);
    const upAt = Date.now();
    const rowsAtUp = await count('items');
    const outbox = new PostgresStore({ pool, schema, autoMigrate: false });
    const cutoff = new Date(lastStart);
    await until(
      async () =>
        (
          await pool.query(
            `SELECT count(*)::int AS c FROM "${schema}".postage_outbox WHERE sent_at IS NULL AND created_at < $1`,
            [cutoff],
          )
        ).rows[0].c === 0,
      'the rows the dead processes left published',
      60_000,
    );
    const drainedMs = Date.now() - lastStart;
    phase('what the dead left is published');
    await until(async () => (await count('items')) === N, `${N} rows upstream`, 120_000);
    const rate = Math.round(((N - rowsAtUp) * 1000) / Math.max(1, Date.now() - upAt));
    await until(async () => (await outbox.backlog()).waiting === 0, 'the outbox drained', 60_000);
    await until(async () => (await count('received', true)) === N, `${N} distinct messages downstream`, 60_000);
    await w.kill();

    const rows = await count('items');
    const distinct = await count('items', true);
    const received = await count('received');
    const deliveries = events.filter((e) => e.outcome === 'acked').length;
    await down.close();
    scheduler.stop();
    await running;

    console.log(
      `      outbox crash oracle: ${kills} kills (${pauses.join('; ')}), ${rows} rows upstream (${distinct} ` +
        'distinct), ' +
        `${deliveries} deliveries downstream of which ${deliveries - received} duplicate(s) dropped by its inbox, ` +
        `${received} recorded; ${left} row(s) left unpublished by the last kill (${before} rows in), ` +
        `published ${drainedMs} ms after the restart (worker start included); ` +
        `${rate} messages/s after it; ${Date.now() - started} ms in all`,
    );
    expect(kills).to.be.at.least(3);
    expect(pauses.map((p) => p.split(' ')[1])).to.deep.equal(['committed', 'published']);
    expect(rows).to.equal(N);
    expect(distinct).to.equal(N);
    expect(received).to.equal(N);
    expect(await count('received', true)).to.equal(N);
  });
});
