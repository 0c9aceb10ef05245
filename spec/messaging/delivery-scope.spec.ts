/**
 * A delivery owns its lifetime: everything done on its behalf (idempotency,
 * schema, middleware, the handler and its sends) runs in one scope, under one
 * time limit, and ends with it.
 */
import { expect } from 'chai';
import type { StandardSchemaV1 } from '@standard-schema/spec';
import {
  currentDelivery,
  Handler,
  HandlerTimeout,
  MessageHandler,
  MessageProcessor,
  PostageError,
  RpcHandler,
  type DeliveryEvent,
  type IdempotencyStore,
} from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import { capture } from '../support/log.js';
import { deferred, exchangeFixture, nextTurn, observed } from '../support/components.js';
import { deleteTopology, getOne, settledQueue, unique } from '../support/topology.js';

const quiet = makeLogger('silent');
const never = <T>(): Promise<T> => new Promise<T>(() => undefined);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

describe("A delivery's scope", function () {
  this.timeout(30_000);
  const f = exchangeFixture('scope');
  /** Resolves with each delivery's event, in order, once `n` are in (under a deadline that says how many came). */
  const events = (p: MessageProcessor, n: number): Promise<DeliveryEvent[]> => {
    const seen = observed(p, n);
    return seen.settled(20_000).then(() => seen.events);
  };

  describe('a run past its time limit', () => {
    it('publishes nothing it sends later: the send rejects with SEND_AFTER_FAILURE, also when a retry runs meanwhile', async () => {
      const { producer: o, queue: outQueue } = await f.output();
      const lateSends: Array<Promise<PromiseSettledResult<unknown>>> = [];
      const settledLate = deferred<PromiseSettledResult<unknown>[]>();
      let runs = 0;
      class Slow extends MessageProcessor {
        @MessageHandler('command', 'job', { timeoutMs: 200 })
        async job() {
          const n = ++runs;
          await sleep(600);
          lateSends.push(Promise.allSettled([o.message_late({ n })]).then(([r]) => r));
          if (lateSends.length === 2) settledLate.resolve(await Promise.all(lateSends));
        }
      }
      const errors = unique('scope-errors');
      f.h.onClose(() => deleteTopology([errors], [errors]));
      const p = new Slow({
        url: f.url,
        logger: quiet,
        errorExchange: errors,
        retry: { attempts: 2, backoffMs: 1 },
        eqk: [[f.ex, [[f.queue, 'k']]]],
      });
      const ended = events(p, 1);
      await f.h.start(p);
      const send = await f.producer();
      await send.message_job({});
      const [e] = await ended;
      expect(e.outcome).to.equal('dead-lettered');
      expect(e.error).to.be.instanceOf(HandlerTimeout);
      const results = await settledLate.promise;
      expect(results.map((r) => r.status)).to.deep.equal(['rejected', 'rejected']);
      for (const r of results) {
        const err = (r as PromiseRejectedResult).reason as PostageError;
        expect(err).to.be.instanceOf(PostageError);
        expect(err.code).to.equal('SEND_AFTER_FAILURE');
        expect(err.message).to.match(/HandlerTimeout/);
      }
      // Nothing reached the output queue: a fence sent after them on the same producer is the first to arrive there
      // (a broker keeps one channel's order into a queue).
      await o.message_late({ n: 'fence' });
      const first = await getOne(outQueue);
      expect(first && JSON.parse(first.content.toString()).content.parameters).to.deep.equal({ n: 'fence' });
    });

    it('aborts currentDelivery().signal (and this.delivery.signal in a Handler class) at the time limit', async () => {
      const aborted = deferred<unknown>();
      const classAborted = deferred<unknown>();
      const untilAborted = (signal: AbortSignal) =>
        new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve()));
      class Waits extends MessageProcessor {
        @MessageHandler('command', 'job', { timeoutMs: 150 })
        async job() {
          const signal = currentDelivery()!.signal;
          expect(signal.aborted).to.equal(false);
          await untilAborted(signal);
          aborted.resolve(signal.reason);
        }

        @MessageHandler('command', 'other', { timeoutMs: 150 })
        static Other = class extends Handler {
          async call() {
            await untilAborted(this.delivery!.signal);
            classAborted.resolve(this.delivery!.signal.reason);
          }
        };
      }
      await f.h.start(new Waits({ url: f.url, logger: quiet, eqk: [[f.ex, [[f.queue, 'k']]]] }));
      const send = await f.producer();
      await send.message_job({});
      await send.message_other({});
      expect(await aborted.promise).to.be.instanceOf(HandlerTimeout);
      expect(await classAborted.promise).to.be.instanceOf(HandlerTimeout);
    });

    it("aborts the signal of a run that failed and will be retried, and not the next run's", async () => {
      const signals: AbortSignal[] = [];
      const second = deferred();
      class Flaky extends MessageProcessor {
        @MessageHandler('command', 'job')
        job() {
          signals.push(currentDelivery()!.signal);
          if (signals.length === 1) throw new Error('first run fails');
          second.resolve();
        }
      }
      await f.h.start(
        new Flaky({ url: f.url, logger: quiet, retry: { attempts: 2, backoffMs: 1 }, eqk: [[f.ex, [[f.queue, 'k']]]] }),
      );
      const send = await f.producer();
      await send.message_job({});
      await second.promise;
      expect(signals[0].aborted).to.equal(true);
      expect((signals[0].reason as Error).message).to.equal('first run fails');
      expect(signals[1].aborted).to.equal(false);
    });

    it("gives a handler without timeoutMs the processor's limit, not a quicker sibling's timeoutMs", async () => {
      const done = deferred();
      class Both extends MessageProcessor {
        @MessageHandler('command', 'job', { timeoutMs: 100 })
        quick() {}
        @MessageHandler('command', 'job')
        async slow() {
          await sleep(400);
          done.resolve();
        }
      }
      const p = new Both({ url: f.url, logger: quiet, handlerTimeoutMs: 5_000, eqk: [[f.ex, [[f.queue, 'k']]]] });
      const first = events(p, 1);
      await f.h.start(p);
      await (await f.producer()).message_job({});
      const [e] = await first;
      expect([e.outcome, (e.error as Error | undefined)?.name]).to.deep.equal(['acked', undefined]);
      await done.promise;
    });
  });

  describe('a processor that closes', () => {
    it('aborts the signal of a run in flight, so a handler waiting on it ends and the delivery settles before close() resolves', async () => {
      const waiting = deferred();
      let reason: unknown;
      class Waits extends MessageProcessor {
        @MessageHandler('command', 'job')
        async job() {
          const signal = currentDelivery()!.signal;
          waiting.resolve();
          await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve()));
          reason = signal.reason;
        }
      }
      const p = new Waits({ url: f.url, logger: quiet, handleSignals: false, eqk: [[f.ex, [[f.queue, 'k']]]] });
      const ended = events(p, 1);
      await f.h.start(p);
      await (await f.producer()).message_job({});
      await waiting.promise;
      await p.close();
      expect(reason).to.not.equal(undefined);
      expect((await ended)[0].outcome).to.equal('acked');
    });
  });

  describe('an abandoned handler', () => {
    it('that rejects after its time limit is logged at debug, never an unhandled rejection', async () => {
      const unhandled: unknown[] = [];
      const onUnhandled = (err: unknown) => unhandled.push(err);
      process.on('unhandledRejection', onUnhandled);
      try {
        const log = capture('debug');
        class Late extends MessageProcessor {
          @MessageHandler('command', 'job', { timeoutMs: 100 })
          async job() {
            await sleep(300);
            throw new Error('too late to matter');
          }
        }
        const p = new Late({ url: f.url, logger: log.logger, eqk: [[f.ex, [[f.queue, 'k']]]] });
        await f.h.start(p);
        await (await f.producer()).message_job({});
        // Logged once handled; an unhandled rejection would be reported by the end of the turn it was made in.
        expect(await log.when(/too late to matter/)).to.contain('after its time limit');
        await nextTurn();
        expect(unhandled).to.deep.equal([]);
      } finally {
        process.off('unhandledRejection', onUnhandled);
      }
    });
  });

  describe('an idempotency store that never answers', () => {
    for (const which of ['seen', 'remember'] as const) {
      it(`does not wedge the processor when ${which}() hangs: every message is handled, and close() resolves`, async () => {
        const store: IdempotencyStore =
          which === 'seen'
            ? { seen: () => never<boolean>(), remember() {} }
            : { seen: () => false, remember: () => never<void>() };
        let handled = 0;
        const all = deferred();
        class Deduped extends MessageProcessor {
          @MessageHandler('command', 'job')
          job() {
            if (++handled === 3) all.resolve();
          }
        }
        const p = new Deduped({
          url: f.url,
          logger: quiet,
          handleSignals: false,
          deduplicate: store,
          handlerTimeoutMs: 300,
          eqk: [[f.ex, [[f.queue, 'k']]]],
        });
        const three = events(p, 3);
        await f.h.start(p);
        const send = await f.producer();
        for (let i = 0; i < 3; i++) await send.message_job({});
        await all.promise;
        expect((await three).map((e) => e.outcome)).to.deep.equal(['acked', 'acked', 'acked']);
        expect(await settledQueue(f.queue)).to.deep.equal({ consumers: 1, ready: 0, unacked: 0 });
        await p.close();
      });
    }
  });

  describe('an async schema that never answers', () => {
    it('fails its delivery with HandlerTimeout at the time limit, and the processor goes on answering', async () => {
      const hangs: StandardSchemaV1<unknown, unknown> = {
        '~standard': { version: 1, vendor: 'spec', validate: () => never() },
      };
      class Checked extends MessageProcessor {
        @MessageHandler('command', 'job', { schema: hangs, timeoutMs: 200 })
        job() {}
        @RpcHandler('command', 'ping')
        ping() {
          return 'pong';
        }
      }
      const p = new Checked({ url: f.url, logger: quiet, eqk: [[f.ex, [[f.queue, 'k']]]] });
      const first = events(p, 1);
      await f.h.start(p);
      const c = await f.producer();
      await c.message_job({});
      const [e] = await first;
      expect(e.outcome).to.equal('rejected');
      expect(e.error).to.be.instanceOf(HandlerTimeout);
      const r = await c.rpc_ping({}, { _timeout: 5, _max_retry: 0 });
      expect(r.body.content.value).to.equal('pong');
    });
  });
});

