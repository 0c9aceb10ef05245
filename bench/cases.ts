/**
 * The benchmark cases: each has a raw amqplib side (best practice: confirm
 * channel, TCP_NODELAY, direct reply-to) and a postage-ts side doing the same
 * work on the same broker.
 */
import amqp from 'amqplib';
import { fork, spawn } from 'node:child_process';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import {
  EncryptedJsonEncoder,
  Fingerprint,
  GenericProducer,
  MessageCommand,
  MessageHandler,
  MessageProcessor,
  MicroScheduler,
  RpcCommand,
  RpcHandler,
  type ExchangeObject,
  type Producer,
} from '../dist/index.js';

export const PREFETCH = 100;
/**
 * Sends whose confirms are awaited together, on both sides: a raw user's best publisher calls
 * `waitForConfirms()` every 500 sends (fewer round trips than per send, a bounded amount unconfirmed);
 * postage-ts's sends are awaited 500 at a time to match.
 */
export const WINDOW = 500;
/** Deliveries taken on a fresh connection before any is timed. */
export const WARMUP = 300;
/**
 * RPC round trips on a fresh pair of components before any is timed: the
 * slowest 1% of the first few thousand are the JIT's (tiering up, on either
 * side), not what a running component sees. Traced with --trace-opt, one
 * call in flight, caller and server in one process: after 2,000 calls V8 was
 * still optimizing 15 functions in the next 1,000 for raw amqplib and 25 for
 * postage-ts (its pipeline's stages among them), on background threads that
 * take a core from the broker; from 4,000 on, a function or two per thousand.
 */
export const RPC_WARMUP = 5000;

export const uid = () => `bench.${randomBytes(4).toString('hex')}`;

export async function rawConnect(url: string) {
  return amqp.connect(url, { noDelay: true });
}

export function envelope(bytes: number): object {
  // A Postage command whose JSON body is about `bytes` long: both sides send the same bytes.
  const base = new MessageCommand('payload', { data: '' }).setFingerprint({ name: 'bench' }).body;
  const pad = Math.max(0, bytes - JSON.stringify(base).length);
  return new MessageCommand('payload', { data: 'x'.repeat(pad) }).setFingerprint({ name: 'bench' }).body;
}

/** Sends `n` copies of `body`, `window` at a time, each window awaited together (confirms). */
export async function sendAll(p: GenericProducer, body: object, n: number, window: number): Promise<void> {
  for (let sent = 0; sent < n; ) {
    const k = Math.min(window, n - sent);
    const batch: Promise<void>[] = [];
    for (let i = 0; i < k; i++) batch.push(p.forward(body));
    await Promise.all(batch);
    sent += k;
  }
}

/** Messages per second, producer to consumer, persistent with confirms, `n` messages of about `bytes`. */
export async function rawThroughput(url: string, n: number, bytes: number): Promise<number> {
  // Producer and consumer are separate components: a connection each, as postage-ts gives them.
  const conn = await rawConnect(url);
  const subConn = await rawConnect(url);
  const q = uid();
  const pub = await conn.createConfirmChannel();
  const sub = await subConn.createChannel();
  await pub.assertQueue(q, { durable: true });
  await sub.prefetch(PREFETCH);
  // Encoded per message below, as a real producer must.
  const body = envelope(bytes);
  let got = 0;
  let finish!: () => void;
  const done = new Promise<void>((r) => (finish = r));
  await sub.consume(q, (m) => {
    if (!m) return;
    // Decode as a consumer must, then ack.
    JSON.parse(m.content.toString());
    sub.ack(m);
    if (++got === n) finish();
  });
  const t0 = performance.now();
  for (let sent = 0; sent < n; ) {
    const k = Math.min(WINDOW, n - sent);
    for (let i = 0; i < k; i++)
      pub.publish('', q, Buffer.from(JSON.stringify(body)), { persistent: true, contentType: 'application/json' });
    await pub.waitForConfirms();
    sent += k;
  }
  await done;
  const rate = n / ((performance.now() - t0) / 1000);
  await pub.deleteQueue(q);
  await conn.close();
  await subConn.close();
  return rate;
}

/**
 * The knobs `BENCH_ONLY=knobs` turns: prefetch, how many sends await their confirms together, a durable queue or not.
 */
export interface ThroughputKnobs {
  prefetch?: number;
  window?: number;
  durable?: boolean;
  /** The handler checks its content against a small Standard Schema first. */
  schema?: boolean;
  /** Both sides seal and open the content with AES-256-GCM (EncryptedJsonEncoder). */
  encrypt?: boolean;
}

