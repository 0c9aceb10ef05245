/**
 * postage-ts/redis: `RedisIdempotencyStore` for `deduplicate`, against the
 * real Redis (POSTAGE_TEST_REDIS_URL) and the broker. Each test keys under
 * a prefix of its own and deletes its keys after it.
 */
import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import { createClient } from 'redis';
import { type DeliveryEvent, type IdempotencyStore, MessageHandler, MessageProcessor } from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import { RedisIdempotencyStore } from '../../lib/stores/redis/index.js';
import { deferred, exchangeFixture } from '../support/components.js';
import { capture } from '../support/log.js';
import { privateRedis } from '../support/private-redis.js';
import { settledQueue } from '../support/topology.js';
import { until, within } from '../support/wait.js';

const quiet = makeLogger('silent');
const REDIS_URL = process.env.POSTAGE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

type Client = ReturnType<typeof createClient>;

/** A connected client; fails at once, with what to do, when Redis does not answer. */
async function redis(url = REDIS_URL): Promise<Client> {
  const client = createClient({ url, socket: { connectTimeout: 3000, reconnectStrategy: false } });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.ping();
  } catch (err) {
    throw new Error(
      `Redis does not answer at ${url} (${(err as Error).message}): ` +
        'start it (DEVELOPERS.md) or set POSTAGE_TEST_REDIS_URL',
    );
  }
  return client;
}

/** Resolves with the first `n` delivery events of `p`. */
function settled(p: MessageProcessor, n: number): Promise<DeliveryEvent[]> {
  const seen: DeliveryEvent[] = [];
  const done = deferred<DeliveryEvent[]>();
  const stop = p.observe((e) => {
    seen.push(e);
    if (seen.length === n) {
      stop();
      done.resolve(seen);
    }
  });
  return within(done.promise, { timeout: 15_000, message: `${n} deliveries settled (saw ${seen.length})` });
}

