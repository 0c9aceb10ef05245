/**
 * Hostile: a storm of duplicates under concurrency. 40 message ids, three
 * copies of each, shuffled, to processors with `deduplicate` and
 * `concurrency` 4: one process with the in-memory store, and two replicas
 * sharing a RedisIdempotencyStore. Every fifth id fails its first run (and
 * succeeds on its in-process retry). Each id must succeed exactly once, and
 * every copy must be settled. The same with two replicas on one PostgresStore
 * (`store`, the inbox): each id's row written once.
 */
import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import { createClient } from 'redis';
import {
  currentDelivery,
  type IdempotencyStore,
  MemoryIdempotencyStore,
  MessageHandler,
  MessageProcessor,
  type ProcessorOptions,
} from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import { PostgresStore } from '../../lib/stores/postgres/index.js';
import { RedisIdempotencyStore } from '../../lib/stores/redis/index.js';
import { dropSchema, pgPool, uniqueSchema } from '../stores/support.js';
import { brokerUrl } from '../support/broker.js';
import { exchangeFixture } from '../support/components.js';
import { deleteTopology, settledQueue, unique } from '../support/topology.js';
import { until } from '../support/wait.js';

const quiet = makeLogger('silent');
const IDS = 40;
const COPIES = 3;

describe('Hostile: duplicates under concurrency with deduplicate', function () {
  this.timeout(90_000);
  const f = exchangeFixture('storm', brokerUrl, unique, deleteTopology);

  async function storm(
    replicas: Array<Pick<ProcessorOptions, 'deduplicate' | 'store'>>,
    row?: string,
  ): Promise<{ ms: number }> {
    const succeeded = new Map<string, number>();
    const failed = new Map<string, number>();
    class Storm extends MessageProcessor {
      @MessageHandler('command', 'job')
      async job(c: { parameters: { id: number } }) {
        const id = String(c.parameters.id);
        await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 20)));
        if (c.parameters.id % 5 === 0 && !failed.has(id)) {
          failed.set(id, 1);
          throw new Error('the first run fails');
        }
        // With a store, in the run's transaction: a run that then fails leaves no row.
        if (row) await currentDelivery()!.db!.query(`INSERT INTO ${row} (id) VALUES ($1)`, [id]);
        succeeded.set(id, (succeeded.get(id) ?? 0) + 1);
      }
    }
    let settled = 0;
    const procs = replicas.map((options, i) => {
      const p = new Storm({
        url: f.url,
        logger: quiet,
        fingerprint: { name: 'storm', pid: String(i) },
        ...options,
        handleSignals: false,
        concurrency: 4,
        retry: { attempts: 2, backoffMs: 10 },
        eqk: [[f.ex, [[f.queue, 'k']]]],
      });
      p.observe((e) => {
        if (e.outcome !== 'deferred') settled++;
      });
      return p;
    });
    await f.h.start(...procs);
    const p = await f.producer();
    const copies = Array.from({ length: IDS * COPIES }, (_, n) => n % IDS).sort(() => Math.random() - 0.5);
    const started = Date.now();
    await Promise.all(copies.map((id) => p.message_job({ id }, { _message_id: `storm-${id}` })));
    await until(() => settled >= IDS * COPIES, {
      timeout: 60_000,
      message: () => `every copy settled (${settled} of ${IDS * COPIES})`,
    });
    const ms = Date.now() - started;
    const twice = [...succeeded].filter(([, n]) => n !== 1);
    expect(twice, 'ids whose handler succeeded more than once').to.deep.equal([]);
    expect(succeeded.size, 'ids handled').to.equal(IDS);
    expect(await settledQueue(f.queue)).to.deep.equal({ consumers: replicas.length, ready: 0, unacked: 0 });
    return { ms };
  }

  it('runs each id once in one process with the in-memory store (concurrency 4)', async () => {
    const { ms } = await storm([{ deduplicate: new MemoryIdempotencyStore() }]);
    console.log(`      ${IDS * COPIES} copies of ${IDS} ids settled in ${ms} ms`);
  });

  it('runs each id once on two replicas sharing a RedisIdempotencyStore (concurrency 4 each)', async () => {
    const url = process.env.POSTAGE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
    const client = createClient({ url, socket: { reconnectStrategy: false } });
    client.on('error', () => undefined);
    await client.connect();
    const prefix = `postage-spec:${randomBytes(4).toString('hex')}:`;
    try {
      const store = (): IdempotencyStore => new RedisIdempotencyStore({ client, prefix, logger: quiet });
      const { ms } = await storm([{ deduplicate: store() }, { deduplicate: store() }]);
      console.log(`      ${IDS * COPIES} copies of ${IDS} ids settled in ${ms} ms`);
    } finally {
      await f.h.close();
      const keys = await client.keys(`${prefix}*`);
      if (keys.length > 0) await client.del(keys);
      await client.close();
    }
  });

  it("writes each id's row once on two replicas sharing a PostgresStore (concurrency 4 each)", async () => {
    const pool = await pgPool(12);
    const schema = uniqueSchema('storm_hostile');
    try {
      await pool.query(`CREATE SCHEMA "${schema}"`);
      const table = `"${schema}".rows`;
      await pool.query(`CREATE TABLE ${table} (id text NOT NULL)`);
      const store = () => new PostgresStore({ pool, schema });
      const { ms } = await storm([{ store: store() }, { store: store() }], table);
      console.log(`      ${IDS * COPIES} copies of ${IDS} ids settled in ${ms} ms`);
      const { rows } = await pool.query(`SELECT id, count(*)::int AS n FROM ${table} GROUP BY id HAVING count(*) <> 1`);
      expect(rows, 'ids with other than one row').to.deep.equal([]);
      expect((await pool.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0].n).to.equal(IDS);
    } finally {
      await f.h.close();
      await dropSchema(pool, schema);
      await pool.end();
    }
  });
});
