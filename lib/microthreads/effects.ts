import type { Yielded } from './thread.js';

/** A promise that resolves after `ms` milliseconds; yield it to park the thread. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
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
