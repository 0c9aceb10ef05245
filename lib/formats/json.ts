/**
 * Plain JSON, as other systems send it: what tells it from a Postage envelope, how a binding key matches a routing
 * key, and the plain reply a JSON request gets.
 */

/** The keys every Postage envelope has (`_reserved` may be missing: Python Postage fills it in). */
const ENVELOPE_KEYS = ['type', 'name', 'category', 'version', 'fingerprint', 'content'] as const;

/**
 * Whether a decoded body claims to be a Postage envelope: an object with the envelope's keys (any version). One
 * that claims it and fails the envelope's checks is malformed; anything else is foreign, for the JSON handlers.
 * @internal
 */
export function isEnvelopeShaped(v: unknown): boolean {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const o = v as Record<string, unknown>;
  // Any version: a body with every envelope key is an envelope, of another version if not '2' (unreadable, kept in the
  // error queue), not plain JSON for a catch-all JSON handler.
  if (o.version === undefined) return false;
  for (const k of ENVELOPE_KEYS) if (!Object.hasOwn(o, k)) return false;
  return true;
}

/**
 * Whether a routing key matches a binding key as a topic exchange matches them: words split at dots, `*` exactly one
 * word, `#` none or more. A key without `*` or `#` matches itself only.
 * @internal
 */
export function topicMatcher(binding: string): (routingKey: string) => boolean {
  if (!binding.includes('*') && !binding.includes('#')) return (k) => k === binding;
  const words = binding.split('.');
  return (k) => matchWords(words, 0, k.split('.'), 0);
}

function matchWords(p: readonly string[], i: number, k: readonly string[], j: number): boolean {
  while (i < p.length) {
    const w = p[i];
    if (w === '#') {
      // A run of '#'s is one '#'; a trailing one takes the rest, whatever it is.
      while (i + 1 < p.length && p[i + 1] === '#') i++;
      if (i === p.length - 1) return true;
      for (let s = j; s <= k.length; s++) if (matchWords(p, i + 1, k, s)) return true;
      return false;
    }
    if (j >= k.length || (w !== '*' && w !== k[j])) return false;
    i++;
    j++;
  }
  return j === k.length;
}

/**
 * A JSON handler's answer to a request with `reply_to`, as the JSON the caller expects (no envelope): throws for a
 * value JSON cannot carry (a BigInt, a cycle), which fails the handler.
 * @internal
 */
export function plainReply(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value === undefined ? null : value));
}