/** A small hand-made Standard Schema of the bench's payload command: one string parameter. */
const PayloadSchema = {
  '~standard': {
    version: 1 as const,
    vendor: 'bench',
    validate: (v: unknown) => {
      const data = (v as { parameters?: { data?: unknown } } | null)?.parameters?.data;
      return typeof data === 'string'
        ? { value: v }
        : { issues: [{ message: 'expected a string', path: ['parameters', 'data'] }] };
    },
  },
};
const benchKey = randomBytes(32);

export async function postageThroughput(
  url: string,
  n: number,
  bytes: number,
  knobs: ThroughputKnobs = {},
): Promise<number> {
  const { prefetch = PREFETCH, window = WINDOW, durable = true, schema = false, encrypt = false } = knobs;
  const ex: ExchangeObject = { name: '', type: 'direct' };
  const q = uid();
  let got = 0;
  let finish!: () => void;
  const done = new Promise<void>((r) => (finish = r));
  class Sink extends MessageProcessor {
    @MessageHandler('command', 'payload', schema ? { schema: PayloadSchema } : {})
    payload() {
      if (++got === n) finish();
    }
  }
  class Source extends GenericProducer {
    static override eks = [[ex, q] as const];
  }
  const encoder = () => (encrypt ? new EncryptedJsonEncoder({ keys: { bench: benchKey } }) : undefined);
  const sink = new Sink({ url, prefetch, encoder: encoder(), eqk: [[ex, [[{ name: q, flags: { durable } }, q]]]] });
  await sink.ready();
  const s = new MicroScheduler();
  s.addMicrothread(sink);
  const running = s.run();
  const p = await Source.create({ url, encoder: encoder() });
  const body = envelope(bytes);
  const t0 = performance.now();
  await sendAll(p, body, n, window);
  await done;
  const rate = n / ((performance.now() - t0) / 1000);
  s.stop();
  await running;
  await sink.close();
  await dropQueue(url, q);
  await p.close();
  return rate;
}

/**
 * Messages per second through a relay: a processor whose handler sends one
 * message (and waits for its confirm) per delivery, to a sink. `outbox`: the
 * send is held until the handler returns, then confirmed before the ack
 * (the default); off, it goes out while the handler runs.
 */
export async function postageRelay(url: string, n: number, outbox: boolean): Promise<number> {
  const ex: ExchangeObject = { name: '', type: 'direct' };
  const inQ = uid();
  const outQ = uid();
  let got = 0;
  let finish!: () => void;
  const done = new Promise<void>((r) => (finish = r));
  class Next extends GenericProducer {
    static override eks = [[ex, outQ] as const];
  }
  const next = await Next.create({ url });
  const body = envelope(100);
  class Relay extends MessageProcessor {
    @MessageHandler('command', 'payload')
    *payload() {
      yield next.forward(body);
    }
  }
  class Sink extends MessageProcessor {
    @MessageHandler('command', 'payload')
    payload() {
      if (++got === n) finish();
    }
  }
  const relay = new Relay({ url, prefetch: PREFETCH, outbox, eqk: [[ex, [[inQ, inQ]]]] });
  const sink = new Sink({ url, prefetch: PREFETCH, eqk: [[ex, [[outQ, outQ]]]] });
  await relay.ready();
  await sink.ready();
  const s = new MicroScheduler();
  s.addMicrothread(relay);
  s.addMicrothread(sink);
  const running = s.run();
  class Source extends GenericProducer {
    static override eks = [[ex, inQ] as const];
  }
  const p = await Source.create({ url });
  const t0 = performance.now();
  await sendAll(p, body, n, WINDOW);
  await done;
  const rate = n / ((performance.now() - t0) / 1000);
  s.stop();
  await running;
  await relay.close();
  await sink.close();
  await dropQueue(url, inQ, outQ);
  await p.close();
  await next.close();
  return rate;
}

interface RpcStats {
  p50: number;
  p99: number;
  perSecond: number;
}

function stats(latencies: number[], totalMs: number): RpcStats {
  const sorted = [...latencies].sort((a, b) => a - b);
  return {
    p50: sorted[Math.floor(sorted.length * 0.5)],
    p99: sorted[Math.floor(sorted.length * 0.99)],
    perSecond: latencies.length / (totalMs / 1000),
  };
}

/** The channel an echo server consumes on, for bench/own-cost.ts, which drives it without a socket. */
export type OnServerChannel = (channel: amqp.Channel) => void;

