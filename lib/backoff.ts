/**
 * The delay before retry number `attempt` (0 for the first): `initialMs`
 * multiplied by `factor` once per earlier attempt, never more than `maxMs`.
 * Reconnection, channel reopening and handler retries all wait this way.
 * @internal
 */
export function backoffMs(attempt: number, initialMs: number, maxMs: number, factor = 2): number {
  return Math.min(maxMs, initialMs * factor ** attempt);
}
