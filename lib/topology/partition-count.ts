import type { Channel, ChannelModel } from 'amqplib';
import { BrokerError, PartitionCountMismatch } from '../errors.js';
import { retrying } from '../backoff.js';
import { openChannel } from '../transport/channels.js';
import { takeQueueLock } from '../transport/queue-lock.js';
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

/** The queue whose exclusive declaration is the lock on `queue`'s partitions. @internal */
export function partitionLockName(queue: string): string {
  return `${queue}.partitions.lock`;
}

/** How long a replica waits for another to finish checking and declaring the partitions. */
const LOCK_WAIT_MS = 60_000;

/** This process's holders of each lock: the broker's is per connection, and processors may share one. */
const held = new Map<string, Promise<void>>();

/**
 * Runs `work` (checking the partition count, then declaring the partitions) while no other replica does the same
 * for any of `queues`: each queue's lock is an exclusive queue `QUEUE.partitions.lock`, which the broker keeps for
 * the connection that declared it (gone with it, should that replica die), taken in name order. Without it, replicas
 * started at once each saw the partitions of another half declared (and were refused for a count nobody has), or an
 * empty broker (and started with counts that differ). @internal
 */
export async function underPartitionLock<T>(
  model: ChannelModel,
  queues: readonly string[],
  work: () => Promise<T>,
  waitMs = LOCK_WAIT_MS,
): Promise<T> {
  const names = [...new Set(queues)].sort().map(partitionLockName);
  const release: Array<() => Promise<void>> = [];
  try {
    for (const name of names) release.push(await lock(model, name, Date.now() + waitMs, waitMs));
    return await work();
  } finally {
    for (const r of release.reverse()) await r();
  }
}

async function lock(model: ChannelModel, name: string, deadline: number, waitMs: number): Promise<() => Promise<void>> {
  // In this process first (processors on one connection would each be given the broker's lock).
  for (let other = held.get(name); other; other = held.get(name)) await other;
  let unlock!: () => void;
  held.set(name, new Promise<void>((r) => (unlock = r)));
  const local = () => {
    held.delete(name);
    unlock();
  };
  try {
    const ch = await brokerLock(model, name, deadline, waitMs);
    return async () => {
      await ch.deleteQueue(name).catch(() => undefined);
      await ch.close().catch(() => undefined);
      local();
    };
  } catch (err) {
    local();
    throw err;
  }
}

/** What an attempt throws when another replica holds the lock: the loop waits and tries again until the deadline. */
const HELD = new Error('held by another replica');

async function brokerLock(model: ChannelModel, name: string, deadline: number, waitMs: number): Promise<Channel> {
  const ch = await retrying(
    async () => {
      // Refused, the declare closes its channel: one channel per attempt.
      const ch = await openChannel(model);
      ch.on('error', () => undefined);
      if (await takeQueueLock(ch, name)) return ch;
      await ch.close().catch(() => undefined);
      throw HELD;
    },
    {
      backoff: { initialMs: 20, maxMs: 500, factor: 2, jitter: 0.5 },
      onFailure: (err) => {
        if (err !== HELD) throw err;
        if (Date.now() >= deadline)
          throw new BrokerError(
            `another replica has held the partitions' lock (the exclusive queue '${name}') for over ` +
              `${waitMs / 1000} s while declaring them; is one stuck?`,
            'RESOURCE_LOCKED',
            { amqpCode: 405 },
          );
      },
    },
  );
  // retrying() gives up only when told to stop, which nothing here does.
  return ch!;
}
