/**
 * Runs `spec/fixtures/slow-receiver.ts` as a separate component process and
 * follows what it reports, for the specs that signal or kill a consumer;
 * plus the burst it works through and what is left in its queue afterwards.
 */
import amqp from 'amqplib';
import { envelopeBytes } from './envelopes.js';
import { deleteTopology, unique } from './topology.js';
import { spawn } from 'node:child_process';

export interface SlowReceiver {
  /** Ids whose handler began. */
  started: Set<number>;
  /** Ids whose handler ran to the end. */
  handled: Set<number>;
  /** Resolves once `n` handlers have run to the end. */
  whenHandled(n: number): Promise<void>;
  /** Resolves once `n` handlers have begun. */
  whenStarted(n: number): Promise<void>;
  signal(sig: NodeJS.Signals): void;
  /** Resolves with the signal that ended the process. */
  exited: Promise<NodeJS.Signals | null>;
}

export async function startSlowReceiver(
  url: string,
  queue: string,
  env: Record<string, string> = {},
): Promise<SlowReceiver> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'spec/fixtures/slow-receiver.ts', queue], {
    env: { ...process.env, ...env, POSTAGE_URL: url },
  });
  const started = new Set<number>();
  const handled = new Set<number>();
  const waiting: Array<{ n: number; of: Set<number>; resolve: () => void }> = [];
  let out = '';
  const ready = new Promise<void>((resolve) =>
    child.stdout.on('data', (c: Buffer) => {
      out += c;
      for (const m of String(c).matchAll(/(started|handled) (\d+)/g))
        (m[1] === 'started' ? started : handled).add(Number(m[2]));
      if (out.includes('ready')) resolve();
      for (const w of waiting.filter((w) => w.of.size >= w.n)) {
        waiting.splice(waiting.indexOf(w), 1);
        w.resolve();
      }
    }),
  );
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
  await ready;
  return {
    started,
    handled,
    whenHandled: (n) =>
      handled.size >= n ? Promise.resolve() : new Promise((resolve) => waiting.push({ n, of: handled, resolve })),
    whenStarted: (n) =>
      started.size >= n ? Promise.resolve() : new Promise((resolve) => waiting.push({ n, of: started, resolve })),
    signal: (sig) => child.kill(sig),
    exited,
  };
}

/** Publishes `n` persistent `item` commands with ids 0…n-1 to `queue`, confirmed. */
export async function publishItems(url: string, queue: string, n: number): Promise<void> {
  const conn = await amqp.connect(url);
  const ch = await conn.createConfirmChannel();
  for (let id = 0; id < n; id++) {
    ch.publish('', queue, envelopeBytes('item', { id }), { persistent: true });
  }
  await ch.waitForConfirms();
  await conn.close();
}

/** Takes every message left in `queue` and returns their ids. */
export async function drainItems(url: string, queue: string): Promise<Set<number>> {
  const conn = await amqp.connect(url);
  const ch = await conn.createChannel();
  const left = new Set<number>();
  for (;;) {
    const m = await ch.get(queue, { noAck: true });
    if (!m) break;
    left.add(JSON.parse(m.content.toString()).content.parameters.id);
  }
  await conn.close();
  return left;
}

/**
 * Starts a slow receiver on a fresh queue, publishes `n` items to it, sends it `signal` once 20 are handled (the
 * burst well under way, a handler running and more prefetched), waits for it to exit, and takes what is left in the
 * queue (deleting it). `lost` are the ids neither handled nor left: what a spec named "loses none" checks.
 */
export async function signalledMidBurst(
  url: string,
  signal: NodeJS.Signals,
  n: number,
): Promise<{ r: SlowReceiver; exited: NodeJS.Signals | null; left: Set<number>; lost: number[] }> {
  const queue = unique(`burst-${signal.toLowerCase()}`);
  const r = await startSlowReceiver(url, queue);
  await publishItems(url, queue, n);
  await r.whenHandled(20);
  r.signal(signal);
  const exited = await r.exited;
  const left = await drainItems(url, queue);
  await deleteTopology([queue]);
  const lost = Array.from({ length: n }, (_, i) => i).filter((id) => !r.handled.has(id) && !left.has(id));
  return { r, exited, left, lost };
}
