import { expect } from 'chai';
import {
  currentDelivery,
  GenericProducer,
  MemoryIdempotencyStore,
  MessageHandler,
  MessageProcessor,
  type DeliveryEvent,
  type IdempotencyStore,
  type MessageSender,
} from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import { deferred, exchangeFixture } from '../support/components.js';
import { deleteTopology, getOne, queueState, settledQueue, unique } from '../support/topology.js';
import { within } from '../support/wait.js';

const quiet = makeLogger('silent');

describe("A handler's sends (the outbox)", function () {
  this.timeout(30_000);
  const f = exchangeFixture('outbox');
  let out: { name: string; type: 'direct'; durable: false };
  let outQueue: string;

  beforeEach(() => {
    out = { name: unique('outbox-out'), type: 'direct', durable: false };
    outQueue = unique('outbox-out-q');
    f.h.onClose(() => deleteTopology([outQueue], [out.name]));
  });

  async function producers() {
    const input = f.ex;
    const output = out;
    class In extends GenericProducer {
      static override eks = [[input, 'k'] as const];
      declare message_job: MessageSender;
    }
    class Out extends GenericProducer {
      static override eks = [[output, 'out'] as const];
      declare message_done: MessageSender;
    }
    const p = await In.create({ url: f.url });
    const o = await Out.create({ url: f.url });
    f.h.onClose(() => p.close());
    f.h.onClose(() => o.close());
    return { p, o };
  }

  /** Declares the output queue and collects what reaches it. */
  async function collector() {
    const got: Array<{ n: number; causation: unknown; conversation: unknown }> = [];
    const waiters: Array<{ n: number; resolve: () => void }> = [];
    class Collector extends MessageProcessor {
      @MessageHandler('command', 'done')
      done(c: { parameters: { n: number } }) {
        const d = currentDelivery()!;
        got.push({ n: c.parameters.n, causation: d.causationId, conversation: d.conversationId });
        for (const w of waiters.filter((x) => got.length >= x.n)) w.resolve();
      }
    }
    await f.h.start(new Collector({ url: f.url, logger: quiet, eqk: [[out, [[outQueue, 'out']]]] }));
    return {
      got,
      count: (n: number) =>
        new Promise<void>((resolve) => (got.length >= n ? resolve() : waiters.push({ n, resolve }))),
    };
  }

  it('sends nothing for a handler that sends three messages and then throws', async () => {
    const errors = unique('outbox-errors');
    f.h.onClose(() => deleteTopology([errors], [errors]));
    const { p, o } = await producers();
    // The output queue exists, and nobody consumes it: whatever was sent stays there to be counted.
    class Idle extends MessageProcessor {}
    const idle = new Idle({ url: f.url, logger: quiet, handleSignals: false, eqk: [[out, [[outQueue, 'out']]]] });
    await idle.consumer.ready();
    f.h.onClose(() => idle.close());
    class Fails extends MessageProcessor {
      @MessageHandler('command', 'job')
      async job() {
        for (let n = 0; n < 3; n++) await o.message_done({ n });
        throw new Error('after the sends');
      }
    }
    await f.h.start(new Fails({ url: f.url, logger: quiet, errorExchange: errors, eqk: [[f.ex, [[f.queue, 'k']]]] }));
    await p.message_job({});
    expect(await getOne(errors, 10_000)).to.not.equal(false);
    expect(await queueState(outQueue)).to.include({ messages: 0 });
  });

  it('sends all three of a handler that succeeds, with its conversation, and acks after them', async () => {
    const { p, o } = await producers();
    const c = await collector();
    class Works extends MessageProcessor {
      @MessageHandler('command', 'job')
      *job() {
        for (let n = 0; n < 3; n++) yield o.message_done({ n });
      }
    }
    await f.h.start(new Works({ url: f.url, logger: quiet, eqk: [[f.ex, [[f.queue, 'k']]]] }));
    await p.message_job({}, { _message_id: 'job-1' });
    await c.count(3);
    expect(c.got.map((g) => g.n).sort()).to.deep.equal([0, 1, 2]);
    expect(c.got.every((g) => g.causation === 'job-1' && g.conversation === 'job-1')).to.equal(true);
    expect(await settledQueue(f.queue)).to.deep.equal({ consumers: 1, ready: 0, unacked: 0 });
  });

  /** A producer to an exchange of its own that no queue is bound to, closed after the test. */
  async function toNowhere() {
    const nowhere = { name: unique('outbox-nowhere'), type: 'direct', durable: false } as const;
    class Nowhere extends GenericProducer {
      static override eks = [[nowhere, 'none'] as const];
      declare message_lost: MessageSender;
    }
    const n = await Nowhere.create({ url: f.url });
    f.h.onClose(() => n.close());
    return { n, nowhere };
  }

  it('does not ack a delivery whose sends the broker did not take (an exchange deleted meanwhile): it is handled again', async () => {
    const { p } = await producers();
    const { n, nowhere } = await toNowhere();
    // Gone after the producer declared it: its publish closes the channel with NOT_FOUND, after the handler.
    await deleteTopology([], [nowhere.name]);
    const redelivered: boolean[] = [];
    const twice = deferred();
    class SendsNowhere extends MessageProcessor {
      @MessageHandler('command', 'job')
      async job() {
        redelivered.push(currentDelivery()!.redelivered);
        await n.message_lost({});
        if (redelivered.length === 2) twice.resolve();
      }
    }
    await f.h.start(new SendsNowhere({ url: f.url, logger: quiet, maxDeliveries: 2, eqk: [[f.ex, [[f.queue, 'k']]]] }));
    await p.message_job({});
    await twice.promise;
    // The broker gave it again: the first delivery was not acked, because its send failed after the handler. The
    // second failed the same way, and the third was past maxDeliveries: rejected, not handled, nothing left.
    expect(await settledQueue(f.queue)).to.deep.equal({ consumers: 1, ready: 0, unacked: 0 });
    expect(redelivered).to.deep.equal([false, true]);
  });

  it('fails a delivery at once whose send no queue takes: to the error exchange as UNROUTABLE naming the target, not after its redeliveries', async () => {
    const { p } = await producers();
    const errors = unique('outbox-errors');
    f.h.onClose(() => deleteTopology([errors], [errors]));
    const { n, nowhere } = await toNowhere();
    f.h.onClose(() => deleteTopology([], [nowhere.name]));
    let runs = 0;
    class SendsUnroutable extends MessageProcessor {
      @MessageHandler('command', 'job')
      async job() {
        runs++;
        // A command no queue takes: UNROUTABLE when it is published, after the handler.
        await n.message_lost({});
      }
    }
    const proc = new SendsUnroutable({
      url: f.url,
      logger: quiet,
      errorExchange: errors,
      eqk: [[f.ex, [[f.queue, 'k']]]],
    });
    const ended = deferred<DeliveryEvent>();
    proc.observe((e) => ended.resolve(e));
    await f.h.start(proc);
    await p.message_job({});
    const e = await ended.promise;
    expect(e.outcome).to.equal('dead-lettered');
    expect(runs).to.equal(1);
    const copy = await getOne(errors);
    expect(copy).to.not.equal(false);
    const headers = (copy as Exclude<typeof copy, false>).properties.headers!;
    expect(headers['x-error-name']).to.equal('UNROUTABLE');
    expect(String(headers['x-error-message'])).to.include(nowhere.name);
  });

  /** A handler run twice, its first run failing after three sends: only the second run's sends go out. */
  async function onlyTheSucceedingRunSends(
    job: (o: Awaited<ReturnType<typeof producers>>['o'], run: number) => unknown,
  ): Promise<void> {
    const { p, o } = await producers();
    const c = await collector();
    let runs = 0;
    class FailsOnce extends MessageProcessor {
      @MessageHandler('command', 'job')
      job() {
        return job(o, ++runs);
      }
    }
    await f.h.start(
      new FailsOnce({
        url: f.url,
        logger: quiet,
        retry: { attempts: 2, backoffMs: 1 },
        eqk: [[f.ex, [[f.queue, 'k']]]],
      }),
    );
    await p.message_job({});
    await c.count(3);
    // Nothing more is on its way: the handled delivery is acked, and the collector's queue holds no more.
    expect(await settledQueue(f.queue)).to.deep.equal({ consumers: 1, ready: 0, unacked: 0 });
    expect(c.got.map((g) => g.n).sort()).to.deep.equal([20, 21, 22]);
  }

  it('sends only what the run that succeeds sent, when a retry follows a failure', () =>
    onlyTheSucceedingRunSends(async (o, run) => {
      for (let n = 0; n < 3; n++) await o.message_done({ n: run * 10 + n });
      if (run === 1) throw new Error('first run fails');
    }));

  it('holds the sends of a plain (not async) handler the same way: a run that throws at once sends nothing', () =>
    onlyTheSucceedingRunSends((o, run) => {
      // Not awaited (a plain handler cannot): held by the run's outbox all the same.
      for (let n = 0; n < 3; n++) void o.message_done({ n: run * 10 + n }).catch(() => undefined);
      if (run === 1) throw new Error('first run fails');
    }));

  it('sends at once with _outbox: false, and with outbox: false on the processor, whatever the handler does next', async () => {
    const { p, o } = await producers();
    const c = await collector();
    class Eager extends MessageProcessor {
      @MessageHandler('command', 'job')
      async job() {
        await o.message_done({ n: 1 }, { _outbox: false });
        throw new Error('after the send');
      }
    }
    await f.h.start(new Eager({ url: f.url, logger: quiet, eqk: [[f.ex, [[f.queue, 'k']]]] }));
    await p.message_job({});
    await c.count(1);
    class NoOutbox extends MessageProcessor {
      @MessageHandler('command', 'job')
      async job() {
        await o.message_done({ n: 2 });
        throw new Error('after the send');
      }
    }
    await f.h.start(
      new NoOutbox({ url: f.url, logger: quiet, outbox: false, eqk: [[f.ex, [[unique('outbox-q2'), 'k2']]]] }),
    );
    await p.message_job({}, { _key: 'k2' });
    await c.count(2);
    expect(c.got.map((g) => g.n)).to.deep.equal([1, 2]);
  });
});

