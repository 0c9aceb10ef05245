/** What the partition specs share: waiting for the replicas to agree on the spread. */
import type { MessageProcessor, ProcessorDescription } from '../../lib/index.js';

/**
 * The replicas' descriptions once they agree and each is active on ⌊N/R⌋ or ⌈N/R⌉ partitions (polled: the spread
 * follows hellos and byes on the broker, which give the spec no event); fails after `withinMs` saying what it saw.
 */
export async function settledSpread(
  replicas: MessageProcessor[],
  n: number,
  withinMs = 15_000,
): Promise<ProcessorDescription[]> {
  const deadline = Date.now() + withinMs;
  const [lo, hi] = [Math.floor(n / replicas.length), Math.ceil(n / replicas.length)];
  let counts: number[] = [];
  for (;;) {
    const described = await Promise.all(replicas.map((r) => r.rpcDescribe()));
    counts = described.map((d) => d.partitions![0].activeHere.length);
    const total = counts.reduce((a, b) => a + b, 0);
    const agree = described.every((d) => d.partitions![0].replicas.length === replicas.length);
    if (agree && total === n && counts.every((c) => c >= lo && c <= hi)) return described;
    if (Date.now() > deadline)
      throw new Error(
        `the partitions did not settle over ${replicas.length} replicas within ${withinMs} ms: ` +
          `active on ${counts.join(', ')}`,
      );
    await new Promise((r) => setTimeout(r, 100));
  }
}