describe('RedisIdempotencyStore', function () {
  this.timeout(30_000);
  const f = exchangeFixture('redis');
  let client: Client;
  let prefix: string;

  before(async () => {
    client = await redis();
  });
  after(async () => {
    await client?.close();
  });
  beforeEach(() => {
    prefix = `postage-spec:${randomBytes(4).toString('hex')}:`;
  });
  afterEach(async () => {
    await f.h.close();
    const keys = await client.keys(`${prefix}*`);
    if (keys.length > 0) await client.del(keys);
  });

  it('claims an id once: a second claim finds it busy, a release by another claim does nothing', async () => {
    const store = new RedisIdempotencyStore({ client, prefix, logger: quiet });
    const first = await store.claim('p/1');
    expect(first.state).to.equal('claimed');
    expect(await store.claim('p/1')).to.deep.equal({ state: 'busy' });
    await store.release('p/1', 'claim:someone-else');
    expect(await store.claim('p/1')).to.deep.equal({ state: 'busy' });
    await store.release('p/1', (first as { token: string }).token);
    const again = await store.claim('p/1');
    expect(again.state).to.equal('claimed');
    await store.remember('p/1');
    expect(await store.claim('p/1')).to.deep.equal({ state: 'seen' });
    expect(await store.seen('p/1')).to.equal(true);
  });

  it('lets its entries expire: a claim after claimTtlMs, a handled id after ttlMs', async () => {
    const store = new RedisIdempotencyStore({ client, prefix, logger: quiet, ttlMs: 60_000, claimTtlMs: 30_000 });
    await store.claim('p/a');
    const claimTtl = await client.pTTL(`${prefix}p/a`);
    expect(claimTtl).to.be.within(1, 30_000);
    await store.remember('p/a');
    const ttl = await client.pTTL(`${prefix}p/a`);
    expect(ttl).to.be.within(30_001, 60_000);
  });

  it("gives a run's claim the processor's time limit and a margin: a 200 ms limit, a TTL of 200 ms + the margin", async () => {
    const store = new RedisIdempotencyStore({ client, prefix, logger: quiet, claimMarginMs: 1_000 });
    const pttl = deferred<number>();
    class Quick extends MessageProcessor {
      @MessageHandler('command', 'job')
      async job() {
        // Read inside the run, under the claim it guards.
        pttl.resolve(await client.pTTL(`${prefix}quick/q-1`));
      }
    }
    await f.h.start(
      new Quick({
        url: f.url,
        logger: quiet,
        fingerprint: { name: 'quick' },
        deduplicate: store,
        handlerTimeoutMs: 200,
        eqk: [[f.ex, [[f.queue, 'k']]]],
      }),
    );
    const p = await f.producer();
    await p.message_job({}, { _message_id: 'q-1' });
    const ttl = await within(pttl.promise, { timeout: 10_000, message: 'the handler read its claim' });
    // Set at most 200 ms ago (the run's limit): between the margin and the limit plus the margin.
    expect(ttl).to.be.within(1_000, 1_200);
  });

  it('gives a claim the runs retries make in the process, and the default margin, by the default time limit', async () => {
    const store = new RedisIdempotencyStore({ client, prefix, logger: quiet });
    const pttl = deferred<number>();
    class Patient extends MessageProcessor {
      @MessageHandler('command', 'job')
      async job() {
        pttl.resolve(await client.pTTL(`${prefix}patient/r-1`));
      }
    }
    await f.h.start(
      new Patient({
        url: f.url,
        logger: quiet,
        fingerprint: { name: 'patient' },
        deduplicate: store,
        retry: { attempts: 3, backoffMs: 100, maxBackoffMs: 5_000 },
        eqk: [[f.ex, [[f.queue, 'k']]]],
      }),
    );
    const p = await f.producer();
    await p.message_job({}, { _message_id: 'r-1' });
    const ttl = await within(pttl.promise, { timeout: 10_000, message: 'the handler read its claim' });
    // Three runs of 20 minutes each (the default limit), 100 + 200 ms between them, and 20 s of margin.
    const expected = 3 * 1_200_000 + 300 + 20_000;
    expect(ttl).to.be.within(expected - 2_000, expected);
    expect(store.claimTtlFor({ runMs: 3 * 1_200_000 + 300 })).to.equal(expected);
  });

  it('gives a claim claimTtlMs when the processor has no time limit (handlerTimeoutMs: Infinity)', async () => {
    const store = new RedisIdempotencyStore({ client, prefix, logger: quiet, claimTtlMs: 45_000 });
    expect([store.claimTtlFor(), store.claimTtlFor({ runMs: Number.POSITIVE_INFINITY })]).to.deep.equal([
      45_000, 45_000,
    ]);
    const pttl = deferred<number>();
    class Unlimited extends MessageProcessor {
      @MessageHandler('command', 'job')
      async job() {
        // A run that waits: under a limit of Infinity it is never cut short.
        await new Promise((r) => setTimeout(r, 50));
        pttl.resolve(await client.pTTL(`${prefix}unlimited/u-1`));
      }
    }
    const proc = new Unlimited({
      url: f.url,
      logger: quiet,
      fingerprint: { name: 'unlimited' },
      deduplicate: store,
      handlerTimeoutMs: Number.POSITIVE_INFINITY,
      eqk: [[f.ex, [[f.queue, 'k']]]],
    });
    await f.h.start(proc);
    const events = settled(proc, 1);
    const p = await f.producer();
    await p.message_job({}, { _message_id: 'u-1' });
    const ttl = await within(pttl.promise, { timeout: 10_000, message: 'the handler read its claim' });
    expect(ttl).to.be.within(43_000, 45_000);
    expect((await events).map((e) => e.outcome)).to.deep.equal(['acked']);
  });

  it('claims for runs of a huge time limit (Number.MAX_VALUE ms) too, with the longest TTL Redis takes', async () => {
    // Without a cap, PX got "1.7976931348623157e+308": Redis refused the SET, and every claim failed open (ran).
    const store = new RedisIdempotencyStore({ client, prefix, logger: quiet });
    const first = await store.claim('p/huge', { runMs: Number.MAX_VALUE });
    expect(first.state).to.equal('claimed');
    expect((first as { token: string }).token, 'a real claim, not a failed-open one').to.not.equal('');
    expect(await store.claim('p/huge', { runMs: 1e20 })).to.deep.equal({ state: 'busy' });
    expect(store.down).to.equal(false);
    expect(await client.pTTL(`${prefix}p/huge`)).to.be.above(1e15);
  });

  it('runs a message id once when two replicas on one queue are each given it at the same moment', async () => {
    const runs: string[] = [];
    const gate = deferred();
    class Orders extends MessageProcessor {
      @MessageHandler('command', 'place')
      async place() {
        runs.push(this.fingerprint.pid);
        await gate.promise;
      }
    }
    const replica = (pid: string) =>
      new Orders({
        url: f.url,
        logger: quiet,
        fingerprint: { name: 'orders', pid },
        deduplicate: new RedisIdempotencyStore({ client, prefix, logger: quiet }),
        eqk: [[f.ex, [[f.queue, 'k']]]],
      });
    const a = replica('1');
    const b = replica('2');
    const events: Array<DeliveryEvent & { on: string }> = [];
    a.observe((e) => events.push({ ...e, on: 'a' }));
    b.observe((e) => events.push({ ...e, on: 'b' }));
    await f.h.start(a, b);
    const p = await f.producer();
    await p.message_place({}, { _message_id: 'order-7' });
    await p.message_place({}, { _message_id: 'order-7' });
    // Each replica holds one copy (prefetch 1): the one running has the claim, the other finds it taken.
    await until(() => events.length >= 1, { timeout: 10_000, message: 'the copy without the claim settled' });
    expect(events[0].outcome, 'the copy given to the replica without the claim').to.equal('deferred');
    expect(runs).to.have.length(1);
    expect(events[0].on, 'the deferred copy was on the other replica').to.not.equal(runs[0] === '1' ? 'a' : 'b');
    gate.resolve();
    // The claimant acks; the deferred copy comes back, finds the id handled, and is dropped (acked unrun).
    await until(() => events.length >= 3, { timeout: 15_000, message: 'the claimant and the returning copy settled' });
    expect(events.map((e) => e.outcome)).to.deep.equal(['deferred', 'acked', 'acked']);
    expect(runs, 'the handler ran once, on one replica').to.have.length(1);
    expect(await client.get(`${prefix}orders/order-7`)).to.equal('done');
    expect(await settledQueue(f.queue)).to.deep.equal({ consumers: 2, ready: 0, unacked: 0 });
  });

  it('releases the claim of a run that failed, so its retry runs it', async () => {
    let n = 0;
    const done = deferred();
    class Flaky extends MessageProcessor {
      @MessageHandler('command', 'job')
      job() {
        n++;
        if (n === 1) throw new Error('the first run fails');
        done.resolve();
      }
    }
    const store = new RedisIdempotencyStore({ client, prefix, logger: quiet });
    const proc = new Flaky({
      url: f.url,
      logger: quiet,
      fingerprint: { name: 'flaky' },
      deduplicate: store,
      retry: { attempts: 1, delays: [200] },
      eqk: [[f.ex, [[f.queue, 'k']]]],
    });
    await f.h.start(proc);
    const events = settled(proc, 2);
    const p = await f.producer();
    await p.message_job({}, { _message_id: 'j-1' });
    await within(done.promise, { timeout: 10_000, message: 'the retry ran the handler' });
    expect((await events).map((e) => e.outcome)).to.deep.equal(['deferred', 'acked']);
    expect(n).to.equal(2);
    expect(await client.get(`${prefix}flaky/j-1`)).to.equal('done');
  });

  it('handles messages when Redis stops answering, and logs the outage once', async () => {
    const server = await privateRedis();
    const own = await redis(server.url);
    const log = capture('info');
    try {
      let n = 0;
      const two = deferred();
      class Jobs extends MessageProcessor {
        @MessageHandler('command', 'job')
        job() {
          if (++n === 2) two.resolve();
        }
      }
      const store = new RedisIdempotencyStore({ client: own, prefix, logger: log.logger, timeoutMs: 300 });
      await f.h.start(new Jobs({ url: f.url, logger: quiet, deduplicate: store, eqk: [[f.ex, [[f.queue, 'k']]]] }));
      await server.stop();
      const p = await f.producer();
      await p.message_job({}, { _message_id: 'a' });
      await p.message_job({}, { _message_id: 'b' });
      await within(two.promise, { timeout: 10_000, message: 'both messages handled with Redis down' });
      const outage = log.lines.filter((l) => /Redis does not answer/.test(l));
      expect(outage, 'one line for the outage, not one per message').to.have.length(1);
      expect(store.down).to.equal(true);
    } finally {
      await own.close().catch(() => undefined);
      await server.stop();
    }
  });

  it('still serves a store of seen and remember only (no claim), as before', async () => {
    const redisStore = new RedisIdempotencyStore({ client, prefix, logger: quiet });
    const calls: string[] = [];
    const old: IdempotencyStore = {
      seen: (k) => (calls.push(`seen ${k}`), redisStore.seen(k)),
      remember: (k) => (calls.push(`remember ${k}`), redisStore.remember(k)),
    };
    const runs: number[] = [];
    const last = deferred();
    class Once extends MessageProcessor {
      @MessageHandler('command', 'job')
      job(c: { parameters: { n: number } }) {
        runs.push(c.parameters.n);
        if (c.parameters.n === 3) last.resolve();
      }
    }
    await f.h.start(
      new Once({
        url: f.url,
        logger: quiet,
        fingerprint: { name: 'once' },
        deduplicate: old,
        eqk: [[f.ex, [[f.queue, 'k']]]],
      }),
    );
    const p = await f.producer();
    await p.message_job({ n: 1 }, { _message_id: 'x' });
    await p.message_job({ n: 2 }, { _message_id: 'x' });
    await p.message_job({ n: 3 }, { _message_id: 'y' });
    await within(last.promise, { timeout: 10_000, message: 'the third message handled' });
    expect(runs).to.deep.equal([1, 3]);
    expect(calls.slice(0, 3)).to.deep.equal(['seen once/x', 'remember once/x', 'seen once/x']);
  });

  it('refuses a client it cannot use, and times it cannot use', () => {
    expect(() => new RedisIdempotencyStore({ client: {} as never })).to.throw(TypeError, /needs \{ client \}/);
    expect(() => new RedisIdempotencyStore({ client, ttlMs: 0 })).to.throw(TypeError, /ttlMs must be/);
  });
});