describe('deduplicate', function () {
  this.timeout(20_000);
  const f = exchangeFixture('dedupe');

  it('handles a message id once: a duplicate is acked without running its handlers', async () => {
    const seen: number[] = [];
    const last = deferred();
    class Once extends MessageProcessor {
      @MessageHandler('command', 'job')
      job(c: { parameters: { n: number } }) {
        seen.push(c.parameters.n);
        if (c.parameters.n === 3) last.resolve();
      }
    }
    await f.h.start(new Once({ url: f.url, logger: quiet, deduplicate: true, eqk: [[f.ex, [[f.queue, 'k']]]] }));
    const p = await f.producer();
    await p.message_job({ n: 1 }, { _message_id: 'a' });
    await p.message_job({ n: 2 }, { _message_id: 'a' });
    await p.message_job({ n: 3 }, { _message_id: 'b' });
    await last.promise;
    expect(seen).to.deep.equal([1, 3]);
    expect(await settledQueue(f.queue)).to.deep.equal({ consumers: 1, ready: 0, unacked: 0 });
  });

  it('runs a message id once when a copy of it arrives while its first run is in flight (concurrency 2)', async () => {
    const runs: number[] = [];
    const gate = deferred();
    const started = deferred();
    class Once extends MessageProcessor {
      @MessageHandler('command', 'job')
      async job(c: { parameters: { n: number } }) {
        runs.push(c.parameters.n);
        started.resolve();
        await gate.promise;
      }
    }
    const proc = new Once({
      url: f.url,
      logger: quiet,
      deduplicate: true,
      concurrency: 2,
      eqk: [[f.ex, [[f.queue, 'k']]]],
    });
    const events: DeliveryEvent[] = [];
    const copySettled = deferred();
    const allSettled = deferred();
    proc.observe((e) => {
      events.push(e);
      if (events.length === 1) copySettled.resolve();
      if (events.length === 3) allSettled.resolve();
    });
    await f.h.start(proc);
    const p = await f.producer();
    await p.message_job({ n: 1 }, { _message_id: 'twice' });
    await started.promise;
    // The copy (a redelivery, a publish repeated after a lost confirm) while the first run holds the id.
    await p.message_job({ n: 2 }, { _message_id: 'twice' });
    await within(copySettled.promise, {
      timeout: 10_000,
      message: () => `the copy settled unrun while the first run is in flight (runs so far: ${runs})`,
    });
    expect(events[0].outcome, 'the copy that found the id claimed').to.equal('deferred');
    expect(runs).to.deep.equal([1]);
    gate.resolve();
    // The first run acks; the copy comes back, finds the id handled, and is dropped (acked unrun).
    await within(allSettled.promise, { timeout: 10_000, message: 'the first run and the returning copy settled' });
    expect(events.map((e) => e.outcome)).to.deep.equal(['deferred', 'acked', 'acked']);
    expect(runs, 'the handler ran once').to.deep.equal([1]);
    expect(await settledQueue(f.queue)).to.deep.equal({ consumers: 1, ready: 0, unacked: 0 });
  });

  it('asks a store of its own with <processor name>/<message id> keys, remembering only what succeeded', async () => {
    const calls: string[] = [];
    const mem = new MemoryIdempotencyStore();
    const store: IdempotencyStore = {
      seen: async (k) => (calls.push(`seen ${k}`), mem.seen(k)),
      remember: async (k) => void (calls.push(`remember ${k}`), mem.remember(k)),
    };
    const done = deferred();
    class Store extends MessageProcessor {
      @MessageHandler('command', 'job')
      job(c: { parameters: { ok: boolean } }) {
        if (!c.parameters.ok) throw new Error('fails');
        done.resolve();
      }
    }
    await f.h.start(
      new Store({
        url: f.url,
        logger: quiet,
        deduplicate: store,
        fingerprint: { name: 'store-spec' },
        eqk: [[f.ex, [[f.queue, 'k']]]],
      }),
    );
    const p = await f.producer();
    await p.message_job({ ok: false }, { _message_id: 'x' });
    await p.message_job({ ok: true }, { _message_id: 'y' });
    await done.promise;
    await new Promise((r) => setImmediate(r));
    expect(calls).to.deep.equal(['seen store-spec/x', 'seen store-spec/y', 'remember store-spec/y']);
  });
});

