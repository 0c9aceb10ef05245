import { expect } from 'chai';
import { currentDelivery, DeferMessage, MessageHandler, MessageProcessor, RpcHandler } from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import { deferred, exchangeFixture } from '../support/components.js';
import { deleteTopology, getOne, settledQueue, unique } from '../support/topology.js';
import { RECHECK_MS } from '../../lib/topology/delay.js';

const quiet = makeLogger('silent');

describe('Delayed delivery', function () {
  this.timeout(30_000);
  const f = exchangeFixture('delay');

  describe('_delay', () => {
    it('holds a message in the broker for its delay, then routes it with its own routing key; never early', async () => {
      const got = deferred<{ at: number; key: string; n: number }>();
      class Late extends MessageProcessor {
        @MessageHandler('command', 'job')
        job(c: { parameters: { n: number } }) {
          got.resolve({ at: Date.now(), key: currentDelivery()!.routingKey, n: c.parameters.n });
        }
      }
      await f.h.start(new Late({ url: f.url, logger: quiet, eqk: [[f.ex, [[f.queue, 'k']]]] }));
      const p = await f.producer();
      const sent = Date.now();
      // 1337 ms: several bits set, so several levels on the way.
      await p.message_job({ n: 7 }, { _delay: 1337 });
      const r = await got.promise;
      expect(r.at - sent).to.be.at.least(1337);
      // A generous sanity bound: a few ms per level is expected.
      expect(r.at - sent).to.be.below(1337 + 1500);
      expect(r.key).to.equal('k');
      expect(r.n).to.equal(7);
    });

    it('delivers messages with different delays in the order they fall due', async () => {
      const order: number[] = [];
      const done = deferred();
      class Ordered extends MessageProcessor {
        @MessageHandler('command', 'job')
        job(c: { parameters: { n: number } }) {
          order.push(c.parameters.n);
          if (order.length === 4) done.resolve();
        }
      }
      await f.h.start(new Ordered({ url: f.url, logger: quiet, eqk: [[f.ex, [[f.queue, 'k']]]] }));
      const p = await f.producer();
      await Promise.all([
        p.message_job({ n: 3 }, { _delay: 900 }),
        p.message_job({ n: 1 }, { _delay: 100 }),
        p.message_job({ n: 0 }),
        p.message_job({ n: 2 }, { _delay: 500 }),
      ]);
      await done.promise;
      expect(order).to.deep.equal([0, 1, 2, 3]);
    });

    it('survives its sender: the send resolves once the broker holds the message', async () => {
      const p = await f.producer();
      await p.message_job({ n: 1 }, { _delay: 300 });
      await p.close();
      // Nobody consumes yet: the queue exists (declared here), and the message lands in it when due.
      class Nobody extends MessageProcessor {}
      const consumer = new Nobody({ url: f.url, logger: quiet, eqk: [[f.ex, [[f.queue, 'k']]]], handleSignals: false });
      await consumer.consumer.ready();
      f.h.onClose(() => consumer.close());
      const m = await getOne(f.queue, 5000);
      expect(m && JSON.parse(m.content.toString()).content).to.deep.equal({ parameters: { n: 1 } });
    });

    it('refuses a bad delay, a delay with _expiration, and the default exchange, with a TypeError naming the option', async () => {
      const p = await f.producer();
      for (const bad of [-1, 1.5, 2 ** 32, Number.NaN]) {
        const err = await p.message_job({}, { _delay: bad }).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).to.be.instanceOf(TypeError);
        expect((err as Error).message).to.match(/^_delay must be a whole number of milliseconds/);
      }
      const both = await p.message_job({}, { _delay: 10, _expiration: 100 }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect((both as Error).message).to.match(/_delay and _expiration cannot go together/);
      const dflt = await p.message_job({}, { _delay: 10, _eks: [[{ name: '', type: 'direct' }, f.queue]] }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect((dflt as Error).message).to.match(/_delay needs a named exchange/);
    });
  });

  describe('delay levels an operator deleted', () => {
    /** A processor that records when each job came; a producer; and the levels declared by a first delayed send. */
    async function setUp() {
      const arrived: Array<{ n: number; at: number }> = [];
      const waiting = new Map<number, (at: number) => void>();
      class Late extends MessageProcessor {
        @MessageHandler('command', 'job')
        job(c: { parameters: { n: number } }) {
          const at = Date.now();
          arrived.push({ n: c.parameters.n, at });
          waiting.get(c.parameters.n)?.(at);
        }
      }
      await f.h.start(new Late({ url: f.url, logger: quiet, eqk: [[f.ex, [[f.queue, 'k']]]] }));
      const p = await f.producer();
      const arrival = (n: number) => new Promise<number>((resolve) => waiting.set(n, resolve));
      const first = arrival(0);
      await p.message_job({ n: 0 }, { _delay: 5 });
      await first;
      return { p, arrival, arrived };
    }

    it('never delivers early after a level queue was deleted between sends: the send finds it missing and declares the levels again', async () => {
      const { p, arrival } = await setUp();
      await deleteTopology(['postage.delay.9']);
      // 600 ms: bits 9, 6, 4 and 3. Without level 9, the broker would route it past that level (88 ms).
      const got = arrival(1);
      const sent = Date.now();
      await p.message_job({ n: 1 }, { _delay: 600 });
      expect((await got) - sent).to.be.at.least(600);
    });

    it('never loses a message after a level exchange was deleted between sends: the levels are declared again before they are used', async () => {
      const { p, arrival } = await setUp();
      await deleteTopology([], ['postage.delay.8']);
      // Level 9 dead-letters into level 8's exchange: gone, the broker would drop the message there.
      // The next delayed send past the recheck time declares the levels again.
      await new Promise((r) => setTimeout(r, RECHECK_MS + 50));
      const got = arrival(2);
      const sent = Date.now();
      await p.message_job({ n: 2 }, { _delay: 600 });
      expect((await got) - sent).to.be.at.least(600);
    });
    it('never hands a deferred message back early after a level queue was deleted: the defer finds it missing too', async () => {
      const runs: number[] = [];
      const done = deferred();
      class Deferring extends MessageProcessor {
        @MessageHandler('command', 'job')
        async job() {
          runs.push(Date.now());
          // The first defer declares the levels on the processor's channel; then level 9 goes.
          if (runs.length === 1) throw new DeferMessage(5);
          if (runs.length === 2) {
            await deleteTopology(['postage.delay.9']);
            runs[1] = Date.now();
            throw new DeferMessage(600);
          }
          done.resolve();
        }
      }
      await f.h.start(new Deferring({ url: f.url, logger: quiet, eqk: [[f.ex, [[f.queue, 'k']]]] }));
      await (await f.producer()).message_job({});
      await done.promise;
      expect(runs[2] - runs[1]).to.be.at.least(600);
    });
  });

  describe('DeferMessage', () => {
    it('sends the message back to its own queue after the delay, counting the defers in a header', async () => {
      const runs: Array<{ at: number; deferrals: unknown }> = [];
      const done = deferred();
      class Deferring extends MessageProcessor {
        @MessageHandler('command', 'job')
        job() {
          runs.push({ at: Date.now(), deferrals: currentDelivery()!.headers['postage-deferrals'] });
          if (runs.length < 3) throw new DeferMessage(250, 'not yet');
          done.resolve();
        }
      }
      await f.h.start(new Deferring({ url: f.url, logger: quiet, eqk: [[f.ex, [[f.queue, 'k']]]] }));
      await (await f.producer()).message_job({});
      await done.promise;
      expect(runs.map((r) => r.deferrals)).to.deep.equal([undefined, 1, 2]);
      expect(runs[1].at - runs[0].at).to.be.at.least(250);
      expect(runs[2].at - runs[1].at).to.be.at.least(250);
      // Each deferred original was acked once the broker held its copy: nothing is left ready or unacked.
      expect(await settledQueue(f.queue)).to.deep.equal({ consumers: 1, ready: 0, unacked: 0 });
    });

    it('goes to that queue alone, not to the other queues bound to its exchange', async () => {
      const other = unique('delay-other');
      f.h.onClose(() => deleteTopology([other]));
      let otherRuns = 0;
      let runs = 0;
      const done = deferred();
      class Deferring extends MessageProcessor {
        @MessageHandler('command', 'job')
        job() {
          if (++runs === 1) throw new DeferMessage(100);
          done.resolve();
        }
      }
      class Other extends MessageProcessor {
        @MessageHandler('command', 'job')
        job() {
          otherRuns++;
        }
      }
      await f.h.start(
        new Deferring({ url: f.url, logger: quiet, eqk: [[f.ex, [[f.queue, 'k']]]] }),
        new Other({ url: f.url, logger: quiet, eqk: [[f.ex, [[other, 'k']]]] }),
      );
      await (await f.producer()).message_job({});
      await done.promise;
      expect(runs).to.equal(2);
      expect(otherRuns).to.equal(1);
    });

    it('answers a deferred RPC when it is handled again', async () => {
      let runs = 0;
      class Later extends MessageProcessor {
        @RpcHandler('command', 'ask')
        ask() {
          if (++runs === 1) throw new DeferMessage(200);
          return 'now';
        }
      }
      await f.h.start(new Later({ url: f.url, logger: quiet, eqk: [[f.ex, [[f.queue, 'k']]]] }));
      const r = await (await f.producer()).rpc_ask({}, { _timeout: 10, _max_retry: 0 });
      expect(r.body.content.value).to.equal('now');
      expect(runs).to.equal(2);
    });

    it('refuses a delay it cannot hold when it is made', () => {
      expect(() => new DeferMessage(-5)).to.throw(TypeError, /DeferMessage needs a whole number of milliseconds/);
    });
  });

  describe('retry.delays', () => {
    it('retries through the broker after the immediate runs, then sends to the error exchange with every run counted and the last error', async () => {
      const errors = unique('delay-errors');
      f.h.onClose(() => deleteTopology([errors], [errors]));
      const runs: Array<{ at: number; retries: unknown }> = [];
      class Failing extends MessageProcessor {
        @MessageHandler('command', 'job')
        job() {
          runs.push({ at: Date.now(), retries: currentDelivery()!.headers['postage-retries'] });
          throw new Error(`run ${runs.length} failed`);
        }
      }
      await f.h.start(
        new Failing({
          url: f.url,
          logger: quiet,
          errorExchange: errors,
          retry: { attempts: 2, backoffMs: 1, delays: [200, 400] },
          eqk: [[f.ex, [[f.queue, 'k']]]],
        }),
      );
      await (await f.producer()).message_job({ n: 1 });
      const dead = await getOne(errors, 10_000);
      expect(dead, 'a dead letter').to.not.equal(false);
      const h = (dead as Exclude<typeof dead, false>).properties.headers!;
      expect(h['x-attempts']).to.equal(6);
      expect(h['x-error-message']).to.equal('run 6 failed');
      expect(h['x-original-exchange']).to.equal(f.ex.name);
      expect(Object.keys(h).filter((k) => k.startsWith('postage-delay-'))).to.deep.equal([]);
      expect(runs.map((r) => r.retries)).to.deep.equal([undefined, undefined, 1, 1, 2, 2]);
      expect(runs[2].at - runs[1].at).to.be.at.least(200);
      expect(runs[4].at - runs[3].at).to.be.at.least(400);
    });

    it('makes the next retry even when the component was restarted in between', async () => {
      const failed = deferred();
      class FailsOnce extends MessageProcessor {
        @MessageHandler('command', 'job')
        job() {
          failed.resolve();
          throw new Error('first run fails');
        }
      }
      const first = new FailsOnce({
        url: f.url,
        logger: quiet,
        handleSignals: false,
        retry: { attempts: 1, delays: [800] },
        eqk: [[f.ex, [[f.queue, 'k']]]],
      });
      await f.h.start(first);
      await (await f.producer()).message_job({ n: 2 });
      await failed.promise;
      await first.close();
      const handled = deferred<{ n: number; retries: unknown }>();
      class Works extends MessageProcessor {
        @MessageHandler('command', 'job')
        job(c: { parameters: { n: number } }) {
          handled.resolve({ n: c.parameters.n, retries: currentDelivery()!.headers['postage-retries'] });
        }
      }
      await f.h.start(
        new Works({
          url: f.url,
          logger: quiet,
          retry: { attempts: 1, delays: [800] },
          eqk: [[f.ex, [[f.queue, 'k']]]],
        }),
      );
      expect(await handled.promise).to.deep.equal({ n: 2, retries: 1 });
    });

    it('refuses a delay it cannot hold when the processor is made', () => {
      class P extends MessageProcessor {}
      expect(
        () => new P({ url: 'amqp://localhost', logger: quiet, handleSignals: false, retry: { delays: [10, -1] } }),
      ).to.throw(TypeError, /retry.delays: each delay must be a whole number/);
    });
  });
});
