/**
 * Keyed, numbered messages and the check that each key's were first taken up in order: what the partition specs share.
 */
import type { MessageSender } from '../../lib/index.js';

/**
 * Sends `n` messages `{ key, seq }` over `keys` keys (seq counts per key), `batch` awaited together, each with its key
 * as `_partition_key`.
 */
export async function sendKeyed(
  send: MessageSender,
  n: number,
  keys: number,
  batch: number,
  onConfirmed?: (id: string) => void,
): Promise<void> {
  const next = new Map<string, number>();
  for (let i = 0; i < n; i += batch) {
    const sends = [];
    for (let j = i; j < Math.min(n, i + batch); j++) {
      const key = `k${j % keys}`;
      const seq = next.get(key) ?? 0;
      next.set(key, seq + 1);
      sends.push(send({ key, seq }, { _partition_key: key }).then(() => onConfirmed?.(`${key}/${seq}`)));
    }
    await Promise.all(sends);
  }
}

/**
 * The first handlings, in the order they happened, that broke their key's order (empty when every key's were in
 * sequence).
 */
export function outOfOrder(firstStarts: ReadonlyArray<readonly [string, number]>): Array<readonly [string, number]> {
  const last = new Map<string, number>();
  return firstStarts.filter(([key, seq]) => {
    const before = last.get(key) ?? -1;
    last.set(key, seq);
    return seq !== before + 1;
  });
}

/** What handlers record of keyed messages: each message's first handling, in the order they began. */
export class FirstHandlings {
  readonly seen = new Set<string>();
  readonly starts: Array<readonly [string, number]> = [];

  /** Records a handling; true when it is the message's first. */
  take({ key, seq }: { key: string; seq: number }): boolean {
    const id = `${key}/${seq}`;
    if (this.seen.has(id)) return false;
    this.seen.add(id);
    this.starts.push([key, seq]);
    return true;
  }
}
