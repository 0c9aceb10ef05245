/**
 * Something to park on that costs nothing per wait: each `then` callback
 * waits in a list until `wakeOne()` or `wakeAll()` calls it (once, with no
 * value). A thread yields it; `await` works on it too.
 *
 * A promise per wait would cost a promise, its resolving functions and a
 * reaction for every delivery a processor waits for (about half a kilobyte
 * of garbage per RPC round trip, with the scheduler's own idle wait);
 * collected young, but collected, and each collection lands on a call.
 * It never rejects, and `then` does not chain: it is for parking, not for
 * composing.
 * @internal
 */
export class WakeList implements PromiseLike<void> {
  readonly #waiting: Array<() => void> = [];

  then<T1 = void, T2 = never>(onWake?: ((value: void) => T1 | PromiseLike<T1>) | null): PromiseLike<T1 | T2> {
    if (onWake) this.#waiting.push(onWake as () => void);
    return this as unknown as PromiseLike<T1 | T2>;
  }

  /** Wakes the longest waiting, if one waits. */
  wakeOne(): void {
    this.#waiting.shift()?.();
  }

  wakeAll(): void {
    for (const w of this.#waiting.splice(0)) w();
  }
}
