/**
 * Refuses, before anything is sent, a payload JSON cannot carry faithfully:
 * `JSON.stringify` throws a bare "Do not know how to serialize a BigInt" for
 * one, and silently turns the others into something else (a function or a
 * symbol vanishes, a Map or a Set becomes `{}`, NaN and ±Infinity become
 * `null`), so the receiver would get another value than the sender meant.
 * The error names the path: `parameters.items[2].price is a BigInt`.
 */
export function assertJsonable(value: unknown, path: string): void {
  walk(value, path, undefined);
}

function walk(v: unknown, path: string, ancestors: Set<object> | undefined): void {
  switch (typeof v) {
    case 'string':
    case 'boolean':
    case 'undefined':
      return;
    case 'number':
      if (!Number.isFinite(v)) refuse(path, String(v), 'send a finite number, or a string');
      return;
    case 'bigint':
      refuse(path, 'a BigInt', 'send it as a string (String(n)), or as a number if it fits');
      return;
    case 'function':
      refuse(path, 'a function', 'send data, not code');
      return;
    case 'symbol':
      refuse(path, 'a symbol', 'send a string');
      return;
  }
  if (v === null) return;
  const o = v as object;
  // Dates, Buffers and anything else that says how it is written as JSON.
  if (typeof (o as { toJSON?: unknown }).toJSON === 'function') return;
  if (o instanceof Map) refuse(path, 'a Map', 'send Object.fromEntries(map), or [...map] for entries');
  if (o instanceof Set) refuse(path, 'a Set', 'send [...set]');
  const seen = ancestors ?? new Set<object>();
  if (seen.has(o)) refuse(path, 'a reference to one of its own ancestors (a cycle)', 'send a tree: copy the part you need');
  seen.add(o);
  if (Array.isArray(o)) for (let i = 0; i < o.length; i++) walk(o[i], `${path}[${i}]`, seen);
  else for (const k of Object.keys(o)) walk((o as Record<string, unknown>)[k], path === '' ? k : `${path}.${k}`, seen);
  seen.delete(o);
}

function refuse(path: string, what: string, fix: string): never {
  throw new TypeError(`${path || 'the payload'} is ${what}, which JSON cannot carry: ${fix}`);
}
