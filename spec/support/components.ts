/** Runs processors on a scheduler for a spec and tears everything down after it. */
import {
  GenericProducer,
  MicroScheduler,
  type MessageProcessor,
  type Producer,
  type ProducerOptions,
} from '../../lib/index.js';

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

/** What a spec of one exchange and one queue works with, fresh for each test. */
export interface ExchangeFixture {
  url: string;
  ex: { name: string; type: 'direct'; durable: false };
  queue: string;
  h: Harness;
  /**
   * A producer sending to the fixture's exchange with key 'k' (any message_/rpc_/rpcStream_ name), closed after the
   * test.
   */
  producer(options?: ProducerOptions): Promise<Producer<GenericProducer>>;
}

/**
 * Registers the hooks of a spec that works on one fresh direct exchange and
 * queue per test (names from `prefix`), with a Harness closed and the topology
 * deleted after each test. Read the fields inside tests, not at describe time.
 */
export function exchangeFixture(
  prefix: string,
  brokerUrl: () => Promise<string>,
  unique: (p: string) => string,
  deleteTopology: (q: string[], e: string[]) => Promise<void>,
): ExchangeFixture {
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
  } as ExchangeFixture;
  before(async () => {
    f.url = await brokerUrl();
  });
  beforeEach(() => {
    f.ex = { name: unique(`${prefix}-ex`), type: 'direct', durable: false };
    f.queue = unique(`${prefix}-q`);
    f.h = new Harness();
  });
  afterEach(async () => {
    await f.h.close();
    await deleteTopology([f.queue], [f.ex.name]).catch(() => undefined);
  });
  return f;
}
