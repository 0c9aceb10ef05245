/**
 * Memory cases, each measured in a fresh process (`npm run bench` spawns one
 * per case) so that RSS starts from a clean baseline rather than from what
 * earlier cases left behind.
 *
 *   node --expose-gc --import tsx bench/memory.ts processor|idle URL
 *
 * Prints one JSON line: { heapMiB, rssMiB }.
 */
import amqp from 'amqplib';
import { MessageHandler, MessageProcessor, MicroScheduler, MicroThread, sleep } from '../dist/index.js';
import { postageThroughput } from './cases.js';

/** Heap and RSS growth (MiB) after `n` small messages through a processor. */
export async function processorMemory(url: string, n: number): Promise<{ heapMiB: number; rssMiB: number }> {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const before = process.memoryUsage();
  await postageThroughput(url, n, 100);
  gc?.();
  await sleep(50);
  gc?.();
  const after = process.memoryUsage();
  return { heapMiB: (after.heapUsed - before.heapUsed) / 2 ** 20, rssMiB: (after.rss - before.rss) / 2 ** 20 };
}

/** Memory (MiB) held by `n` idle microthreads parked on a scheduler. */
export async function idleThreadsMemory(n: number): Promise<{ heapMiB: number; rssMiB: number }> {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const before = process.memoryUsage();
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  class Idle extends MicroThread {
    override *step() {
      yield gate;
    }
  }
  const s = new MicroScheduler();
  for (let i = 0; i < n; i++) s.addMicrothread(new Idle());
  const running = s.run();
  await sleep(50);
  gc?.();
  const during = process.memoryUsage();
  release();
  s.stop();
  await running;
  return { heapMiB: (during.heapUsed - before.heapUsed) / 2 ** 20, rssMiB: (during.rss - before.rss) / 2 ** 20 };
}

/** `n` processors on one shared connection in one scheduler: heap and RSS per processor (KiB), and the time to ready() them all (ms). */
export async function manyProcessors(url: string, n: number): Promise<{ heapKiBEach: number; rssKiBEach: number; readyMs: number }> {
  const gc = (globalThis as { gc?: () => void }).gc;
  const conn = await amqp.connect(url, { noDelay: true });
  gc?.();
  const before = process.memoryUsage();
  class Worker extends MessageProcessor {
    @MessageHandler('command', 'payload')
    payload(): void {}
  }
  const tag = `bench.many.${process.pid}`;
  const procs = Array.from({ length: n }, (_, i) => new Worker({ connection: conn, handleSignals: false, eqk: [[{ name: '', type: 'direct' }, [[{ name: `${tag}.${i}`, flags: { exclusive: true } }, `${tag}.${i}`]]]] }));
  const t0 = performance.now();
  await Promise.all(procs.map((p) => p.ready()));
  const readyMs = performance.now() - t0;
  const s = new MicroScheduler();
  for (const p of procs) s.addMicrothread(p);
  const running = s.run();
  await sleep(100);
  gc?.();
  const during = process.memoryUsage();
  s.stop();
  await running;
  await conn.close();
  return { heapKiBEach: (during.heapUsed - before.heapUsed) / 1024 / n, rssKiBEach: (during.rss - before.rss) / 1024 / n, readyMs };
}

const [which, url] = process.argv.slice(2);
if (which) {
  process.env.POSTAGE_LOG_LEVEL ??= 'warn';
  const r = which === 'idle' ? await idleThreadsMemory(10_000) : which === 'many' ? await manyProcessors(url, 1000) : await processorMemory(url, 100_000);
  console.log(JSON.stringify(r));
  process.exit(0);
}
