import { expect } from 'chai';
import { MessageHandler, MessageProcessor, sleep } from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import { deferred, exchangeFixture } from '../support/components.js';
import { deleteTopology, getOne, settledQueue, unique } from '../support/topology.js';
import { queueCounts } from '../support/broker.js';
import { within } from '../support/wait.js';

const quiet = makeLogger('silent');
type Job = { parameters: { n: number; key?: string; ms?: number; fail?: boolean } };

describe('MessageProcessor concurrency', function () {
  this.timeout(30_000);
  const f = exchangeFixture('conc');

  /** Counts the handlers running at once. */
  function gauge() {
    let now = 0;
    let max = 0;
    return {
      enter: () => (max = Math.max(max, ++now)),
      leave: () => now--,
      get max() {
        return max;
      },
    };
  }

  it('handles up to N deliveries at once with async handlers, never more, and acks every one', async () => {
    const g = gauge();
    const done = deferred();
    let handled = 0;
    class Parallel extends MessageProcessor {
      @MessageHandler('command', 'job')
      async job(c: Job) {
        g.enter();
        await new Promise((r) => setTimeout(r, c.parameters.ms));
        g.leave();
        if (++handled === 12) done.resolve();
      }
    }
    const proc = new Parallel({ url: f.url, logger: quiet, concurrency: 4, eqk: [[f.ex, [[f.queue, 'k']]]] });
    expect(proc.consumer.prefetch).to.equal(8);
    await f.h.start(proc);
    const p = await f.producer();
    // Later deliveries finish first: acks arrive out of order.
    await Promise.all(Array.from({ length: 12 }, (_, n) => p.message_job({ n, ms: 120 - n * 8 })));
    await done.promise;
    expect(g.max).to.equal(4);
    expect(await settledQueue(f.queue)).to.deep.equal({ consumers: 1, ready: 0, unacked: 0 });
  });

  it('interleaves generator handlers on the scheduler', async () => {
    const g = gauge();
    const done = deferred();
    let handled = 0;
    class Generators extends MessageProcessor {
      @MessageHandler('command', 'job')
      *job() {
        g.enter();
        yield sleep(50);
        g.leave();
        if (++handled === 6) done.resolve();
      }
    }
    await f.h.start(new Generators({ url: f.url, logger: quiet, concurrency: 3, eqk: [[f.ex, [[f.queue, 'k']]]] }));
    const p = await f.producer();
    await Promise.all(Array.from({ length: 6 }, (_, n) => p.message_job({ n })));
    await done.promise;
    expect(g.max).to.equal(3);
  });

  it('retries and dead-letters per delivery: one failing among concurrent ones reaches the error exchange alone', async () => {
    const errors = unique('conc-errors');
    f.h.onClose(() => deleteTopology([errors], [errors]));
    const ok = new Set<number>();
    const runs = new Map<number, number>();
    class Mixed extends MessageProcessor {
      @MessageHandler('command', 'job')
      async job(c: Job) {
        runs.set(c.parameters.n, (runs.get(c.parameters.n) ?? 0) + 1);
        await new Promise((r) => setTimeout(r, 10));
        if (c.parameters.fail) throw new Error(`job ${c.parameters.n} fails`);
        ok.add(c.parameters.n);
      }
    }
    await f.h.start(
      new Mixed({
        url: f.url,
        logger: quiet,
        concurrency: 4,
        errorExchange: errors,
        retry: { attempts: 2, backoffMs: 5 },
        eqk: [[f.ex, [[f.queue, 'k']]]],
      }),
    );
    const p = await f.producer();
    await Promise.all(Array.from({ length: 8 }, (_, n) => p.message_job({ n, fail: n === 5 })));
    const dead = await getOne(errors, 10_000);
    expect(dead && JSON.parse(dead.content.toString()).content.parameters.n).to.equal(5);
    expect(dead && dead.properties.headers!['x-attempts']).to.equal(2);
    const end = Date.now() + 5000;
    while (ok.size < 7 && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
    expect([...ok].sort()).to.deep.equal([0, 1, 2, 3, 4, 6, 7]);
    expect(runs.get(5)).to.equal(2);
  });

  it('drains every delivery in flight on close: each finishes and is acked, the rest stay in the queue', async () => {
    const started = deferred();
    let running = 0;
    let finished = 0;
    class Slow extends MessageProcessor {
      @MessageHandler('command', 'job')
      async job() {
        if (++running === 3) started.resolve();
        await new Promise((r) => setTimeout(r, 200));
        finished++;
      }
    }
    const proc = new Slow({
      url: f.url,
      logger: quiet,
      concurrency: 3,
      prefetch: 3,
      handleSignals: false,
      eqk: [[f.ex, [[f.queue, 'k']]]],
    });
    await f.h.start(proc);
    const p = await f.producer();
    await Promise.all(Array.from({ length: 7 }, (_, n) => p.message_job({ n })));
    await within(started.promise, { message: 'three deliveries running' });
    await proc.close();
    expect(finished).to.equal(3);
    // The broker's own counts, unacked included: the three were acked, the four others wait, nothing is held.
    expect(await queueCounts(f.queue)).to.deep.equal({ consumers: 0, ready: 4, unacked: 0 });
  });

  it('keeps each key in arrival order while different keys run at once (orderBy)', async () => {
    const KEYS = 16;
    const N = 480;
    const seen = new Map<string, number[]>();
    const busy = new Set<string>();
    let overlapSameKey = false;
    const g = gauge();
    const done = deferred();
    let handled = 0;
    class Ordered extends MessageProcessor {
      @MessageHandler('command', 'job')
      async job(c: Job) {
        const { key, n, ms } = c.parameters as Required<Job['parameters']>;
        if (busy.has(key)) overlapSameKey = true;
        busy.add(key);
        g.enter();
        await new Promise((r) => setTimeout(r, ms));
        g.leave();
        busy.delete(key);
        (seen.get(key) ?? seen.set(key, []).get(key)!).push(n);
        if (++handled === N) done.resolve();
      }
    }
    await f.h.start(
      new Ordered({
        url: f.url,
        logger: quiet,
        concurrency: 8,
        orderBy: (content) => (content as Job).parameters.key,
        eqk: [[f.ex, [[f.queue, 'k']]]],
      }),
    );
    const p = await f.producer();
    const sent = new Map<string, number[]>();
    for (let n = 0; n < N; n += 40) {
      await Promise.all(
        Array.from({ length: 40 }, (_, i) => {
          const key = `customer-${Math.floor(Math.random() * KEYS)}`;
          (sent.get(key) ?? sent.set(key, []).get(key)!).push(n + i);
          return p.message_job({ n: n + i, key, ms: Math.floor(Math.random() * 4) });
        }),
      );
    }
    await done.promise;
    expect(overlapSameKey, 'two deliveries of one key at once').to.equal(false);
    for (const [key, ns] of sent) expect(seen.get(key), key).to.deep.equal(ns);
    expect(g.max).to.be.greaterThan(1);
  });

  it('handles one delivery at a time by default, as Postage does', async () => {
    const g = gauge();
    const done = deferred();
    let handled = 0;
    class Serial extends MessageProcessor {
      @MessageHandler('command', 'job')
      async job() {
        g.enter();
        await new Promise((r) => setTimeout(r, 10));
        g.leave();
        if (++handled === 5) done.resolve();
      }
    }
    const proc = new Serial({ url: f.url, logger: quiet, eqk: [[f.ex, [[f.queue, 'k']]]] });
    expect(proc.consumer.prefetch).to.equal(1);
    await f.h.start(proc);
    const p = await f.producer();
    await Promise.all(Array.from({ length: 5 }, (_, n) => p.message_job({ n })));
    await done.promise;
    expect(g.max).to.equal(1);
  });

  it('refuses a concurrency or an orderBy it cannot use', () => {
    class P extends MessageProcessor {}
    for (const bad of [0, 1.5, -2])
      expect(() => new P({ url: 'amqp://localhost', logger: quiet, handleSignals: false, concurrency: bad })).to.throw(
        TypeError,
        /concurrency must be a whole number of at least 1/,
      );
    expect(
      () => new P({ url: 'amqp://localhost', logger: quiet, handleSignals: false, orderBy: 'key' as never }),
    ).to.throw(TypeError, /orderBy must be a function/);
    expect(
      new P({ url: 'amqp://localhost', logger: quiet, handleSignals: false, concurrency: 4, orderBy: () => 1 }).consumer
        .prefetch,
    ).to.equal(16);
  });
});
