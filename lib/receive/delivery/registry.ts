import { MicroThread } from '../../microthreads/thread.js';
import { isHandlerClass, refuseShadowingIn, tagsOf, type HandlerTag } from '../handlers.js';
import type { MessageBody } from '../../envelope/messages.js';

/** A (sync) generator function: driven by the scheduler, resumed inside its scope. */
function isGeneratorFunction(fn: unknown): boolean {
  return typeof fn === 'function' && fn.constructor?.name === 'GeneratorFunction';
}

/** One handler as the registry holds it: a tagged method, or a `Handler` class on a static. */
export interface Registered {
  fn: (...args: unknown[]) => unknown;
  tag: HandlerTag;
  isClass: boolean;
  /** Runs under AsyncLocalStorage (any handler but a generator): its continuations keep their delivery. */
  isAsync: boolean;
  /** An RPC handler whose yields are a stream's items: an async generator, or one tagged `{ stream: true }`. */
  isStream: boolean;
}

/** Handlers by `category|type|name` (`*` for every name of a type), in declaration order. */
export type Registry = Map<string, Registered[]>;

const registries = new WeakMap<object, Registry>();
const NONE: Registered[] = [];

/**
 * A registry by category, then type, then name, with every name's list already followed by the type's catch-all
 * handlers.
 */
type Index = Map<string, Map<string, { byName: Map<string, Registered[]>; any: Registered[] }>>;
const indexes = new WeakMap<Registry, Index>();

/** Files a registry list (the same array) under its tag's category, type and name; '*' is every name, as no name is. */
function place(index: Index, tag: HandlerTag, list: Registered[]): void {
  let byType = index.get(tag.category);
  if (!byType) index.set(tag.category, (byType = new Map()));
  let t = byType.get(tag.type);
  if (!t) byType.set(tag.type, (t = { byName: new Map(), any: NONE }));
  if (tag.name === undefined || tag.name === '*') t.any = list;
  else t.byName.set(tag.name, list);
}

/** Once every list is complete: each name's list followed by its type's catch-all handlers. */
function appendCatchAll(index: Index): void {
  for (const byType of index.values()) {
    for (const t of byType.values()) {
      if (t.any !== NONE) for (const [name, list] of t.byName) t.byName.set(name, [...list, ...t.any]);
    }
  }
}

/**
 * Collects a processor class's tagged methods and Handler classes up its
 * class chain, base first; an override replaces its base. Built once per class.
 */
export function registryFor(cls: abstract new (...args: never[]) => unknown): Registry {
  const cached = registries.get(cls);
  if (cached) return cached;
  // At the latest here, as it is constructed: a handler named like the machinery would replace it.
  refuseShadowingIn(cls);
  const chain: Array<{ prototype: object }> = [];
  for (
    let c: unknown = cls;
    typeof c === 'function' && c !== MicroThread && c !== Function.prototype;
    c = Object.getPrototypeOf(c)
  ) {
    chain.unshift(c as { prototype: object });
  }
  const members = new Map<string, { value: unknown; isClass: boolean }>();
  for (const c of chain) {
    for (const key of Object.getOwnPropertyNames(c.prototype)) {
      if (key === 'constructor') continue;
      const d = Object.getOwnPropertyDescriptor(c.prototype, key);
      // A member a subclass declares again counts where the subclass declares it (after its base's).
      members.delete(`p:${key}`);
      if (d && 'value' in d) members.set(`p:${key}`, { value: d.value, isClass: false });
    }
    for (const key of Object.getOwnPropertyNames(c)) {
      const d = Object.getOwnPropertyDescriptor(c, key);
      if (d && 'value' in d && isHandlerClass(d.value)) {
        members.delete(`s:${key}`);
        members.set(`s:${key}`, { value: d.value, isClass: true });
      }
    }
  }
  const reg: Registry = new Map();
  const index: Index = new Map();
  for (const { value, isClass } of members.values()) {
    for (const tag of tagsOf(value) ?? []) {
      // A foreign handler (JSON, CloudEvent) is matched by its own index (lib/formats), never taken for an envelope's.
      const key = `${tag.format ? `${tag.format}:` : ''}${tag.category}|${tag.type}|${tag.name ?? '*'}`;
      let list = reg.get(key);
      if (!list) {
        reg.set(key, (list = []));
        if (!tag.format) place(index, tag, list);
      }
      const fn = value as Registered['fn'];
      const isAsyncGenerator = !isClass && fn.constructor?.name === 'AsyncGeneratorFunction';
      const body = isClass ? (fn.prototype as { call?: unknown } | undefined)?.call : fn;
      list.push({
        fn,
        tag,
        isClass,
        // Any handler but a generator may hand back a promise (a plain method returning an async service's, an async
        // method compiled down to __awaiter): its continuations need AsyncLocalStorage to keep their delivery, or
        // what they send skips the run's outbox.
        isAsync: !isGeneratorFunction(body),
        isStream: tag.category === 'rpc' && (tag.stream === true || isAsyncGenerator),
      });
    }
  }
  appendCatchAll(index);
  registries.set(cls, reg);
  indexes.set(reg, index);
  return reg;
}

/** Every handler of a message: those for its name, then those for every name of its type. */
export function handlersFor(reg: Registry, body: MessageBody<object>): Registered[] {
  // Looked up by the received strings as they are: no key built (and hashed) per delivery.
  const t = indexes.get(reg)?.get(body.category)?.get(body.type);
  if (!t) return NONE;
  return t.byName.get(body.name) ?? t.any;
}

/**
 * The one handler that answers an RPC: the last declared, one for its very name winning over one for every name
 * (Postage's `handlers[-1]`).
 */
export function rpcHandler(handlers: Registered[]): Registered | undefined {
  return handlers.findLast((h) => h.tag.name !== undefined) ?? handlers.at(-1);
}

/** The names a registry handles for one category and type (for a message nobody takes: what it could have been). */
export function namesHandled(reg: Registry, category: string, type: string): string[] {
  const names: string[] = [];
  for (const key of reg.keys()) {
    const [c, t, n] = key.split('|');
    if (c === category && t === type) names.push(n);
  }
  return names;
}