describe('processor.use (middleware)', function () {
  this.timeout(20_000);
  const f = exchangeFixture('mw');

  it("runs middlewares in the order added, around the handler, inside the delivery's scope", async () => {
    const trace: string[] = [];
    const done = deferred();
    class Audited extends MessageProcessor {
      @MessageHandler('command', 'job')
      job() {
        trace.push(`handler ${currentDelivery()!.messageId === undefined ? 'no id' : 'with id'}`);
      }
    }
    const p = new Audited({ url: f.url, logger: quiet, eqk: [[f.ex, [[f.queue, 'k']]]] });
    p.use(async (ctx, next) => {
      trace.push(`a before ${ctx.message.name} ${ctx.delivery === currentDelivery() ? 'same delivery' : 'other'}`);
      await next();
      trace.push('a after');
    }).use(async (_ctx, next) => {
      trace.push('b before');
      await next();
      trace.push('b after');
    });
    p.observe(() => done.resolve());
    await f.h.start(p);
    const send = await f.producer();
    await send.message_job({});
    await done.promise;
    expect(trace).to.deep.equal(['a before job same delivery', 'b before', 'handler with id', 'b after', 'a after']);
  });

  it('dead-letters a delivery whose middleware throws, without running the handler', async () => {
    const errors = unique('mw-errors');
    f.h.onClose(() => deleteTopology([errors], [errors]));
    let ran = false;
    class Guarded extends MessageProcessor {
      @MessageHandler('command', 'job')
      job() {
        ran = true;
      }
    }
    const p = new Guarded({ url: f.url, logger: quiet, errorExchange: errors, eqk: [[f.ex, [[f.queue, 'k']]]] });
    p.use(() => {
      throw new Error('tenant unknown');
    });
    const seen = observed(p, 1);
    await f.h.start(p);
    const send = await f.producer();
    await send.message_job({});
    await seen.settled();
    const [e] = seen.events;
    expect(e.outcome).to.equal('dead-lettered');
    expect(ran).to.equal(false);
    const copy = await getOne(errors);
    if (copy === false) throw new Error('expected a message in the queue, found none');
    expect(copy.properties.headers?.['x-error-message']).to.equal('tenant unknown');
  });

  it('sees ctx.delivery.signal aborted at the time limit, and the delivery fails with HandlerTimeout', async () => {
    const sawAbort = deferred<boolean>();
    class Slow extends MessageProcessor {
      @MessageHandler('command', 'job', { timeoutMs: 150 })
      job() {}
    }
    const p = new Slow({ url: f.url, logger: quiet, eqk: [[f.ex, [[f.queue, 'k']]]] });
    p.use(async (ctx) => {
      await new Promise<void>((resolve) => ctx.delivery.signal.addEventListener('abort', () => resolve()));
      sawAbort.resolve(ctx.delivery.signal.aborted);
    });
    const seen = observed(p, 1);
    await f.h.start(p);
    const send = await f.producer();
    await send.message_job({});
    await seen.settled();
    const [e] = seen.events;
    expect(e.error).to.be.instanceOf(HandlerTimeout);
    expect(await sawAbort.promise).to.equal(true);
  });

  it('answers an RPC through a middleware, and a middleware that does not call next() answers null without the handler', async () => {
    let handled = 0;
    class Answers extends MessageProcessor {
      @RpcHandler('command', 'twice')
      twice(c: { parameters: { n: number } }) {
        handled++;
        return c.parameters.n * 2;
      }
    }
    const p = new Answers({ url: f.url, logger: quiet, eqk: [[f.ex, [[f.queue, 'k']]]] });
    p.use(async (ctx, next) => {
      if ((ctx.message.content as { parameters: { n: number } }).parameters.n < 0) return;
      await next();
    });
    await f.h.start(p);
    const send = await f.producer();
    expect((await send.rpc_twice({ n: 21 }, { _timeout: 5, _max_retry: 0 })).body.content.value).to.equal(42);
    const skipped = await send.rpc_twice({ n: -1 }, { _timeout: 5, _max_retry: 0 });
    expect(skipped.ok).to.equal(true);
    expect(skipped.body.content.value).to.equal(null);
    expect(handled).to.equal(1);
  });
});

