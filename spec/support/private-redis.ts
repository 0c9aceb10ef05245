/**
 * A redis-server of the spec's own, on a free port (or the port it had, to
 * bring one back after a kill): specs stop it as an outage does, never the
 * shared one.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { createClient } from 'redis';
import { until } from './wait.js';

export interface PrivateRedis {
  url: string;
  port: number;
  /** Kills it (SIGKILL: an outage, not a shutdown) and waits for it to be gone. */
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

/** Starts a redis-server (no persistence) on `port` or a free one, and resolves once it answers. */
export async function privateRedis(port?: number): Promise<PrivateRedis> {
  const p = port ?? (await freePort());
  const child: ChildProcess = spawn(
    'redis-server',
    ['--port', String(p), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: 'ignore' },
  );
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const url = `redis://127.0.0.1:${p}`;
  await until(
    async () => {
      const c = createClient({ url, socket: { reconnectStrategy: false } });
      c.on('error', () => undefined);
      try {
        await c.connect();
        await c.close();
        return true;
      } catch {
        return false;
      }
    },
    { timeout: 10_000, message: `a private redis-server on port ${p} (is redis-server installed?)` },
  );
  return {
    url,
    port: p,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}
