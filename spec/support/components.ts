/** Runs processors on a scheduler for a spec and tears everything down after it. */
import {
  GenericProducer,
  MicroScheduler,
  type DeliveryEvent,
  type MessageProcessor,
  type ProcessorOptions,
  type Producer,
  type ProducerOptions,
} from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import { brokerUrl } from './broker.js';
import { asOperator, deleteTopology, unique } from './topology.js';
import { within } from './wait.js';

export class Harness {
  readonly scheduler = new MicroScheduler({ name: 'spec' });
  running: Promise<void> | undefined;
  readonly closers: Array<() => Promise<unknown>> = [];

  /** Declares the processor's topology, then runs it on the harness's scheduler. */
  async start(...processors: MessageProcessor[]): Promise<void> {
    for (const p of processors) {
      await p.ready();
      this.closers.push(() => p.close());
      this.scheduler.addMicrothread(p);
    }
    this.running ??= this.scheduler.run();
  }

  onClose(fn: () => Promise<unknown>): void {
    this.closers.push(fn);
  }

  async close(): Promise<void> {
    this.scheduler.stop();
    await this.running;
    for (const c of this.closers.reverse()) await c().catch(() => undefined);
  }
}

/** A promise with its resolve function outside, for handlers that report to a spec. */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** Resolves after `n` calls of the returned `hit()`. */
export function counter(n: number): { hit: () => void; done: Promise<void>; count: () => number } {
  let c = 0;
  const d = deferred();
  return {
    hit: () => {
      c++;
      if (c === n) d.resolve();
    },
    done: d.promise,
    count: () => c,
  };
}

/** Drops a processor's connection the way a network failure does: the socket resets, nothing is closed politely. */
export function dropConnection(p: MessageProcessor): void {
  const reset = Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
  (p.consumer.connection!.connection as unknown as { stream: { destroy(err: Error): void } }).stream.destroy(reset);
}

/** Resolves after the current turn of the event loop (microtasks and I/O callbacks run first). */
export function nextTurn(): Promise<void> {
  return new Promise<void>((r) => setImmediate(r));
}

/**
 * A producer sending to the direct exchange `exchange` with `key` (any message_/rpc_ name), for a spec that talks to
 * a component it did not declare itself (one `postage run` started); the caller closes it.
 */
export async function producerTo(url: string, exchange: string, key: string): Promise<Producer<GenericProducer>> {
  const ex = { name: exchange, type: 'direct', durable: false } as const;
  class Client extends GenericProducer {
    static override eks = [[ex, key] as const];
  }
  return Client.create({ url });
}

/** What a spec of one exchange and one queue works with, fresh for each test. */
export interface ExchangeFixture {
  url: string;
  ex: { name: string; type: 'direct' | 'topic'; durable: false };
  queue: string;
  h: Harness;
  /**
   * A producer sending to the fixture's exchange with key 'k' (any message_/rpc_/rpcStream_ name), closed after the
   * test.
   */
  producer(options?: ProducerOptions): Promise<Producer<GenericProducer>>;
  /**
   * A second exchange (direct) with a queue bound to it by `key`, both deleted after the test, and a producer sending
   * to it with `key`: where a handler's own sends go, read with getOne / aheadOfFence.
   */
  output(key?: string): Promise<{ ex: ExchangeFixture['ex']; queue: string; producer: Producer<GenericProducer> }>;
  /**
   * Starts a `P` on the fixture's queue, bound with key 'k' (silent, no signal handling, `options` laid over), closed
   * after the test, with what becomes of its deliveries recorded (see {@link observed}: `settled()` waits for one).
   */
  start<P extends MessageProcessor>(
    P: new (options: ProcessorOptions) => P,
    options?: ProcessorOptions,
  ): Promise<{ proc: P; events: DeliveryEvent[]; settled: (timeout?: number) => Promise<void> }>;
}

/**
 * Registers the hooks of a spec that works on one fresh exchange (direct, or `type`) and queue per test (names from
 * `prefix`), with a Harness closed and the topology deleted after each test. Read the fields inside tests, not at
 * describe time.
 */
