/** What the partition specs share: replicas in processes of their own, and waiting for the replicas to agree. */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import {
  GenericProducer,
  type ExchangeObject,
  type MessageProcessor,
  type MessageSender,
  type ProcessorDescription,
  type ProcessorOptions,
} from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import { brokerUrl } from './broker.js';
import { deleteTopology, unique } from './topology.js';
import { until, within } from './wait.js';

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

/** One partitioned queue for replicas started in this process: its names, each replica's options, and its clean-up. */
export interface PartitionedFixture {
  url: string;
  exchange: ExchangeObject;
  queue: string;
  /** The partition queues, `QUEUE.p0` … */
  names: string[];
  /**
   * Replica `i`'s options: its own fingerprint pid, `partitions`, rebalancing with beats of `heartbeatMs`, no signals,
   * no log lines (unless `extra` gives a logger), the queue bound to the exchange with the key `work`.
   */
  options(i: number, extra?: ProcessorOptions): ProcessorOptions;
  /** A producer whose `message_work` sends to the exchange with the key `work` (closed by the caller). */
  sender(): Promise<GenericProducer & { message_work: MessageSender }>;
  /** Waits until `replica` is active on every partition (the first replica of a fleet). */
  activeOnAll(replica: MessageProcessor): Promise<void>;
  /** Deletes the partition queues, the hash and replicas exchanges and the exchange. */
  remove(): Promise<void>;
}

/** A {@link PartitionedFixture} with names from `prefix`. */
export async function partitionedFixture(
  prefix: string,
  partitions: number,
  heartbeatMs: number,
): Promise<PartitionedFixture> {
  const url = await brokerUrl();
  const exchange: ExchangeObject = { name: unique(`${prefix}-ex`), type: 'direct' };
  const queue = unique(`${prefix}-q`);
  const names = Array.from({ length: partitions }, (_, i) => `${queue}.p${i}`);
  return {
    url,
    exchange,
    queue,
    names,
    options: (i, extra = {}) => ({
      url,
      logger: makeLogger('silent'),
      fingerprint: { name: 'worker', pid: `${process.pid}-${i}` },
      partitions,
      rebalance: { heartbeatMs },
      handleSignals: false,
      eqk: [[exchange, [[queue, 'work']]]],
      ...extra,
    }),
    async sender() {
      class Sender extends GenericProducer {
        static override eks = [[exchange, 'work'] as const];
        declare message_work: MessageSender;
      }
      return Sender.create({ url });
    },
    async activeOnAll(replica) {
      await until(async () => (await replica.rpcDescribe()).partitions![0].activeHere.length === partitions, {
        message: `replica ${replica.fingerprint.pid} active on all ${partitions} partitions`,
      });
    },
    remove: () => deleteTopology(names, [`${queue}.partitions`, `${queue}.replicas`, exchange.name]),
  };
}
