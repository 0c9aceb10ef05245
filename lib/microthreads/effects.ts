import type { Yielded } from './thread.js';

/**
 * A promise that resolves after `ms` milliseconds; yield it to park the
 * thread. With a `signal`, aborting it ends the wait at once (the promise
 * rejects with the signal's reason, an `AbortError` by default) and frees the
 * timer, so a process waiting only on it can exit.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (!signal) return new Promise((resolve) => setTimeout(resolve, ms));
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const abort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', abort);
      resolve();
    }, ms);
    signal.addEventListener('abort', abort, { once: true });
  });
}

/**
 * `yield promise` types its result as `unknown`; `yield* call(promise)` gives it back typed.
 *
 * @example
 * const r = yield* call(producer.rpc_echo('hi'));   // r: MessageResult | …
 */
export function* call<T>(p: PromiseLike<T>): Generator<Yielded, T, unknown> {
  return (yield p) as T;
}
