/**
 * `npm run bench`: postage-ts and raw amqplib side by side, on the same
 * broker, in one process. Runs alternate (raw, postage, raw, postage, …) so
 * machine noise hits both; each figure is the median of its runs. Prints a
 * table and one JSON line of figures and ratios.
 *
 *   npm run bench -- --runs 5       (or BENCH_RUNS=5; default 3)
 *
 * Each side-by-side row also prints every run's ratio (postage-ts over raw,
 * from the pair of runs made back to back) and their median: judge a tail
 * latency by the median of at least 5 runs, never by one.
 */
import { brokerUrls, loadConfig } from '../lib/config.js';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { postageCpu, rawCpu } from './cpu.js';
import {
  postageConsume,
  postageRelay,
  postageThroughput,
  rawConsume,
  rawThroughput,
  rpcCalls,
  rpcLatency,
  type ConsumeKnobs,
} from './cases.js';
import { schedulerStepsPerSecond } from './scheduler.js';
import { postageSteady, rawSteady, type Steady } from './steady.js';
import { partitionedRate } from './partitions.js';
import { callerOwnCost, consumerOwnCost, serverOwnCost } from './own-cost.js';
import { storeRelay } from './store.js';
import { metrics, propagation, trace } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, BatchSpanProcessor, InMemorySpanExporter } from '@opentelemetry/sdk-trace-base';

process.env.POSTAGE_LOG_LEVEL ??= 'warn';
const url = process.env.BENCH_URL ?? brokerUrls(loadConfig())[0];
const runsFlag = process.argv.indexOf('--runs');
const rounds = Number(
  runsFlag >= 0 ? process.argv[runsFlag + 1] : (process.env.BENCH_RUNS ?? process.env.BENCH_ROUNDS ?? 3),
);
if (!(Number.isInteger(rounds) && rounds >= 1))
  throw new Error(`--runs (BENCH_RUNS) must be a whole number of at least 1, not ${rounds}`);
/** Calls per side per round in the RPC latency rows: enough that 1% of them is a tail, not a handful. */
const LATENCY_CALLS = 5000;
// BENCH_ONLY=rpc (or steady, cpu, throughput, latency, own, telemetry, outbox, store, service, consume, scheduler,
// memory) runs one group of cases; BENCH_ONLY=knobs prices prefetch, confirms and durability.
const only = process.env.BENCH_ONLY;
const wanted = (group: string) => !only || only.split(',').includes(group);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

interface Row {
  case: string;
  raw: number | null;
  postage: number;
  unit: string;
  ratio: number | null;
  target: string;
  met: boolean;
  /** Each run's ratio, where the row is a pair of sides run back to back. */
  runs?: string;
}
const rows: Row[] = [];

async function sideBySide<T>(raw: () => Promise<T>, postage: () => Promise<T>): Promise<{ raw: T[]; postage: T[] }> {
  const out = { raw: [] as T[], postage: [] as T[] };
  for (let i = 0; i < rounds; i++) {
    out.raw.push(await raw());
    out.postage.push(await postage());
  }
  return out;
}

function add(
  name: string,
  raw: number | null,
  postage: number,
  unit: string,
  target: string,
  met: (ratio: number | null, value: number) => boolean,
) {
  const ratio = raw === null ? null : postage / raw;
  rows.push({
    case: name,
    raw: raw === null ? null : round(raw),
    postage: round(postage),
    unit,
    ratio: ratio === null ? null : Math.round(ratio * 100) / 100,
    target,
    met: met(ratio, postage),
  });
}

/**
 * A side-by-side row judged by the median of its runs' ratios (each run's pair made back to back, so noise hits both).
 */
function addRuns(
  name: string,
  raw: number[],
  postage: number[],
  unit: string,
  target: string,
  met: (ratio: number) => boolean,
) {
  const ratios = raw.map((r, i) => postage[i] / r);
  const ratio = median(ratios);
  rows.push({
    case: name,
    raw: round(median(raw)),
    postage: round(median(postage)),
    unit,
    ratio: Math.round(ratio * 100) / 100,
    target,
    met: met(ratio),
    runs: ratios.map((x) => x.toFixed(2)).join(' '),
  });
}
const round = (x: number) => (Math.abs(x) >= 100 ? Math.round(x) : Math.round(x * 100) / 100);

