/**
 * Waiting between attempts, one way for the whole library: the delay
 * arithmetic ({@link backoffMs}, {@link jittered}) and the one loop that
 * every retry over a broker runs ({@link retrying}): the first connection,
 * reconnection, restoring a component on a connection, reopening a channel,
 * declaring again a queue deleted under its consumer.
 */

/** Reconnection timing. Delays grow by `factor` from `initialMs` up to `maxMs`, each with ±`jitter`. */
export interface ReconnectOptions {
  /** @default 100 */
  initialMs?: number;
  /** @default 10000 */
  maxMs?: number;
  /** @default 2 */
  factor?: number;
  /** @default 0.2 */
  jitter?: number;
}

/** What {@link ReconnectOptions} leaves out, as the docs' `@default`s say. @internal */
export const RECONNECT_DEFAULTS: Readonly<Required<ReconnectOptions>> = Object.freeze({
  initialMs: 100,
  maxMs: 10_000,
  factor: 2,
  jitter: 0.2,
});

/**
 * The delay before retry number `attempt` (0 for the first): `initialMs`
 * multiplied by `factor` once per earlier attempt, never more than `maxMs`.
 * Reconnection, channel reopening and handler retries all wait this way.
 * @internal
 */
export function backoffMs(attempt: number, initialMs: number, maxMs: number, factor = 2): number {
  return Math.min(maxMs, initialMs * factor ** attempt);
}

/**
 * `ms` spread by ±`jitter` (0.2: between 80 % and 120 %), so that components
 * that lost the same broker do not all come back in the same instant, and
 * never more than `maxMs`.
 * @internal
 */
export function jittered(ms: number, jitter: number, maxMs: number, random: () => number = Math.random): number {
  return Math.min(maxMs, ms * (1 - jitter + 2 * jitter * random()));
}

/**
 * The wait before retry number `n` (0 for the first) under `options`, the defaults filling what they leave out.
 * @internal
 */
export function reconnectDelayMs(n: number, options: ReconnectOptions = {}, random?: () => number): number {
  const { initialMs, maxMs, factor, jitter } = { ...RECONNECT_DEFAULTS, ...definedOnly(options) };
  return jittered(backoffMs(n, initialMs, maxMs, factor), jitter, maxMs, random);
}

/** How {@link retrying} runs. @internal */
export interface RetryingOptions {
  /** The timing; what it leaves out comes from {@link RECONNECT_DEFAULTS}. */
  backoff?: ReconnectOptions;
  /** Ends the loop: no attempt starts once it is aborted, and a wait ends at once. */
  signal?: AbortSignal;
  /** Asked before each attempt and after each failure: `false` ends the loop as the signal does. */
  keepGoing?: () => boolean;
  /** Wait before the first attempt too (a reconnection gives the broker a moment first). */
  delayFirst?: boolean;
  /** Which wait comes first (0: `initialMs`); a loop that carries on an earlier streak starts further along. */
  firstWait?: number;
  /**
   * An attempt failed (`attempt` counts from 0) and the loop will wait `waitMs` before the next: log it, or throw
   * to end the loop with that error (a failure no retry can mend).
   */
  onFailure?: (err: unknown, attempt: number, waitMs: number) => void;
  /** A wait is about to begin (`wait` counts from 0, across {@link firstWait}). */
  onWait?: (wait: number, waitMs: number) => void;
  /** Waits do not keep the process alive (a loop nobody awaits, over a resource that may be closed). */
  unref?: boolean;
  /** For specs: the jitter's random source. @default Math.random */
  random?: () => number;
}

/**
 * Runs `attempt` until it resolves, waiting with backoff and jitter between
 * tries: resolves to its value, or to `undefined` once the signal is aborted
 * or `keepGoing` says no. `onFailure` may end it with an error. The one
 * retry loop of the library: every loop that waits for a broker runs here,
 * so each honours the `reconnect` option the same way.
 * @internal
 */
export async function retrying<T>(
  attempt: (n: number) => Promise<T>,
  options: RetryingOptions = {},
): Promise<T | undefined> {
  const { signal, keepGoing, onFailure, onWait } = options;
  const live = () => !signal?.aborted && (keepGoing?.() ?? true);
  let wait = options.firstWait ?? 0;
  const next = () => reconnectDelayMs(wait, options.backoff, options.random);
  const pause = async (ms: number): Promise<boolean> => {
    onWait?.(wait, ms);
    wait++;
    return live() && (await sleep(ms, signal, options.unref)) && live();
  };
  if (options.delayFirst && !(await pause(next()))) return undefined;
  for (let n = 0; ; n++) {
    if (!live()) return undefined;
    let ms: number;
    try {
      return await attempt(n);
    } catch (err) {
      ms = next();
      onFailure?.(err, n, ms);
    }
    if (!(await pause(ms))) return undefined;
  }
}

/** Resolves `true` after `ms`, or `false` at once when `signal` is (or gets) aborted, clearing its timer. */
function sleep(ms: number, signal: AbortSignal | undefined, unref = false): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve(false);
    const stop = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', stop);
      resolve(true);
    }, ms);
    if (unref) timer.unref();
    signal?.addEventListener('abort', stop, { once: true });
  });
}

function definedOnly(o: ReconnectOptions): ReconnectOptions {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
}
