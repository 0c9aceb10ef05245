/**
 * One side's RPC caller in a process of its own, for the bench's latency rows
 * (see rpcLatency in cases.ts), driven by its parent over IPC:
 *   fork bench/rpc-caller.ts raw|postage URL QUEUE with-server|apart
 * With `with-server` it also runs the echo server on QUEUE in this process.
 * It warms up, says so with an empty message, then answers { calls: n } with
 * the n round trips' latencies (ms), one call in flight, and the garbage
 * collections this process ran meanwhile; { stop: true } ends it.
 */
import { PerformanceObserver } from 'node:perf_hooks';
import { RPC_WARMUP, drive, postageCaller, rawCaller, startPostageEcho, startRawEcho } from './cases.js';

const [kind, url, queue, where] = process.argv.slice(2);
const stopServer =
  where === 'with-server' ? await (kind === 'raw' ? startRawEcho : startPostageEcho)(url, queue) : async () => {};
const caller = await (kind === 'raw' ? rawCaller : postageCaller)(url, queue);
await drive(RPC_WARMUP, 1, caller.one);
let gcs = 0;
new PerformanceObserver((list) => (gcs += list.getEntries().length)).observe({ entryTypes: ['gc'] });
process.send!({});
process.on('message', (m: { calls?: number; stop?: boolean }) => {
  if (m.stop) {
    void caller
      .close()
      .then(stopServer)
      .then(() => process.exit(0));
    return;
  }
  void (async () => {
    const latencies: number[] = [];
    const before = gcs;
    for (let i = 0; i < m.calls!; i++) latencies.push(await caller.one());
    // The observer hears of a collection a tick after it ran.
    await new Promise((resolve) => setImmediate(resolve));
    process.send!({ latencies, gcs: gcs - before });
  })();
});
