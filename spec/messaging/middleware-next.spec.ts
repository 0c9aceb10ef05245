/**
 * A middleware cannot outlive its delivery (or its send): the outcome is
 * decided by what `next()` did, a `next()` that is not awaited is waited
 * for, and one called after its middleware returned runs nothing. No
 * rejection ever escapes as an unhandledRejection.
 */
import { expect } from 'chai';
import { BrokerError, MessageHandler, MessageProcessor, type DeliveryEvent } from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import { deferred, exchangeFixture } from '../support/components.js';
import { aheadOfFence, deleteTopology, getOne, queueState, unique } from '../support/topology.js';
import { within } from '../support/wait.js';

const quiet = makeLogger('silent');
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A pino logger that keeps its lines, and resolves `when(re)` once one matches. */
function capturing() {
  const lines: string[] = [];
  const waiting: Array<{ re: RegExp; resolve: (l: string) => void }> = [];
  const logger = makeLogger('error', {
    write: (l: string) => {
      lines.push(l);
      for (const w of waiting.filter((w) => w.re.test(l))) {
        waiting.splice(waiting.indexOf(w), 1);
        w.resolve(l);
      }
    },
  });
  const when = (re: RegExp, ms = 5000): Promise<string> => {
    const seen = lines.find((l) => re.test(l));
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no log line matching ${re} within ${ms} ms`)), ms);
      waiting.push({
        re,
        resolve: (l) => {
          clearTimeout(timer);
          resolve(l);
        },
      });
    });
  };
  return { logger, lines, when };
}

/** Collects every unhandledRejection while a spec runs. */
function watchUnhandled(): { seen: unknown[] } {
  const w = { seen: [] as unknown[] };
  const listener = (reason: unknown) => w.seen.push(reason);
  beforeEach(() => {
    w.seen.length = 0;
    process.on('unhandledRejection', listener);
  });
  afterEach(async () => {
    // Node reports an unhandled rejection after the microtasks of the turn it happened in: let one more turn pass.
    await new Promise<void>((r) => setImmediate(r));
    process.off('unhandledRejection', listener);
  });
  return w;
}

describe('processor.use: next() and the outcome', function () {
  this.timeout(20_000);
  const f = exchangeFixture('mwnext');
  const unhandled = watchUnhandled();

  it('waits for a next() not awaited: a handler failing 200 ms later sends it to the error queue', async () => {
    const errors = unique('mwnext-errors');
    f.h.onClose(() => deleteTopology([errors], [errors]));
    class Late extends MessageProcessor {
      @MessageHandler('command', 'job')
      async job() {
        await sleep(200);
        throw new Error('failed after 200 ms');
      }
    }
    const p = new Late({ url: f.url, logger: quiet, errorExchange: errors, eqk: [[f.ex, [[f.queue, 'k']]]] });
    p.use(async (_ctx, next) => {
      void next();
    });
    const ended = deferred<DeliveryEvent>();
    p.observe((e) => ended.resolve(e));
    await f.h.start(p);
    const send = await f.producer();
    await send.message_job({});
    const e = await ended.promise;
    expect(e.outcome).to.equal('dead-lettered');
    expect((e.error as Error).message).to.equal('failed after 200 ms');
    const copy = await getOne(errors);
    if (copy === false) throw new Error('expected the failed message in the error queue, found none');
    expect(copy.properties.headers?.['x-error-message']).to.equal('failed after 200 ms');
    await new Promise<void>((r) => setImmediate(r));
    expect(unhandled.seen).to.deep.equal([]);
  });

  it('rejects (without an error exchange) what such a handler failed, rather than acking it', async () => {
    class Late extends MessageProcessor {
      @MessageHandler('command', 'job')
      async job() {
        await sleep(200);
        throw new Error('failed after 200 ms');
      }
    }
    const p = new Late({ url: f.url, logger: quiet, eqk: [[f.ex, [[f.queue, 'k']]]] });
    p.use((_ctx, next) => {
      void next();
    });
    const ended = deferred<DeliveryEvent>();
    p.observe((e) => ended.resolve(e));
    await f.h.start(p);
    const send = await f.producer();
    await send.message_job({});
    expect((await ended.promise).outcome).to.equal('rejected');
    expect(unhandled.seen).to.deep.equal([]);
  });

  it('publishes what a handler behind an unawaited next() sends before the delivery is acked', async () => {
    const { producer: o, queue: outQueue } = await f.output();
    class Relays extends MessageProcessor {
      @MessageHandler('command', 'job')
      async job() {
        await sleep(300);
        await o.message_done({});
      }
    }
    const p = new Relays({ url: f.url, logger: quiet, eqk: [[f.ex, [[f.queue, 'k']]]] });
    p.use((_ctx, next) => {
      void next();
    });
    // Read as the delivery is settled: what was sent on its behalf must be on the broker by then.
    const atSettle = deferred<{ outcome: string; waiting: number }>();
    p.observe((e) => {
      void queueState(outQueue).then((s) => atSettle.resolve({ outcome: e.outcome, waiting: s.messages }));
    });
    await f.h.start(p);
    const send = await f.producer();
    await send.message_job({});
    expect(await atSettle.promise).to.deep.equal({ outcome: 'acked', waiting: 1 });
    expect(unhandled.seen).to.deep.equal([]);
  });

  it('runs nothing for a next() called from a timer after the middleware returned, and logs an error', async () => {
    const log = capturing();
    let ran = 0;
    class Job extends MessageProcessor {
      @MessageHandler('command', 'job')
      job() {
        ran++;
      }
    }
    const p = new Job({ url: f.url, logger: log.logger, eqk: [[f.ex, [[f.queue, 'k']]]] });
    const late = deferred<PromiseSettledResult<void>>();
    p.use(function tooLate(_ctx, next) {
      setTimeout(() => void Promise.allSettled([next()]).then(([r]) => late.resolve(r)), 50);
    });
    const ended = deferred<DeliveryEvent>();
    p.observe((e) => ended.resolve(e));
    await f.h.start(p);
    const send = await f.producer();
    await send.message_job({});
    // It returned without calling next(): handled, without its handler.
    expect((await ended.promise).outcome).to.equal('acked');
    const r = await late.promise;
    expect(r.status).to.equal('rejected');
    expect(((r as PromiseRejectedResult).reason as Error).message).to.match(/tooLate.*after it returned/);
    const line = JSON.parse(await log.when(/called next\(\) after it returned/)) as { level: number; msg: string };
    expect(line.level).to.equal(50);
    expect(line.msg).to.contain('middleware #1 (tooLate)');
    expect(ran).to.equal(0);
    expect(unhandled.seen).to.deep.equal([]);
  });

  it('names an anonymous middleware by its position', async () => {
    const log = capturing();
    class Job extends MessageProcessor {
      @MessageHandler('command', 'job')
      job() {}
    }
    const p = new Job({ url: f.url, logger: log.logger, eqk: [[f.ex, [[f.queue, 'k']]]] });
    p.use(async (_ctx, next) => {
      await next();
    });
    const held: Array<() => Promise<void>> = [];
    p.use(((_ctx, next) => {
      held.push(next);
    }) as Parameters<typeof p.use>[0]);
    const ended = deferred<DeliveryEvent>();
    p.observe((e) => ended.resolve(e));
    await f.h.start(p);
    const send = await f.producer();
    await send.message_job({});
    await ended.promise;
    await held[0]().catch(() => undefined);
    expect(await log.when(/called next\(\) after it returned/)).to.match(/middleware #2 \(anonymous\)/);
    expect(unhandled.seen).to.deep.equal([]);
  });

  it('fails a delivery whose handler failed even where a middleware caught the failure of next()', async () => {
    class Fails extends MessageProcessor {
      @MessageHandler('command', 'job')
      job() {
        throw new Error('handler failed');
      }
    }
    const p = new Fails({ url: f.url, logger: quiet, eqk: [[f.ex, [[f.queue, 'k']]]] });
    p.use(async (_ctx, next) => {
      await next().catch(() => undefined);
    });
    const ended = deferred<DeliveryEvent>();
    p.observe((e) => ended.resolve(e));
    await f.h.start(p);
    const send = await f.producer();
    await send.message_job({});
    const e = await ended.promise;
    expect(e.outcome).to.equal('rejected');
    expect((e.error as Error).message).to.equal('handler failed');
  });
});

describe('producer.use: next() and the outcome', function () {
  this.timeout(20_000);
  const f = exchangeFixture('pmwnext');
  const unhandled = watchUnhandled();

  it('settles a send by its publish, not by a middleware that left next() unawaited: unroutable rejects', async () => {
    // Nothing is bound to the exchange: the broker returns the message, the send fails with UNROUTABLE.
    const send = await f.producer();
    send.use((_s, next) => {
      void next();
    });
    const err = await send.message_job({}).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(BrokerError);
    expect((err as BrokerError).code).to.equal('UNROUTABLE');
    expect(unhandled.seen).to.deep.equal([]);
  });

  it('publishes nothing for a next() called after the middleware returned, and logs an error naming it', async () => {
    const log = capturing();
    const queue = unique('pmwnext-q');
    f.h.onClose(() => deleteTopology([queue]));
    const send = await f.producer({ logger: log.logger });
    const ch = await send.connection!.createChannel();
    await ch.assertQueue(queue, { durable: false });
    await ch.bindQueue(queue, f.ex.name, 'k');
    await ch.close();
    const late = deferred<{ call: Promise<void> }>();
    send.use(function stamps(_s, next) {
      setTimeout(() => late.resolve({ call: next() }), 20);
    });
    expect(await send.message_job({})).to.equal(undefined);
    await (await within(late.promise, { message: 'the late next() called' })).call.catch(() => undefined);
    expect(await log.when(/producer middleware #1 \(stamps\) called next\(\) after it returned/)).to.contain(
      '"level":50',
    );
    expect(await aheadOfFence(queue)).to.deep.equal([]);
    expect(unhandled.seen).to.deep.equal([]);
  });
});
