import { createHash } from 'node:crypto';

/**
 * Which replica consumes which partition, worked out alike by every replica
 * from the same two lists (no table kept anywhere, no coordinator): each
 * replica gets ⌊N/R⌋ or ⌈N/R⌉ partitions, the extra ones going to the first
 * replicas by id; within those quotas each partition goes to the replica that
 * ranks it highest (rendezvous hashing), so that a replica joining or leaving
 * moves few partitions besides those it takes or gives.
 * @internal
 */
export function assignPartitions(partitions: readonly string[], replicas: readonly string[]): Map<string, string> {
  const owners = new Map<string, string>();
  const ids = [...new Set(replicas)].sort();
  if (ids.length === 0) return owners;
  const n = partitions.length;
  const base = Math.floor(n / ids.length);
  const extra = n % ids.length;
  const room = new Map(ids.map((id, i) => [id, base + (i < extra ? 1 : 0)]));
  const pairs: Array<{ p: string; r: string; score: bigint }> = [];
  for (const p of partitions) for (const r of ids) pairs.push({ p, r, score: rank(p, r) });
  // Highest score first; ties (none in practice) by name, so every replica breaks them alike.
  pairs.sort((a, b) => (a.score === b.score ? (a.p + a.r < b.p + b.r ? -1 : 1) : a.score > b.score ? -1 : 1));
  for (const { p, r } of pairs) {
    if (owners.has(p)) continue;
    const left = room.get(r)!;
    if (left === 0) continue;
    owners.set(p, r);
    room.set(r, left - 1);
    if (owners.size === n) break;
  }
  return owners;
}

/** How much replica `r` wants partition `p`: the same number on every replica and every platform. */
function rank(p: string, r: string): bigint {
  return createHash('sha1').update(p).update('\0').update(r).digest().readBigUInt64BE(0);
}