/** Starts a raw amqplib echo server on queue `q`; resolves to how to stop it. */
export async function startRawEcho(url: string, q: string, onChannel?: OnServerChannel): Promise<() => Promise<void>> {
  // Both sides stamp their fingerprint on what they send, as the Postage protocol asks.
  const serverFp = new Fingerprint('bench-server', 'raw').asDict();
  const serverConn = await rawConnect(url);
  const server = await serverConn.createChannel();
  await server.assertQueue(q, { durable: false, autoDelete: true });
  await server.prefetch(PREFETCH);
  await server.consume(q, (m) => {
    if (!m) return;
    const req = JSON.parse(m.content.toString()) as { content: { parameters: { text: string } } };
    // The same envelope postage-ts sends back: a result carrying the server's fingerprint.
    const reply = {
      type: 'result',
      name: 'none',
      category: 'message',
      version: '2',
      fingerprint: serverFp,
      content: { type: 'success', value: req.content.parameters.text, message: '' },
      _reserved: {},
    };
    server.publish('', m.properties.replyTo, Buffer.from(JSON.stringify(reply)), {
      correlationId: m.properties.correlationId,
    });
    server.ack(m);
  });
  onChannel?.(server);
  return () => serverConn.close();
}

class Echo extends MessageProcessor {
  @RpcHandler('command', 'echo')
  echo(content: { parameters: { text: string } }) {
    return content.parameters.text;
  }
}

/** Starts a postage-ts echo processor on queue `q`; resolves to how to stop it. */
export async function startPostageEcho(
  url: string,
  q: string,
  onChannel?: OnServerChannel,
): Promise<() => Promise<void>> {
  const ex: ExchangeObject = { name: '', type: 'direct' };
  const server = new Echo({
    url,
    prefetch: PREFETCH,
    handleSignals: false,
    eqk: [[ex, [[{ name: q, flags: { durable: false, autoDelete: true } }, q]]]],
  });
  await server.ready();
  onChannel?.(server.consumer.channel);
  const s = new MicroScheduler();
  s.addMicrothread(server);
  const running = s.run();
  return async () => {
    s.stop();
    await running;
    await server.close();
  };
}

/** The echo server of `kind` in this process, or (`apart`) in a process of its own, as components usually are. */
async function echoServer(
  kind: 'raw' | 'postage',
  url: string,
  q: string,
  apart: boolean,
): Promise<() => Promise<void>> {
  if (!apart) return kind === 'raw' ? startRawEcho(url, q) : startPostageEcho(url, q);
  const child = spawn(
    process.execPath,
    [...process.execArgv, new URL('./echo-server.ts', import.meta.url).pathname, kind, url, q],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (b: Buffer) => String(b).includes('ready') && resolve());
    child.once('exit', (code) => reject(new Error(`the ${kind} echo server exited (${code}) before it was ready`)));
  });
  return async () => {
    child.kill('SIGTERM');
    await once(child, 'exit');
  };
}

/** One side's RPC caller: `one()` makes a call and resolves to its round trip in ms. */
export interface RpcCaller {
  one: () => Promise<number>;
  close: () => Promise<void>;
}

/** A raw amqplib caller of the echo server on `q`, through direct reply-to. */
export async function rawCaller(url: string, q: string): Promise<RpcCaller> {
  // Client and server are separate components: a connection each, as postage-ts gives them.
  const clientFp = new Fingerprint('bench-client', 'raw').asDict();
  const conn = await rawConnect(url);
  const client = await conn.createChannel();
  const pending = new Map<string, () => void>();
  await client.consume(
    'amq.rabbitmq.reply-to',
    (m) => {
      if (!m) return;
      JSON.parse(m.content.toString());
      pending.get(m.properties.correlationId)?.();
      pending.delete(m.properties.correlationId);
    },
    { noAck: true },
  );
  let id = 0;
  const one = () =>
    new Promise<number>((resolve) => {
      const cid = String(id++);
      const t = performance.now();
      pending.set(cid, () => resolve(performance.now() - t));
      const body = Buffer.from(JSON.stringify(new RpcCommand('echo', { text: 'hi' }).setFingerprint(clientFp).body));
      client.publish('', q, body, {
        replyTo: 'amq.rabbitmq.reply-to',
        correlationId: cid,
        contentType: 'application/json',
      });
    });
  return { one, close: () => conn.close() };
}

class Caller extends GenericProducer {
  build_rpc_echo(text: string) {
    return new RpcCommand('echo', { text });
  }
}

/** A postage-ts caller of the echo server on `q`. */
export async function postageCaller(url: string, q: string): Promise<RpcCaller> {
  const p = new Caller({ url });
  p.eks = [[{ name: '', type: 'direct' }, q]];
  await p.connect();
  const caller = p as Producer<Caller>;
  const one = async () => {
    const t = performance.now();
    await caller.rpc_echo('hi', { _timeout: 30 });
    return performance.now() - t;
  };
  return { one, close: () => p.close() };
}

