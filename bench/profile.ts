/**
 * One side of a publish -> consume case, for a profile: `npm run build`, then
 *   node --cpu-prof --cpu-prof-dir=/tmp/prof --import tsx bench/profile.ts postage both 50000
 * (or raw; send, consume; steady, the held-out case of bench/steady.ts at prefetch 100, or steady1 at prefetch 1).
 * Prints µs per message; the .cpuprofile opens in Chrome's DevTools.
 */
import { brokerUrls, loadConfig } from '../lib/config.js';
import { lastSplit, postageCpu, rawCpu, type Half } from './cpu.js';
import { postageSteady, rawSteady } from './steady.js';

process.env.POSTAGE_LOG_LEVEL ??= 'warn';
const [side = 'postage', half = 'both', n = '50000'] = process.argv.slice(2);
const url = process.env.BENCH_URL ?? brokerUrls(loadConfig())[0];
if (half === 'steady' || half === 'steady1') {
  const prefetch = half === 'steady' ? 100 : 1;
  const run = side === 'raw' ? rawSteady : postageSteady;
  await run(url, 5_000, prefetch);
  const r = await run(url, Number(n), prefetch);
  const broker = `${r.brokerUs.toFixed(2)} broker`;
  console.log(
    `${side} ${half}: ${r.clientUs.toFixed(2)} µs client CPU per message, ${broker}, ${Math.round(r.perSecond)} msg/s`,
  );
} else {
  const run = side === 'raw' ? rawCpu : postageCpu;
  await run(url, 5_000, half as Half);
  const us = (await run(url, Number(n), half as Half)).toFixed(2);
  const split = `user ${lastSplit.user.toFixed(2)}, system ${lastSplit.system.toFixed(2)}`;
  console.log(`${side} ${half}: ${us} µs per message (${split})`);
}
