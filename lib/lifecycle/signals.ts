import { componentLogger } from '../log.js';

/** Something that can close gracefully: stop taking work, finish what is in flight, close. */
export interface Closable {
  close(): Promise<void>;
  /** How long a signal waits for it to close. */
  readonly drainTimeoutMs?: number;
}

/** How long a signal waits for handlers in flight, unless a component says otherwise. */
export const DEFAULT_DRAIN_MS = 10_000;

const SIGNALS = ['SIGTERM', 'SIGINT'] as const;
const live = new Set<Closable>();
const handlers = { SIGTERM: () => void shutdown('SIGTERM'), SIGINT: () => void shutdown('SIGINT') };
let installed = false;

/**
 * Registers a component to be closed gracefully on SIGTERM / SIGINT. Once all
 * are closed (or the timeout passed) the signal is raised again with our
 * handler gone, so the process ends exactly as it would have without us
 * (unless the application listens for that signal itself).
 * @internal
 */
export function closeOnSignal(c: Closable): () => void {
  live.add(c);
  if (!installed) {
    installed = true;
    for (const sig of SIGNALS) process.once(sig, handlers[sig]);
  }
  return () => live.delete(c);
}

async function shutdown(sig: (typeof SIGNALS)[number]): Promise<void> {
  const log = componentLogger('shutdown');
  // A host that listens for the signal too (postage run) says what it does with it: one line for one event.
  const hosted = process.listenerCount(sig) > 0;
  log[hosted ? 'debug' : 'info']({ signal: sig, components: live.size }, 'closing components gracefully');
  // The longest drain any live component asked for; past it, close anyway (unacked deliveries go back to their queue).
  const shutdownTimeoutMs = Math.max(0, ...[...live].map((c) => c.drainTimeoutMs ?? DEFAULT_DRAIN_MS));
  const all = Promise.allSettled([...live].map((c) => c.close()));
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), shutdownTimeoutMs)));
  if ((await Promise.race([all, timeout])) === 'timeout')
    log.warn(
      { signal: sig },
      `handlers still running after ${shutdownTimeoutMs} ms: closing anyway (their messages go back to the queue)`,
    );
  clearTimeout(timer);
  for (const s of SIGNALS) process.removeListener(s, handlers[s]);
  installed = false;
  // Without other listeners, Node's default for the signal ends the process, as if we had never been here.
  if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
}