export function exchangeFixture(prefix: string, type?: 'direct' | 'topic'): ExchangeFixture;
/** @deprecated The fixture finds the broker, names and cleaner itself: pass the prefix (and the type) only. */
export function exchangeFixture(
  prefix: string,
  url: () => Promise<string>,
  name: (p: string) => string,
  deleteAll: (q: string[], e: string[]) => Promise<void>,
): ExchangeFixture;
export function exchangeFixture(prefix: string, kind?: unknown): ExchangeFixture {
  // Specs written before the fixture found the broker itself pass it (and two helpers) here: a direct exchange.
  const type = kind === 'topic' ? 'topic' : 'direct';
  const f = {
    async producer(options: ProducerOptions = {}) {
      const exchange = f.ex;
      class SpecProducer extends GenericProducer {
        static override eks = [[exchange, 'k'] as const];
      }
      const p = await SpecProducer.create({ url: f.url, ...options });
      f.h.onClose(() => p.close());
      return p;
    },
    async output(key = 'out') {
      const ex = { name: unique(`${prefix}-out`), type: 'direct' as const, durable: false as const };
      const queue = unique(`${prefix}-out-q`);
      f.h.onClose(() => deleteTopology([queue], [ex.name]));
      await asOperator(async (ch) => {
        await ch.assertExchange(ex.name, 'direct', { durable: false });
        await ch.assertQueue(queue, { durable: false });
        await ch.bindQueue(queue, ex.name, key);
      });
      class Out extends GenericProducer {
        static override eks = [[ex, key] as const];
      }
      const producer = await Out.create({ url: f.url });
      f.h.onClose(() => producer.close());
      return { ex, queue, producer };
    },
    async start(P, options = {}) {
      const proc = new P({
        url: f.url,
        logger: makeLogger('silent'),
        handleSignals: false,
        eqk: [[f.ex, [[f.queue, 'k']]]],
        ...options,
      });
      const seen = observed(proc, 1);
      await f.h.start(proc);
      return { proc, ...seen };
    },
  } as ExchangeFixture;
  before(async () => {
    f.url = await brokerUrl();
  });
  beforeEach(() => {
    f.ex = { name: unique(`${prefix}-ex`), type, durable: false };
    f.queue = unique(`${prefix}-q`);
    f.h = new Harness();
  });
  afterEach(async () => {
    await f.h.close();
    await deleteTopology([f.queue], [f.ex.name]).catch(() => undefined);
  });
  return f;
}

/** What a spec of one processor on one exchange, its work queue and its error exchange works with. */
export interface ProcessorFixture {
  url: string;
  ex: { name: string; type: 'direct' | 'topic'; durable: false };
  queue: string;
  /** The error exchange (and the queue of the same name bound to it). */
  errors: string;
  /** A fresh Harness for each test, closed after it. */
  h: Harness;
  /**
   * A processor's options for the fixture: the spec's broker, no signal handling, no log lines, the work queue
   * bound with `key`, failures sent to the error exchange; `extra` is laid over them.
   */
  options(key: string, extra?: ProcessorOptions): ProcessorOptions;
}

/**
 * Registers the hooks of a spec whose tests each run a processor on one exchange (names from `prefix`, made once
 * per describe), with a Harness closed after each test and the queue, the exchange and the error exchange deleted
 * after it. Read the fields inside tests, not at describe time.
 */
export function processorFixture(prefix: string, type: 'direct' | 'topic' = 'direct'): ProcessorFixture {
  const f: ProcessorFixture = {
    url: '',
    ex: { name: unique(`${prefix}-ex`), type, durable: false },
    queue: unique(`${prefix}-q`),
    errors: unique(`${prefix}-errors`),
    h: new Harness(),
    options: (key, extra = {}) => ({
      url: f.url,
      handleSignals: false,
      logger: makeLogger('silent'),
      eqk: [[f.ex, [[f.queue, key]]]],
      errorExchange: f.errors,
      ...extra,
    }),
  };
  before(async () => {
    f.url = await brokerUrl();
  });
  beforeEach(() => {
    f.h = new Harness();
  });
  afterEach(async () => {
    await f.h.close();
    await deleteTopology([f.queue, f.errors], [f.ex.name, f.errors]).catch(() => undefined);
  });
  return f;
}

/**
 * Records what became of each delivery `p` takes (its `observe()` events, in order); `settled()` resolves once `n`
 * are in, or rejects at its deadline saying how many it saw. Await it before asserting on `events`.
 */
export function observed(
  p: MessageProcessor,
  n: number,
): { events: DeliveryEvent[]; settled: (timeout?: number) => Promise<void> } {
  const events: DeliveryEvent[] = [];
  const all = counter(n);
  p.observe((e) => {
    events.push(e);
    all.hit();
  });
  const settled = (timeout = 10_000) =>
    within(all.done, {
      timeout,
      message: () => `${n} deliveries settled (saw ${events.length}: ${events.map((e) => e.outcome).join(', ')})`,
    });
  return { events, settled };
}
