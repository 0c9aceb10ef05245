/**
 * `npm run bench`: prints a table and one JSON line of figures.
 * Cases that compare against raw amqplib join here as they land.
 */
import { schedulerStepsPerSecond } from './scheduler.js';

const rows: Array<{ case: string; value: number; unit: string; target: string }> = [];
for (const threads of [10, 10_000]) {
  const sps = await schedulerStepsPerSecond(threads);
  rows.push({ case: `scheduler, ${threads} busy threads`, value: Math.round(sps), unit: 'steps/s', target: threads === 10 ? '>= 10,000,000' : '>= 2,000,000' });
}
console.table(rows);
console.log(JSON.stringify({ bench: 'postage-ts', results: rows }));
