/** What the partition specs share: replicas in processes of their own, and waiting for the replicas to agree. */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { MessageProcessor, ProcessorDescription } from '../../lib/index.js';
import { within } from './wait.js';

export interface ReplicaOptions {
  url: string;
  exchange: string;
  queue: string;
  partitions: number;
  /** Its connection's heartbeat, in seconds. @default amqplib's */
  heartbeat?: number;
  /** Close gracefully on SIGTERM. @default false */
  signals?: boolean;
  /** Told of each message as the replica handles it (before its ack). */
  handled?: (key: string, seq: number) => void;
}

/**
 * Starts spec/fixtures/partition-replica.ts in a process of its own and resolves once it printed "ready" (it has
 * declared its topology and consumes), or rejects after `timeout` ms. The caller kills it.
 */
export async function spawnReplica(o: ReplicaOptions, timeout = 30_000): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'spec/fixtures/partition-replica.ts'], {
    env: {
      ...process.env,
      POSTAGE_URL: o.url,
      EXCHANGE: o.exchange,
      QUEUE: o.queue,
      PARTITIONS: String(o.partitions),
      POSTAGE_LOG_LEVEL: 'silent',
      SIGNALS: o.signals ? '1' : '0',
      ...(o.heartbeat ? { HEARTBEAT: String(o.heartbeat) } : {}),
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let ready!: () => void;
  const isReady = new Promise<void>((r) => (ready = r));
  createInterface({ input: child.stdout! }).on('line', (l) => {
    if (l === 'ready') ready();
    const [tag, key, seq] = l.split(' ');
    if (tag === 'h') o.handled?.(key, Number(seq));
  });
  try {
    await within(isReady, { timeout, message: `replica ${child.pid} ready` });
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  return child;
}

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