// Warm both paths (JIT, broker queues) before measuring.
await rawThroughput(url, 2000, 100);
await postageThroughput(url, 2000, 100);
await rpcCalls('raw', url, 200, 1);
await rpcCalls('postage', url, 200, 1);

/**
 * Publish -> consume in steady state, as issue #37's held-out bench runs it (bench/steady.ts): an untimed warm-up
 * round of each side, then alternating rounds of STEADY_MESSAGES. At prefetch 100 (throughput, client and broker CPU
 * per message) and at prefetch 1 (a processor with its defaults).
 */
const STEADY_MESSAGES = Number(process.env.BENCH_STEADY_MESSAGES ?? 20_000);
if (wanted('steady')) {
  for (const prefetch of [100, 1]) {
    await rawSteady(url, STEADY_MESSAGES, prefetch);
    await postageSteady(url, STEADY_MESSAGES, prefetch);
    // At prefetch 1 a third side alternates with the two: raw amqplib sending what a Postage command carries.
    const same: Steady[] = [];
    if (prefetch === 1) await rawSteady(url, STEADY_MESSAGES, prefetch, 100, true);
    const r = await sideBySide(
      () => rawSteady(url, STEADY_MESSAGES, prefetch),
      async () => {
        if (prefetch === 1) same.push(await rawSteady(url, STEADY_MESSAGES, prefetch, 100, true));
        return postageSteady(url, STEADY_MESSAGES, prefetch);
      },
    );
    const pick = (k: 'perSecond' | 'clientUs' | 'brokerUs') => [r.raw.map((x) => x[k]), r.postage.map((x) => x[k])];
    const where = prefetch === 1 ? 'defaults (prefetch 1) against raw prefetch 1' : 'prefetch 100';
    const [rawRate, postageRate] = pick('perSecond');
    addRuns(
      `steady publish -> consume, 100 B text, confirms every 500, ${where}: throughput`,
      rawRate,
      postageRate,
      'msg/s',
      'ratio >= 0.95',
      (ratio) => ratio >= 0.95,
    );
    const [rawClient, postageClient] = pick('clientUs');
    addRuns(
      `steady publish -> consume, ${where}: client CPU per message`,
      rawClient,
      postageClient,
      'µs',
      prefetch === 1 ? '(reported)' : 'ratio <= 1.10',
      (ratio) => prefetch === 1 || ratio <= 1.1,
    );
    if (prefetch === 1) {
      // How much of the defaults row is the broker's and amqplib's price for the properties a Postage command needs.
      addRuns(
        "steady publish -> consume, prefetch 1: raw with a Postage command's properties against plain raw: throughput",
        rawRate,
        same.map((x) => x.perSecond),
        'msg/s',
        '(reported)',
        () => true,
      );
      addRuns(
        'steady publish -> consume, defaults (prefetch 1) against raw with the same properties: throughput',
        same.map((x) => x.perSecond),
        postageRate,
        'msg/s',
        '(reported)',
        () => true,
      );
    }
    const [rawBroker, postageBroker] = pick('brokerUs');
    if (rawBroker.every(Number.isFinite))
      addRuns(
        `steady publish -> consume, ${where}: broker CPU per message`,
        rawBroker,
        postageBroker,
        'µs',
        prefetch === 1 ? '(reported)' : 'ratio <= 1.0',
        (ratio) => prefetch === 1 || ratio <= 1.0,
      );
  }
}

