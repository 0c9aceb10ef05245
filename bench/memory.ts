/**
 * Memory cases, each measured in a fresh process (`npm run bench` spawns one
 * per case) so that RSS starts from a clean baseline rather than from what
 * earlier cases left behind.
 *
 *   node --expose-gc --import tsx bench/memory.ts processor|idle URL
 *
 * Prints one JSON line: { heapMiB, rssMiB }.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { connect, MessageHandler, MessageProcessor, MicroScheduler, MicroThread, sleep } from '../dist/index.js';
import { postageThroughput } from './cases.js';

/** Heap and RSS growth (MiB) after `n` small messages through a processor. */
export async function processorMemory(url: string, n: number): Promise<{ heapMiB: number; rssMiB: number }> {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const before = process.memoryUsage();
  await postageThroughput(url, n, 100);
  gc?.();
  await sleep(50);
  gc?.();
  const after = process.memoryUsage();
  return { heapMiB: (after.heapUsed - before.heapUsed) / 2 ** 20, rssMiB: (after.rss - before.rss) / 2 ** 20 };
}

/** Memory (MiB) held by `n` idle microthreads parked on a scheduler. */
export async function idleThreadsMemory(n: number): Promise<{ heapMiB: number; rssMiB: number }> {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const before = process.memoryUsage();
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  class Idle extends MicroThread {
    override *step() {
      yield gate;
    }
  }
  const s = new MicroScheduler();
  for (let i = 0; i < n; i++) s.addMicrothread(new Idle());
  const running = s.run();
  await sleep(50);
  gc?.();
  const during = process.memoryUsage();
  release();
  s.stop();
  await running;
  return { heapMiB: (during.heapUsed - before.heapUsed) / 2 ** 20, rssMiB: (during.rss - before.rss) / 2 ** 20 };
}

/**
 * `n` processors on one shared connection (`connect()`) in one scheduler: heap
 * and RSS per processor (KiB), the time to ready() them all (ms), and, after
 * the broker closes that connection (`rabbitmqctl close_connection`), the time
 * until every processor is set up on the new one (ms; -1 where rabbitmqctl
 * cannot reach the broker).
 */
export async function manyProcessors(
  url: string,
  n: number,
): Promise<{ heapKiBEach: number; rssKiBEach: number; readyMs: number; recoverMs: number }> {
  const gc = (globalThis as { gc?: () => void }).gc;
  const name = `bench.many.${process.pid}`;
  const conn = await connect({ url, connectionName: name, reconnect: { initialMs: 50, maxMs: 1000 } });
  gc?.();
  const before = process.memoryUsage();
  class Worker extends MessageProcessor {
    @MessageHandler('command', 'payload')
    payload(): void {}
  }
  const tag = `bench.many.${process.pid}`;
  // Auto-delete, not exclusive: an exclusive queue dies with its connection, and this one must outlive the loss below.
  const procs = Array.from(
    { length: n },
    (_, i) =>
      new Worker({
        connection: conn,
        handleSignals: false,
        eqk: [
          [
            { name: '', type: 'direct' },
            [[{ name: `${tag}.${i}`, flags: { durable: false, autoDelete: true } }, `${tag}.${i}`]],
          ],
        ],
      }),
  );
  const t0 = performance.now();
  await Promise.all(procs.map((p) => p.ready()));
  const readyMs = performance.now() - t0;
  const s = new MicroScheduler();
  for (const p of procs) s.addMicrothread(p);
  const running = s.run();
  await sleep(100);
  gc?.();
  const during = process.memoryUsage();
  const recoverMs = await timeRecovery(conn, name);
  s.stop();
  await running;
  await conn.close();
  return {
    heapKiBEach: (during.heapUsed - before.heapUsed) / 1024 / n,
    rssKiBEach: (during.rss - before.rss) / 1024 / n,
    readyMs,
    recoverMs,
  };
}

/** Has the broker close the connection named `name`, and times until `conn` has set everything on it up again. */
async function timeRecovery(conn: Awaited<ReturnType<typeof connect>>, name: string): Promise<number> {
  const ctl = (...args: string[]) => promisify(execFile)('rabbitmqctl', ['-q', ...args]).then((r) => r.stdout);
  let pid: string | undefined;
  try {
    pid = (await ctl('list_connections', '--no-table-headers', 'pid', 'client_properties'))
      .split('\n')
      .find((r) => r.includes(`{"connection_name","${name}"}`))
      ?.split('\t')[0];
  } catch {
    return -1;
  }
  if (!pid) return -1;
  const back = (async () => {
    let lost = false;
    for await (const st of conn.statusChanges()) {
      if (st.state === 'reconnecting') lost = true;
      if (lost && st.state === 'ready') return;
    }
  })();
  const t0 = performance.now();
  await ctl('close_connection', pid, 'bench: a connection loss');
  await back;
  return performance.now() - t0;
}

const [which, url] = process.argv.slice(2);
if (which) {
  process.env.POSTAGE_LOG_LEVEL ??= 'warn';
  const r =
    which === 'idle'
      ? await idleThreadsMemory(10_000)
      : which === 'many'
        ? await manyProcessors(url, 1000)
        : await processorMemory(url, 100_000);
  console.log(JSON.stringify(r));
  process.exit(0);
}
