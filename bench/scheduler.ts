/**
 * Scheduler switching speed: steps per second with N busy threads.
 * Run alone with `npx tsx bench/scheduler.ts`; `npm run bench` includes it.
 */
import { MicroScheduler, MicroThread } from '../dist/index.js';

class Busy extends MicroThread {
  n = 0;
  override step(): void {
    this.n++;
  }
}

export async function schedulerStepsPerSecond(threads: number, ms = 1000): Promise<number> {
  const s = new MicroScheduler();
  for (let i = 0; i < threads; i++) s.addMicrothread(new Busy());
  const running = s.run();
  // Warm up, then measure a clean window.
  await new Promise<void>((r) => setTimeout(r, 200));
  const s0 = s.steps;
  const t0 = performance.now();
  await new Promise<void>((r) => setTimeout(r, ms));
  const steps = s.steps - s0;
  const elapsed = performance.now() - t0;
  s.stop();
  await running;
  return (steps / elapsed) * 1000;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const n of [10, 10_000]) {
    const sps = await schedulerStepsPerSecond(n);
    console.log(`${n} threads: ${(sps / 1e6).toFixed(2)} M steps/s`);
  }
}
