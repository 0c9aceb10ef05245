/**
 * Refuses, before anything is sent, a payload JSON cannot carry faithfully:
 * `JSON.stringify` throws a bare "Do not know how to serialize a BigInt" for
 * one, and silently turns the others into something else (a function or a
 * symbol vanishes, a Map or a Set becomes `{}`, NaN and ±Infinity become
 * `null`), so the receiver would get another value than the sender meant.
 * The error names the path: `parameters.items[2].price is a BigInt`.
 */
export function assertJsonable(value: unknown, path: string): void {
  // Per send, so the common case is one cheap walk that builds nothing; only a refusal walks again to name the path.
  const why = check(value, STACK, 0);
  if (why === undefined) return;
  STACK.length = 0;
  const where = locate(value, path, []) ?? path;
  throw new TypeError(`${where || 'the payload'} is ${why[0]}, which JSON cannot carry: ${why[1]}`);
}

/** Ancestors of the value being checked, reused across calls (a check is synchronous). */
const STACK: object[] = [];

/** What is wrong with `v` (and how to mend it), or undefined: JSON carries it as it is. */
function wrong(v: unknown, ancestors: readonly object[], depth: number): readonly [string, string] | undefined {
  switch (typeof v) {
    case 'string':
    case 'boolean':
    case 'undefined':
      return undefined;
    case 'number':
      return Number.isFinite(v) ? undefined : [String(v), 'send a finite number, or a string'];
    case 'bigint':
      return ['a BigInt', 'send it as a string (String(n)), or as a number if it fits'];
    case 'function':
      return ['a function', 'send data, not code'];
    case 'symbol':
      return ['a symbol', 'send a string'];
  }
  if (v === null || typeof (v as { toJSON?: unknown }).toJSON === 'function') return undefined;
  if (v instanceof Map) return ['a Map', 'send Object.fromEntries(map), or [...map] for entries'];
  if (v instanceof Set) return ['a Set', 'send [...set]'];
  for (let i = 0; i < depth; i++)
    if (ancestors[i] === v)
      return ['a reference to one of its own ancestors (a cycle)', 'send a tree: copy the part you need'];
  return undefined;
}

function check(v: unknown, stack: object[], depth: number): readonly [string, string] | undefined {
  const w = wrong(v, stack, depth);
  if (
    w !== undefined ||
    typeof v !== 'object' ||
    v === null ||
    typeof (v as { toJSON?: unknown }).toJSON === 'function'
  )
    return w;
  stack[depth] = v;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const r = check(v[i], stack, depth + 1);
      if (r !== undefined) return r;
    }
  } else {
    const o = v as Record<string, unknown>;
    // for…in with an own-property test walks the keys without making an array of them per object, per send.
    for (const k in o) {
      if (!Object.hasOwn(o, k)) continue;
      const r = check(o[k], stack, depth + 1);
      if (r !== undefined) return r;
    }
  }
  stack[depth] = undefined as unknown as object;
  return undefined;
}

/** The path of the first value JSON cannot carry (the same order as {@link check}). */
function locate(v: unknown, path: string, ancestors: object[]): string | undefined {
  if (wrong(v, ancestors, ancestors.length) !== undefined) return path;
  if (typeof v !== 'object' || v === null || typeof (v as { toJSON?: unknown }).toJSON === 'function') return undefined;
  ancestors.push(v);
  try {
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        const r = locate(v[i], `${path}[${i}]`, ancestors);
        if (r !== undefined) return r;
      }
    } else {
      for (const k of Object.keys(v)) {
        const r = locate((v as Record<string, unknown>)[k], path === '' ? k : `${path}.${k}`, ancestors);
        if (r !== undefined) return r;
      }
    }
    return undefined;
  } finally {
    ancestors.pop();
  }
}
