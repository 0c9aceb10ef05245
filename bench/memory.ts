/**
 * Memory cases, each measured in a fresh process (`npm run bench` spawns one
 * per case) so that RSS starts from a clean baseline rather than from what
 * earlier cases left behind.
 *
 *   node --expose-gc --import tsx bench/memory.ts processor|idle URL
 *
 * Prints one JSON line: { heapMiB, rssMiB }.
 */
import { MicroScheduler, MicroThread, sleep } from '../dist/index.js';
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

const [which, url] = process.argv.slice(2);
if (which) {
  process.env.POSTAGE_LOG_LEVEL ??= 'warn';
  const r = which === 'idle' ? await idleThreadsMemory(10_000) : await processorMemory(url, 100_000);
  console.log(JSON.stringify(r));
  process.exit(0);
}
