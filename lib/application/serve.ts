import { isProcessor } from '../receive/processor.js';
import { MicroScheduler } from '../microthreads/scheduler.js';
import { isMicroThread, type MicroThread } from '../microthreads/thread.js';
import { closeOnSignal, DEFAULT_DRAIN_MS } from '../lifecycle/signals.js';

/** How `serve()` runs its components. */
export interface ServeOptions {
  /**
   * Close them gracefully on SIGTERM / SIGINT (then let the signal end the
   * process). Off where the host has its own shutdown (a framework, a process
   * manager): it calls `close()`. Each processor's own `handleSignals` still applies.
   * @default true
   */
  handleSignals?: boolean;
  /** Called when a component fails (its thread throws): the others go on. @default the scheduler logs it */
  onError?: (component: MicroThread, err: unknown) => void;
}

/** What `serve()` returns: the running components, and how to stop them. */
export interface Served {
  readonly components: readonly MicroThread[];
  /** Resolves once every component has stopped (a `quit`, `close()`, or each ended by itself). */
  readonly done: Promise<void>;
  /** Stops taking work, lets handlers in flight finish and settle, closes every component. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Runs components: every processor made ready (declared and bound; on a
 * refusal the others are closed and it rejects), then all of them on one
 * scheduler, until they stop or `close()`. The ready → scheduler → run →
 * close dance, in one call. The last argument may be {@link ServeOptions}.
 *
 * @example
 * await using served = await serve(new Orders(), new Invoices());
 * await served.done;
 */
export async function serve(...args: Array<MicroThread | ServeOptions>): Promise<Served> {
  const last = args.at(-1);
  const options: ServeOptions = last !== undefined && !isMicroThread(last) ? (args.pop() as ServeOptions) : {};
  const components = args.map((c, i) => {
    if (!isMicroThread(c))
      throw new TypeError(
        `serve(): argument ${i + 1} is not a component (a MessageProcessor or a MicroThread); options go last`,
      );
    return c;
  });
  const processors = components.filter(isProcessor);
  const readied = await Promise.allSettled(processors.map((p) => p.ready()));
  const refused = readied.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (refused) {
    await Promise.allSettled(components.map((c) => c.close()));
    throw refused.reason;
  }
  const scheduler = new MicroScheduler({ name: 'serve', autoquit: true, onThreadError: options.onError });
  for (const c of components) scheduler.addMicrothread(c);
  const done = scheduler.run();
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      forget?.();
      await Promise.allSettled(components.map((c) => c.close()));
      scheduler.stop();
      await done;
    })());
  const drainTimeoutMs = Math.max(DEFAULT_DRAIN_MS, ...processors.map((p) => p.drainTimeoutMs));
  const forget = options.handleSignals === false ? undefined : closeOnSignal({ close, drainTimeoutMs });
  void done.then(() => forget?.());
  return { components, done, close, [Symbol.asyncDispose]: close };
}