describe('MemoryIdempotencyStore', () => {
  it('forgets the oldest keys past its size, and keys past their time', () => {
    const s = new MemoryIdempotencyStore({ max: 2, ttlMs: 60_000 });
    s.remember('a');
    s.remember('b');
    s.remember('c');
    expect([s.seen('a'), s.seen('b'), s.seen('c'), s.size]).to.deep.equal([false, true, true, 2]);
    const t = new MemoryIdempotencyStore({ ttlMs: 1 });
    t.remember('a');
    const until = Date.now() + 5;
    while (Date.now() < until);
    expect(t.seen('a')).to.equal(false);
  });

  it('claims an id for one run: busy to others until released, seen once remembered', () => {
    const s = new MemoryIdempotencyStore();
    const first = s.claim('p/1', { runMs: 200 });
    expect(first.state).to.equal('claimed');
    expect(s.claim('p/1')).to.deep.equal({ state: 'busy' });
    s.release('p/1', 'not-its-token');
    expect(s.claim('p/1'), 'a release by another claim does nothing').to.deep.equal({ state: 'busy' });
    s.release('p/1', (first as { token: string }).token);
    expect(s.claimed).to.equal(0);
    const again = s.claim('p/1');
    expect(again.state).to.equal('claimed');
    expect(s.seen('p/1'), 'a claim is not a handled id').to.equal(false);
    s.remember('p/1');
    expect([s.claimed, s.size]).to.deep.equal([0, 1]);
    expect(s.claim('p/1')).to.deep.equal({ state: 'seen' });
  });

  it('refuses a size or time it cannot use', () => {
    expect(() => new MemoryIdempotencyStore({ max: 0 })).to.throw(TypeError, /max must be a whole number/);
    expect(() => new MemoryIdempotencyStore({ ttlMs: -1 })).to.throw(TypeError, /ttlMs must be a positive number/);
  });
});
