import type { ChannelModel } from 'amqplib';
import { PartitionCountMismatch } from '../errors.js';
import { openChannel } from '../transport/channels.js';
import { MAX_PARTITIONS } from './partitions.js';

/**
 * Refuses a processor whose partition count differs from what the broker already has for `queue`: passive declares
 * of `QUEUE.p{n-1}` and `QUEUE.p{n}` (and, when they disagree, a search for the broker's number). Nothing there yet
 * (a first deployment) is accepted. @internal
 */
export async function checkPartitionCount(model: ChannelModel, queue: string, n: number): Promise<void> {
  const exists = async (i: number): Promise<boolean> => {
    // A passive declare of a missing queue closes its channel: one channel per question.
    const ch = await openChannel(model);
    ch.on('error', () => undefined);
    try {
      await ch.checkQueue(`${queue}.p${i}`);
      return true;
    } catch {
      return false;
    } finally {
      await ch.close().catch(() => undefined);
    }
  };
  const last = await exists(n - 1);
  const beyond = await exists(n);
  if (last && !beyond) return;
  if (!last && !beyond && !(await exists(0))) return;
  // The broker's number: the highest partition that exists, found by halving.
  let lo = 0;
  let hi = MAX_PARTITIONS;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (await exists(mid)) lo = mid;
    else hi = mid - 1;
  }
  throw new PartitionCountMismatch(queue, n, lo + 1);
}