/** `calls` RPCs with `inFlight` at a time, by a `kind` caller against a `kind` echo server. */
export async function rpcCalls(
  kind: 'raw' | 'postage',
  url: string,
  calls: number,
  inFlight: number,
): Promise<RpcStats> {
  const q = uid();
  const stop = await echoServer(kind, url, q, false);
  const caller = await (kind === 'raw' ? rawCaller : postageCaller)(url, q);
  // Steady state, on both sides: a fresh connection's first round trips are not what a component lives with.
  await drive(RPC_WARMUP, inFlight, caller.one);
  const r = await drive(calls, inFlight, caller.one);
  await caller.close();
  await stop();
  return r;
}

/** Untimed calls at the start of each turn (see {@link rpcLatency}). */
const TURN_WARMUP = 5;

/**
 * RPC latency with one call in flight, raw and postage-ts measured in the
 * same stretch of time: each side's caller runs in a fresh process of its own
 * (with its server, or beside a server in a third process when `apart`), and
 * the two take turns, `block` calls at a time, until each has made `calls`.
 * A tail percentile is what a busy machine moves most; taking turns gives
 * both sides the same machine, and separate processes keep each side's
 * garbage collections its own.
 *
 * Each turn starts with {@link TURN_WARMUP} untimed calls: the side has just
 * sat idle through the other's turn, and its first call runs on cold caches
 * (its own row, `afterPause`: the first call of every turn), while the
 * timed ones are back to back, as one call in flight means.
 */
export async function rpcLatency(
  url: string,
  calls: number,
  apart: boolean,
  block = 100,
): Promise<{
  raw: RpcStats;
  postage: RpcStats;
  afterPause: { raw: RpcStats; postage: RpcStats };
  gcsPerThousand: { raw: number; postage: number };
}> {
  const kinds = ['raw', 'postage'] as const;
  const sides = await Promise.all(
    kinds.map(async (kind) => {
      const q = uid();
      const stopServer = apart ? await echoServer(kind, url, q, true) : async () => {};
      const child = fork(
        new URL('./rpc-caller.ts', import.meta.url).pathname,
        [kind, url, q, apart ? 'apart' : 'with-server'],
        { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] },
      );
      // The child answers each request in order; one that exits first fails whatever is still waiting.
      const replies: Array<{ resolve: (m: unknown) => void; reject: (e: Error) => void }> = [];
      child.on('message', (m) => replies.shift()?.resolve(m));
      const exited = once(child, 'exit');
      let gone: Error | undefined;
      void exited.then(([code]) => {
        gone = new Error(`the ${kind} RPC caller exited (${code})`);
        for (const r of replies.splice(0)) r.reject(gone);
      });
      const next = () =>
        new Promise<unknown>((resolve, reject) => (gone ? reject(gone) : replies.push({ resolve, reject })));
      const ask = (m: object) => {
        const reply = next();
        child.send(m);
        return reply;
      };
      await next(); // "ready", once warmed up
      return {
        latencies: [] as number[],
        firsts: [] as number[],
        gcs: 0,
        run: (n: number) => ask({ calls: n }) as Promise<{ latencies: number[]; gcs: number }>,
        stop: async () => {
          child.send({ stop: true });
          await exited;
          await stopServer();
        },
      };
    }),
  );
  const t0 = performance.now();
  for (let done = 0, turn = 0; done < calls; done += block, turn++) {
    const n = Math.min(block, calls - done);
    // Who goes first alternates too, so neither side always follows the other's burst.
    for (const side of turn % 2 ? [...sides].reverse() : sides) {
      const { latencies: l, gcs } = await side.run(TURN_WARMUP + n);
      side.gcs += gcs;
      side.firsts.push(l[0]);
      side.latencies.push(...l.slice(TURN_WARMUP));
    }
  }
  const totalMs = performance.now() - t0;
  await Promise.all(sides.map((s) => s.stop()));
  return {
    raw: stats(sides[0].latencies, totalMs / 2),
    postage: stats(sides[1].latencies, totalMs / 2),
    afterPause: { raw: stats(sides[0].firsts, totalMs / 2), postage: stats(sides[1].firsts, totalMs / 2) },
    // Each collection lands on a call: what decides whether the slowest 1% are ordinary calls or stalled ones.
    gcsPerThousand: {
      raw: (sides[0].gcs * 1000) / sides[0].latencies.length,
      postage: (sides[1].gcs * 1000) / sides[1].latencies.length,
    },
  };
}

