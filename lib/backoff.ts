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
