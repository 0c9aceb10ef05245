/**
 * Where a connection stands, as data: a health check reads `status`, a
 * dashboard follows `statusChanges()`.
 */
export type ConnectionStatus =
  /** Opening the first connection (waiting for a broker, up to `waitForBrokerMs`). */
  | { readonly state: 'connecting' }
  /** Connected, and everything on it set up. */
  | { readonly state: 'ready' }
  /** Lost; trying again (`attempt` counts from 1), with the last error. */
  | { readonly state: 'reconnecting'; readonly attempt: number; readonly lastError: Error | undefined }
  /** Connected, but the broker takes no publishes (a memory or disk alarm), with its reason. */
  | { readonly state: 'blocked'; readonly reason: string }
  /** Closed for good (by `close()`, or a first connection that failed). */
  | { readonly state: 'closed' };

/**
 * One connection's status and whoever waits for its changes. Its iterators
 * end when it is closed; one that falls behind sees every change in order.
 */
export class StatusBoard {
  #status: ConnectionStatus = { state: 'connecting' };
  readonly #readers = new Set<{ queue: ConnectionStatus[]; wake: (() => void) | undefined }>();

  get status(): ConnectionStatus {
    return this.#status;
  }

  set(status: ConnectionStatus): void {
    if (this.#status.state === 'closed') return;
    const same =
      status.state === this.#status.state &&
      (status.state !== 'reconnecting' || (this.#status as { attempt: number }).attempt === status.attempt);
    if (same && status.state !== 'blocked') return;
    this.#status = status;
    for (const r of this.#readers) {
      r.queue.push(status);
      r.wake?.();
    }
  }

  /** Each status from now on, as it changes; ends after `closed`. */
  changes(): AsyncIterableIterator<ConnectionStatus> {
    const reader: { queue: ConnectionStatus[]; wake: (() => void) | undefined } = { queue: [], wake: undefined };
    const readers = this.#readers;
    if (this.#status.state !== 'closed') readers.add(reader);
    let ended = this.#status.state === 'closed';
    const it: AsyncIterableIterator<ConnectionStatus> = {
      async next(): Promise<IteratorResult<ConnectionStatus>> {
        for (;;) {
          const s = reader.queue.shift();
          if (s) {
            if (s.state === 'closed') {
              ended = true;
              readers.delete(reader);
            }
            return { done: false, value: s };
          }
          if (ended) return { done: true, value: undefined };
          await new Promise<void>((resolve) => (reader.wake = resolve));
          reader.wake = undefined;
        }
      },
      async return(): Promise<IteratorResult<ConnectionStatus>> {
        ended = true;
        readers.delete(reader);
        reader.wake?.();
        return { done: true, value: undefined };
      },
      [Symbol.asyncIterator]: () => it,
    };
    return it;
  }
}
