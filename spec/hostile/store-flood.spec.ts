/**
 * Hostile: one `store` run whose handler sends 1,000 messages. All of them must go out exactly once after the commit
 * (the outbox drained), none before it, and the run must not trip over its own volume.
 */
import { expect } from 'chai';
import amqp from 'amqplib';
import type pg from 'pg';
import {
  currentDelivery,
  GenericProducer,
  MessageHandler,
  MessageProcessor,
  type DeliveryEvent,
  type MessageSender,
} from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import { PostgresStore } from '../../lib/stores/postgres/index.js';
import { brokerUrl } from '../support/broker.js';
import { Harness } from '../support/components.js';
import { aheadOfFence, deleteTopology, queueState, unique } from '../support/topology.js';
import { dropSchema, pgPool, uniqueSchema, until } from '../stores/support.js';

const N = 1000;

describe('Hostile: a store run that sends 1,000 messages', function () {
  this.timeout(90_000);
  let url: string;
  let pool: pg.Pool;
  let h: Harness;
  const schema = uniqueSchema('x1_hostile');
  const input = { name: unique('hs-in'), type: 'direct' as const, durable: false };
  const output = { name: unique('hs-out'), type: 'direct' as const, durable: false };
  const inQueue = unique('hs-in-q');
  const outQueue = unique('hs-out-q');

  before(async () => {
    url = await brokerUrl();
    pool = await pgPool();
    await pool.query(`CREATE SCHEMA "${schema}"`);
  });
  after(async () => {
    await dropSchema(pool, schema);
    await pool.end();
  });
  beforeEach(() => {
    h = new Harness();
  });
  afterEach(async () => {
    await h.close();
    await deleteTopology([inQueue, outQueue], [input.name, output.name]).catch(() => undefined);
  });

  it('publishes every one exactly once after the commit and drains the outbox', async () => {
    const conn = await amqp.connect(url);
    const ch = await conn.createChannel();
    await ch.assertExchange(output.name, 'direct', { durable: false });
    await ch.assertQueue(outQueue, { durable: false });
    await ch.bindQueue(outQueue, output.name, 'placed');
    await ch.close();
    await conn.close();
    class In extends GenericProducer {
      static override eks = [[input, 'k'] as const];
      declare message_order: MessageSender<{ n: number }>;
    }
    class Out extends GenericProducer {
      static override eks = [[output, 'placed'] as const];
      declare message_placed: MessageSender<{ i: number }>;
    }
    const p = await In.create({ url });
    const o = await Out.create({ url });
    h.onClose(() => p.close());
    h.onClose(() => o.close());
    const store = new PostgresStore({ pool, schema, sweepAfterMs: 2000, sweepEveryMs: 200 });
    let sentBeforeCommit = -1;
    let inTransaction = false;
    class Flood extends MessageProcessor {
      @MessageHandler('command', 'order')
      async order(c: { parameters: { n: number } }) {
        for (let i = 0; i < c.parameters.n; i++) await o.message_placed({ i });
        inTransaction = currentDelivery()?.db !== undefined;
        sentBeforeCommit = (await queueState(outQueue)).messages;
      }
    }
    const proc = new Flood({
      url,
      logger: makeLogger('silent'),
      handleSignals: false,
      eqk: [[input, [[inQueue, 'k']]]],
      store,
    });
    const events: DeliveryEvent[] = [];
    proc.observe((e) => void events.push(e));
    await h.start(proc);
    const t0 = Date.now();
    await p.message_order({ n: N });
    await until(() => events.length > 0, 'the run settled', 60_000);
    const ran = Date.now() - t0;
    expect(events[0].outcome, `the run: ${JSON.stringify(events[0])}`).to.equal('acked');
    expect(inTransaction, "the handler ran with the run's database client").to.equal(true);
    expect(sentBeforeCommit, 'messages went out before the commit').to.equal(0);
    await until(async () => (await queueState(outQueue)).messages >= N, `${N} messages out`, 60_000);
    await until(async () => (await store.backlog()).waiting === 0, 'the outbox drained', 60_000);
    // Every row is marked sent, so no relay or sweep sends again: what is ahead of a fence now is all that went out.
    const got = (await aheadOfFence(outQueue, 60_000)).length;
    console.log(`      run ${ran} ms, out ${got}`);
    expect(got, 'duplicates or losses').to.equal(N);
  });
});