describe('producer.use (middleware)', function () {
  this.timeout(20_000);
  const f = exchangeFixture('pmw');

  it('runs around every send in the order added; a header it sets is read by the consumer through currentDelivery().headers', async () => {
    const got = deferred<Readonly<Record<string, unknown>>>();
    class Reads extends MessageProcessor {
      @MessageHandler('command', 'job')
      job() {
        got.resolve(currentDelivery()!.headers);
      }
      @RpcHandler('command', 'who')
      who() {
        return currentDelivery()!.headers['x-tenant'];
      }
    }
    await f.h.start(new Reads({ url: f.url, logger: quiet, eqk: [[f.ex, [[f.queue, 'k']]]] }));
    const send = await f.producer();
    const order: string[] = [];
    send
      .use(async (s, next) => {
        order.push(`1 ${s.kind} ${s.exchange}/${s.routingKey} ${String(s.message.name)}`);
        s.headers['x-tenant'] = 't1';
        await next();
        order.push('1 after');
      })
      .use(async (s, next) => {
        order.push(`2 sees ${String(s.headers['x-tenant'])}`);
        await next();
      });
    await send.message_job({});
    expect((await got.promise)['x-tenant']).to.equal('t1');
    expect(order).to.deep.equal([`1 message ${f.ex.name}/k job`, '2 sees t1', '1 after']);
    const r = await send.rpc_who({}, { _timeout: 5, _max_retry: 0 });
    expect(r.body.content.value).to.equal('t1');
    expect(order[3]).to.equal(`1 rpc ${f.ex.name}/k who`);
  });
});