// The figure the library owns entirely: client CPU per message, both halves in this process (bench/cpu.ts).
if (wanted('cpu')) {
  await rawCpu(url, 5_000, 'both');
  await postageCpu(url, 5_000, 'both');
  const both = await sideBySide(
    () => rawCpu(url, 20_000, 'both'),
    () => postageCpu(url, 20_000, 'both'),
  );
  addRuns(
    'client CPU per message, publish -> consume, 100 B, persistent to a durable queue',
    both.raw,
    both.postage,
    'µs',
    '(reported; judged on the steady rows)',
    () => true,
  );
  const send = await sideBySide(
    () => rawCpu(url, 20_000, 'send'),
    () => postageCpu(url, 20_000, 'send'),
  );
  addRuns('client CPU per message, send with confirm', send.raw, send.postage, 'µs', '(reported)', () => true);
  const consume = await sideBySide(
    () => rawCpu(url, 20_000, 'consume'),
    () => postageCpu(url, 20_000, 'consume'),
  );
  addRuns(
    'client CPU per message, consume with ack (prefetch 100)',
    consume.raw,
    consume.postage,
    'µs',
    '(reported)',
    () => true,
  );
}

for (const [bytes, n] of wanted('throughput')
  ? ([
      [100, 20_000],
      [10 * 1024, 5_000],
    ] as const)
  : []) {
  const r = await sideBySide(
    () => rawThroughput(url, n, bytes),
    () => postageThroughput(url, n, bytes),
  );
  addRuns(
    `end-to-end throughput, ${bytes === 100 ? '100 B' : '10 KiB'} envelope, persistent to a durable queue, confirms`,
    r.raw,
    r.postage,
    'msg/s',
    '(reported; judged on the steady rows)',
    () => true,
  );
}

// RPC latency with one call in flight, the server in the caller's process and in one of its own; the two
// sides take turns in the same stretch of time (rpcLatency), each round with fresh processes.
for (const apart of wanted('latency') ? [false, true] : []) {
  const lat = [];
  for (let i = 0; i < rounds; i++) lat.push(await rpcLatency(url, LATENCY_CALLS, apart));
  const raw = lat.map((x) => x.raw);
  const postage = lat.map((x) => x.postage);
  const where = apart ? 'server in its own process' : 'server in the same process';
  addRuns(
    `RPC latency p50, 1 in flight, ${where}`,
    raw.map((x) => x.p50),
    postage.map((x) => x.p50),
    'ms',
    'ratio <= 1.10',
    (ratio) => ratio <= 1.1,
  );
  addRuns(
    `RPC latency p99, 1 in flight, ${where}`,
    raw.map((x) => x.p99),
    postage.map((x) => x.p99),
    'ms',
    `ratio <= 1.5 (median of ${rounds}${rounds < 5 ? '; judge with --runs 5' : ''})`,
    (ratio) => ratio <= 1.5,
  );
  // The first call after the caller sat idle (the other side's turn, some 50 ms): cold caches, on both sides.
  add(
    `RPC latency p50 of a call after a pause, ${where}`,
    median(lat.map((x) => x.afterPause.raw.p50)),
    median(lat.map((x) => x.afterPause.postage.p50)),
    'ms',
    '(reported)',
    () => true,
  );
  add(
    `garbage collections per 1,000 calls in the caller's process, ${where}`,
    median(lat.map((x) => x.gcsPerThousand.raw)),
    median(lat.map((x) => x.gcsPerThousand.postage)),
    'GCs',
    '(reported)',
    () => true,
  );
}

// Each half of an RPC in code alone, the socket taken out (bench/own-cost.ts): what the latency rows
// above are made of besides the broker; the machine's speed still moves them (see docs/performance.md).
if (wanted('own')) {
  const caller = await sideBySide(
    () => callerOwnCost('raw', url),
    () => callerOwnCost('postage', url),
  );
  addRuns(
    'RPC caller, own code per call (no socket)',
    caller.raw,
    caller.postage,
    'µs',
    'ratio <= 1.5',
    (ratio) => ratio <= 1.5,
  );
  const server = await sideBySide(
    () => serverOwnCost('raw', url),
    () => serverOwnCost('postage', url),
  );
  addRuns(
    'RPC server, own code per request (no socket)',
    server.raw,
    server.postage,
    'µs',
    'ratio <= 1.5',
    (ratio) => ratio <= 1.5,
  );
  const consumer = await sideBySide(
    () => consumerOwnCost('raw', url),
    () => consumerOwnCost('postage', url),
  );
  addRuns(
    'consumer at prefetch 1 (a processor with its defaults), own code per delivery (no socket)',
    consumer.raw,
    consumer.postage,
    'µs',
    '(reported)',
    () => true,
  );
}