export async function drive(calls: number, inFlight: number, one: () => Promise<number>): Promise<RpcStats> {
  const latencies: number[] = [];
  let started = 0;
  const t0 = performance.now();
  const worker = async () => {
    while (started < calls) {
      started++;
      latencies.push(await one());
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  return stats(latencies, performance.now() - t0);
}

/** Fills a fresh durable queue with `n` 100 B envelopes (confirmed) and returns its name. */
export async function filledQueue(url: string, n: number, keyed = 0): Promise<string> {
  const conn = await rawConnect(url);
  const ch = await conn.createConfirmChannel();
  const q = uid();
  await ch.assertQueue(q, { durable: true });
  for (let sent = 0; sent < n; ) {
    const k = Math.min(WINDOW, n - sent);
    for (let i = 0; i < k; i++) {
      const body =
        keyed > 0
          ? new MessageCommand('payload', { key: `k${(sent + i) % keyed}` }).setFingerprint({ name: 'bench' }).body
          : envelope(100);
      ch.publish('', q, Buffer.from(JSON.stringify(body)), { persistent: true, contentType: 'application/json' });
    }
    await ch.waitForConfirms();
    sent += k;
  }
  await conn.close();
  return q;
}

export async function dropQueue(url: string, ...queues: string[]): Promise<void> {
  const conn = await rawConnect(url);
  const ch = await conn.createChannel();
  for (const q of queues) await ch.deleteQueue(q);
  await conn.close();
}

/** Messages per second a raw amqplib consumer with prefetch 1 drains from a full queue (decoding each, acking each). */
export async function rawConsume(url: string, n: number): Promise<number> {
  const q = await filledQueue(url, n);
  const conn = await rawConnect(url);
  const ch = await conn.createChannel();
  await ch.prefetch(1);
  let got = 0;
  let finish!: () => void;
  const done = new Promise<void>((r) => (finish = r));
  // Timed from the WARMUP-th delivery on, as on the postage-ts side: steady state, not a fresh channel's first
  // messages.
  let t0 = 0;
  await ch.consume(q, (m) => {
    if (!m) return;
    JSON.parse(m.content.toString());
    ch.ack(m);
    if (++got === WARMUP) t0 = performance.now();
    if (got === n) finish();
  });
  await done;
  const rate = (n - WARMUP) / ((performance.now() - t0) / 1000);
  await conn.close();
  await dropQueue(url, q);
  return rate;
}

export interface ConsumeKnobs {
  concurrency?: number;
  prefetch?: number;
  /** Each handler waits this long (ms), as one doing I/O would. */
  waitMs?: number;
  /** Order by one of this many keys. */
  keys?: number;
}

/**
 * Messages per second a processor drains from a full queue (its defaults: prefetch 1, concurrency 1, unless knobs say
 * otherwise).
 */
export async function postageConsume(url: string, n: number, knobs: ConsumeKnobs = {}): Promise<number> {
  const { concurrency, prefetch, waitMs = 0, keys = 0 } = knobs;
  const q = await filledQueue(url, n, keys);
  let got = 0;
  let warm = 0;
  let finish!: () => void;
  const done = new Promise<void>((r) => (finish = r));
  const wait = () => new Promise<void>((r) => setTimeout(r, waitMs));
  const count = () => {
    if (++got === WARMUP) warm = performance.now();
    if (got === n) finish();
  };
  class Drain extends MessageProcessor {
    @MessageHandler('command', 'payload')
    payload(): void | Promise<void> {
      // A handler with nothing to wait for returns at once, as most do: no promise.
      return waitMs === 0 ? count() : wait().then(count);
    }
  }
  const ex: ExchangeObject = { name: '', type: 'direct' };
  const proc = new Drain({
    url,
    concurrency,
    prefetch,
    orderBy: keys > 0 ? (content) => (content as { parameters: { key: string } }).parameters.key : undefined,
    handleSignals: false,
    eqk: [[ex, [[{ name: q, flags: { durable: true } }, q]]]],
  });
  const s = new MicroScheduler();
  await proc.ready();
  // From here, as the raw side times from its consume: deliveries start flowing.
  const t0 = performance.now();
  s.addMicrothread(proc);
  const running = s.run();
  await done;
  // The same steady state as the raw side: from the WARMUP-th delivery on (the whole run when it is shorter).
  const rate = n > WARMUP ? (n - WARMUP) / ((performance.now() - warm) / 1000) : n / ((performance.now() - t0) / 1000);
  s.stop();
  await running;
  await dropQueue(url, q);
  return rate;
}
