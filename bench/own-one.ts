/**
 * One own-code case of bench/own-cost.ts, one side, in a fresh process: for alternating runs of two builds (each
 * build's `bench/` imports its own `dist/`), and for a profile of the timed part alone:
 *   node --import tsx bench/own-one.ts server postage [/tmp/server.cpuprofile]
 * (caller, server or consumer; raw or postage). With a path, the timed calls (not the warm-up, not the start) are
 * profiled, sampled every 25 µs. BENCH_OWN_WARM and BENCH_OWN_CALLS set the calls (20,000 each).
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { callerOwnCost, consumerOwnCost, serverOwnCost } from './own-cost.js';

process.env.POSTAGE_LOG_LEVEL ??= 'warn';
const [which = 'server', kind = 'postage', profile] = process.argv.slice(2);
if (kind !== 'raw' && kind !== 'postage') throw new Error(`raw or postage, not ${kind}`);
const url = process.env.BENCH_URL ?? process.env.POSTAGE_URL ?? 'amqp://guest:guest@localhost:5672';
if (profile) {
  // own-cost times with process.cpuUsage(): its second start is the timed part's, and the next reading ends it.
  const session = new Session();
  session.connect();
  session.post('Profiler.setSamplingInterval', { interval: 25 });
  const cpuUsage = process.cpuUsage.bind(process);
  let starts = 0;
  let on = false;
  process.cpuUsage = ((since?: NodeJS.CpuUsage) => {
    if (!since && ++starts === 2) {
      session.post('Profiler.enable');
      session.post('Profiler.start');
      on = true;
    } else if (since && on) {
      on = false;
      session.post('Profiler.stop', (_err, r) => writeFileSync(profile, JSON.stringify(r.profile)));
    }
    return cpuUsage(since);
  }) as typeof process.cpuUsage;
}
const cases = { caller: callerOwnCost, server: serverOwnCost, consumer: consumerOwnCost };
const run = cases[which as keyof typeof cases];
if (!run) throw new Error(`caller, server or consumer, not ${which}`);
console.log(`${which} ${kind} ${(await run(kind, url)).toFixed(2)} µs`);
process.exit(0);