if (wanted('rpc')) {
  const thr = await sideBySide(
    () => rpcCalls('raw', url, 20_000, 100),
    () => rpcCalls('postage', url, 20_000, 100),
  );
  addRuns(
    'RPC throughput, 100 in flight',
    thr.raw.map((x) => x.perSecond),
    thr.postage.map((x) => x.perSecond),
    'calls/s',
    'ratio >= 1.0',
    (ratio) => ratio >= 1.0,
  );
}

// What tracing and metrics cost once an application registers the OpenTelemetry SDK (an in-memory exporter
// behind a batch processor, as an application's OTLP one would be); without one, the rows above pay for the API's
// no-ops.
if (wanted('telemetry')) {
  const exporter = new InMemorySpanExporter();
  const withSdk = async () => {
    const tracing = new BasicTracerProvider({ spanProcessors: [new BatchSpanProcessor(exporter)] });
    const meters = new MeterProvider({
      readers: [
        new (class extends MetricReader {
          protected override async onForceFlush(): Promise<void> {}
          protected override async onShutdown(): Promise<void> {}
        })(),
      ],
    });
    trace.setGlobalTracerProvider(tracing);
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    metrics.setGlobalMeterProvider(meters);
    try {
      return await postageThroughput(url, 20_000, 100);
    } finally {
      await tracing.shutdown();
      await meters.shutdown();
      trace.disable();
      propagation.disable();
      metrics.disable();
      exporter.reset();
    }
  };
  const r = await sideBySide(() => postageThroughput(url, 20_000, 100), withSdk);
  add(
    'throughput with the OpenTelemetry SDK recording (against none), 100 B',
    median(r.raw),
    median(r.postage),
    'msg/s',
    '(reported)',
    () => true,
  );
}

// What holding a handler's sends until it succeeds (the outbox, on by default) costs a relay that sends one message per
// delivery.
if (wanted('outbox')) {
  const r = await sideBySide(
    () => postageRelay(url, 5_000, false),
    () => postageRelay(url, 5_000, true),
  );
  add(
    'relay, one send per delivery: outbox on (against off)',
    median(r.raw),
    median(r.postage),
    'msg/s',
    '(reported)',
    () => true,
  );
}

// The price of the PostgreSQL store (docs/database.md): a relay that writes one row and sends one message per delivery,
// with the in-memory outbox and the row written through the pool, against the store and the row in the run's
// transaction (BENCH_ONLY=store; needs PostgreSQL).
if (wanted('store')) {
  const r = await sideBySide(
    () => storeRelay(url, 2_000, 'memory'),
    () => storeRelay(url, 2_000, 'postgres'),
  );
  const rate = (xs: { perSecond: number }[]) => median(xs.map((x) => x.perSecond));
  const cpu = (xs: { cpuUsPerMessage: number }[]) => median(xs.map((x) => x.cpuUsPerMessage));
  add(
    'relay writing a row per delivery: PostgreSQL store (against the in-memory outbox)',
    rate(r.raw),
    rate(r.postage),
    'msg/s',
    '(reported)',
    () => true,
  );
  add(
    '  client CPU per message: store (against in-memory)',
    cpu(r.raw),
    cpu(r.postage),
    'µs',
    '(reported)',
    () => true,
  );
}

// What a service pays per message for a small schema on its handler, and for encrypted contents (BENCH_ONLY=service).
if (wanted('service')) {
  const checked = await sideBySide(
    () => postageThroughput(url, 20_000, 100),
    () => postageThroughput(url, 20_000, 100, { schema: true }),
  );
  add(
    'throughput with a handler schema (against none), 100 B',
    median(checked.raw),
    median(checked.postage),
    'msg/s',
    '(reported)',
    () => true,
  );
  const sealed = await sideBySide(
    () => postageThroughput(url, 20_000, 100),
    () => postageThroughput(url, 20_000, 100, { encrypt: true }),
  );
  add(
    'throughput with AES-256-GCM contents (against plain JSON), 100 B',
    median(sealed.raw),
    median(sealed.postage),
    'msg/s',
    '(reported)',
    () => true,
  );
}

