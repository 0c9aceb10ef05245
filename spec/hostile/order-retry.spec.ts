/**
 * Hostile: per-key order (`orderBy` with `concurrency` > 1) under in-memory retries and time limits. docs/scaling.md
 * promises a key's deliveries one after another in arrival order, other keys at once; a retry run in memory keeps the
 * key's place (its later messages wait for it), a failing key does not hold up the others. (A requeue or a defer loses
 * its place, as documented: not asserted here.)
 */
import { expect } from 'chai';
import { MessageHandler, MessageProcessor } from '../../lib/index.js';
import { deferred, exchangeFixture } from '../support/components.js';
import { within } from '../support/wait.js';

type Job = { parameters: { n: number; key: string; fails?: number; hang?: boolean } };

describe('Hostile: orderBy with retries and time limits', function () {
  this.timeout(30_000);
  const f = exchangeFixture('ordretry');

  it('runs a key again in place on an in-memory retry: its later messages wait, other keys go on', async () => {
    const log: string[] = [];
    const runs = new Map<number, number>();
    const done = deferred();
    let handled = 0;
    const N = 40;
    class Ordered extends MessageProcessor {
      @MessageHandler('command', 'job')
      async job(c: Job) {
        const { n, key, fails = 0 } = c.parameters;
        const r = (runs.get(n) ?? 0) + 1;
        runs.set(n, r);
        log.push(`${key}:${n}:${r}`);
        await new Promise((res) => setImmediate(res));
        if (r <= fails) throw new Error(`fail ${n} run ${r}`);
        if (++handled === N) done.resolve();
      }
    }
    await f.start(Ordered, {
      concurrency: 4,
      retry: { attempts: 3, backoffMs: 50 },
      orderBy: (content) => (content as Job).parameters.key,
    });
    const p = await f.producer();
    const sent = new Map<string, number[]>();
    for (let n = 0; n < N; n++) {
      const key = `k${n % 4}`;
      (sent.get(key) ?? sent.set(key, []).get(key)!).push(n);
      await p.message_job({ n, key, fails: n === 0 ? 2 : n % 7 === 3 ? 1 : 0 });
    }
    await within(done.promise, { timeout: 10_000, message: `all handled; log ${log.join(' ')}` });
    for (const [key, ns] of sent) {
      const firsts = log.filter((l) => l.startsWith(`${key}:`) && l.endsWith(':1')).map((l) => Number(l.split(':')[1]));
      expect(firsts, key).to.deep.equal(ns);
    }
    // k0's first message took two backoffs: k1's messages did not wait for it
    const k0done = log.indexOf('k0:0:3');
    expect(log.slice(0, k0done).filter((l) => l.startsWith('k1:')).length).to.be.greaterThan(3);
  });

  it('with a time limit: a run past it is retried before the key goes on', async () => {
    const log: string[] = [];
    const runs = new Map<number, number>();
    const done = deferred();
    let handled = 0;
    const N = 12;
    const abandoned = deferred();
    class Ordered extends MessageProcessor {
      @MessageHandler('command', 'job', { timeoutMs: 100 })
      async job(c: Job) {
        const { n, key, hang } = c.parameters;
        const r = (runs.get(n) ?? 0) + 1;
        runs.set(n, r);
        log.push(`${key}:${n}:${r}`);
        // Past its limit the run is given up (an async function cannot be stopped: it ends when told to).
        if (hang && r === 1) await abandoned.promise;
        if (r > 1 || !hang) if (++handled === N) done.resolve();
      }
    }
    await f.start(Ordered, {
      concurrency: 4,
      retry: { attempts: 3, backoffMs: 10 },
      orderBy: (content) => (content as Job).parameters.key,
    });
    const p = await f.producer();
    for (let n = 0; n < N; n++) await p.message_job({ n, key: `k${n % 2}`, hang: n === 0 });
    await within(done.promise, { timeout: 10_000, message: `all handled; log ${log.join(' ')}` });
    abandoned.resolve();
    // k0's first run passed its limit and was run again before k0's next message; k1 went on meanwhile.
    const k0 = log.filter((l) => l.startsWith('k0:'));
    expect(k0.slice(0, 3)).to.deep.equal(['k0:0:1', 'k0:0:2', 'k0:2:1']);
    expect(log.indexOf('k1:11:1')).to.be.lessThan(log.indexOf('k0:0:2'));
    for (const key of ['k0', 'k1']) {
      const firsts = log.filter((l) => l.startsWith(`${key}:`) && l.endsWith(':1')).map((l) => Number(l.split(':')[1]));
      expect(firsts, key).to.deep.equal(firsts.slice().sort((a, b) => a - b));
    }
  });
});