for (const threads of wanted('scheduler') ? [10, 10_000] : []) {
  const sps = median(await Promise.all([0].map(() => schedulerStepsPerSecond(threads))));
  const goal = threads === 10 ? 10_000_000 : 2_000_000;
  add(
    `scheduler, ${threads} busy threads`,
    null,
    sps,
    'steps/s',
    `>= ${goal.toLocaleString('en')}`,
    (_r, v) => v >= goal,
  );
}

/** One memory case in a fresh process (this one's RSS already holds every earlier case). */
async function memoryCase<T = { heapMiB: number; rssMiB: number }>(which: 'processor' | 'idle' | 'many'): Promise<T> {
  const script = new URL('./memory.ts', import.meta.url).pathname;
  const { stdout } = await promisify(execFile)(process.execPath, [...process.execArgv, script, which, url], {
    env: process.env,
  });
  return JSON.parse(stdout.trim().split('\n').pop()!) as T;
}

if (wanted('memory')) {
  const mem = await memoryCase('processor');
  add('heap growth after 100,000 messages through a processor', null, mem.heapMiB, 'MiB', '< 20', (_r, v) => v < 20);
  add('RSS growth after 100,000 messages through a processor', null, mem.rssMiB, 'MiB', '(reported)', () => true);
  const idle = await memoryCase('idle');
  add('10,000 idle microthreads (heap)', null, idle.heapMiB, 'MiB', '< 50', (_r, v) => v < 50);
  add('10,000 idle microthreads (RSS)', null, idle.rssMiB, 'MiB', '< 50', (_r, v) => v < 50);
}

// Consuming: what a processor with its defaults drains from a full queue against raw amqplib with prefetch 1; then
// concurrency.
if (wanted('consume')) {
  const r = await sideBySide(
    () => rawConsume(url, 3_000),
    () => postageConsume(url, 3_000),
  );
  addRuns(
    'drain a full durable queue, defaults (prefetch 1, concurrency 1) against raw prefetch 1',
    r.raw,
    r.postage,
    'msg/s',
    '(reported; judged on the steady rows)',
    () => true,
  );
  const ideal = 16 * (1000 / 5);
  const c16 = median([
    await postageConsume(url, 4_000, { concurrency: 16, waitMs: 5 }),
    await postageConsume(url, 4_000, { concurrency: 16, waitMs: 5 }),
    await postageConsume(url, 4_000, { concurrency: 16, waitMs: 5 }),
  ]);
  add(
    'concurrency 16, handlers waiting 5 ms (against 16 x 200/s)',
    ideal,
    c16,
    'msg/s',
    'ratio >= 0.9',
    (ratio) => ratio !== null && ratio >= 0.9,
  );
  const ordered = median([
    await postageConsume(url, 4_000, { concurrency: 16, waitMs: 5, keys: 64 }),
    await postageConsume(url, 4_000, { concurrency: 16, waitMs: 5, keys: 64 }),
    await postageConsume(url, 4_000, { concurrency: 16, waitMs: 5, keys: 64 }),
  ]);
  add(
    'the same with orderBy over 64 keys (against without)',
    c16,
    ordered,
    'msg/s',
    'ratio >= 0.9',
    (ratio) => ratio !== null && ratio >= 0.9,
  );
}

if (wanted('memory')) {
  const many = await memoryCase<{ heapKiBEach: number; rssKiBEach: number; readyMs: number; recoverMs: number }>(
    'many',
  );
  add(
    '1,000 processors on one shared connection: heap per processor',
    null,
    many.heapKiBEach,
    'KiB',
    '(reported)',
    () => true,
  );
  add(
    '1,000 processors on one shared connection: RSS per processor',
    null,
    many.rssKiBEach,
    'KiB',
    '(reported)',
    () => true,
  );
  add(
    '1,000 processors on one shared connection: time to ready() all',
    null,
    many.readyMs,
    'ms',
    '(reported)',
    () => true,
  );
  add(
    '1,000 processors on one shared connection: set up again after the broker closes it',
    null,
    many.recoverMs,
    'ms',
    '(reported; -1: no rabbitmqctl)',
    () => true,
  );
}

// What each knob costs (not run by default): BENCH_ONLY=knobs. Each variant against the default (prefetch 100, 1,000
// sends awaited together, durable queue).
if (only?.split(',').includes('knobs')) {
  const variants: Array<[string, Parameters<typeof postageThroughput>[3], number]> = [
    ['prefetch 1', { prefetch: 1 }, 5_000],
    ['prefetch 10', { prefetch: 10 }, 20_000],
    ['each send awaited alone', { window: 1 }, 2_000],
    ['100 sends awaited together', { window: 100 }, 20_000],
    ['non-durable queue', { durable: false }, 20_000],
  ];
  for (const [name, knobs, n] of variants) {
    const r = await sideBySide(
      () => postageThroughput(url, n, 100),
      () => postageThroughput(url, n, 100, knobs),
    );
    add(`knob: ${name} (against the default)`, median(r.raw), median(r.postage), 'msg/s', '(reported)', () => true);
  }
}

// The table of docs/scaling.md (not run by default): BENCH_ONLY=scaling. Handlers that wait 5 ms (I/O) or not at all,
// by concurrency and prefetch.
if (only?.split(',').includes('scaling')) {
  const cases: Array<[string, ConsumeKnobs & { prefetch?: number }, number]> = [
    ['5 ms handlers, concurrency 1 (prefetch 1)', { waitMs: 5 }, 400],
    ['5 ms handlers, concurrency 4 (prefetch 8)', { waitMs: 5, concurrency: 4 }, 1_500],
    ['5 ms handlers, concurrency 16 (prefetch 32)', { waitMs: 5, concurrency: 16 }, 4_000],
    ['5 ms handlers, concurrency 64 (prefetch 128)', { waitMs: 5, concurrency: 64 }, 10_000],
    ['5 ms handlers, concurrency 64, orderBy 64 keys (prefetch 256)', { waitMs: 5, concurrency: 64, keys: 64 }, 10_000],
    ['no wait, concurrency 1, prefetch 1', {}, 3_000],
    ['no wait, concurrency 1, prefetch 10', { prefetch: 10 }, 10_000],
    ['no wait, concurrency 1, prefetch 100', { prefetch: 100 }, 20_000],
    ['no wait, concurrency 4 (prefetch 8)', { concurrency: 4 }, 10_000],
  ];
  for (const [name, knobs, n] of cases)
    add(
      `scaling: ${name}`,
      null,
      median([await postageConsume(url, n, knobs), await postageConsume(url, n, knobs)]),
      'msg/s',
      '(reported)',
      () => true,
    );
}

// Partitions spread over replicas (not run by default: a minute of 5 ms handlers): BENCH_ONLY=partitions. The
// median of the runs for 1, 2 and 3 replicas, run alternately; 3 replicas are to go at least 2.5 times as fast as one.
if (only?.split(',').includes('partitions')) {
  const n = Number(process.env.BENCH_PARTITION_MESSAGES ?? 2000);
  const rates: number[][] = [[], [], []];
  for (let i = 0; i < rounds; i++) for (const r of [1, 2, 3]) rates[r - 1].push(await partitionedRate(url, r, n));
  const one = median(rates[0]);
  for (const r of [1, 2, 3]) {
    const rate = median(rates[r - 1]);
    add(
      `partitions: 12 over ${r} replica${r === 1 ? '' : 's'}, 5 ms handler, concurrency 1, 1,200 keys`,
      r === 1 ? null : one,
      rate,
      'msg/s',
      r === 3 ? '>= 2.5x one replica' : '(reported)',
      (ratio) => r !== 3 || (ratio ?? 0) >= 2.5,
    );
  }
}

console.table(rows);
console.log(
  JSON.stringify({
    bench: 'postage-ts',
    rounds,
    node: process.version,
    gcExposed: typeof (globalThis as { gc?: unknown }).gc === 'function',
    results: rows,
  }),
);
