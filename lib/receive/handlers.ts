import type { StandardSchemaV1 } from '@standard-schema/spec';
import { FilterError, ReservedHandlerName } from '../errors.js';
import { MicroThread } from '../microthreads/thread.js';
import { currentDelivery, type DeliveryInfo } from '../scope/context.js';

/** What a handler tag says: which deliveries it takes and what it is given. */
export interface HandlerTag {
  category: 'message' | 'rpc';
  type: string;
  name: string | undefined;
  /** 'content' hands the handler `body.content`; 'body' the whole body. */
  pass: 'content' | 'body';
  /** This handler's time limit, over the processor's `handlerTimeoutMs`. */
  timeoutMs?: number;
  /** What the content must be before the handler sees it. */
  schema?: StandardSchemaV1;
  /** Said of the handler by `describe`. */
  description?: string;
  /** An RPC handler whose yields are a stream's items (an async generator is one without saying). */
  stream?: boolean;
  /**
   * A handler of bodies that are not envelopes (`@JsonHandler`, `@CloudEventHandler`): `name` is then its binding key
   * or event type, and the registry keeps it out of the envelope lookup.
   */
  format?: 'json' | 'cloudevent';
  /** Where a foreign message carries no message id: the key it is deduplicated by. */
  idempotencyKey?: (body: unknown, delivery: DeliveryInfo) => string | undefined;
}

/** What a handler decorator may say besides the type and name. */
export interface HandlerOptions<S extends StandardSchemaV1 | undefined = StandardSchemaV1 | undefined> {
  /**
   * How long this handler may run (ms) before its delivery fails with
   * `HandlerTimeout`, over the processor's `handlerTimeoutMs`.
   */
  timeoutMs?: number;
  /**
   * A Standard Schema (zod, valibot, arktype…) the content must pass before
   * the handler sees it; the handler gets what the schema returns, typed
   * from it. A content that fails never reaches the handler: a message is
   * rejected (to the error exchange, with the issues in `x-validation-issues`),
   * an RPC caller gets a `MessageResultError` listing them. Never retried.
   */
  schema?: S;
  /** What the handler does, for `describe`. */
  description?: string;
  /**
   * An `@RpcHandler` generator whose yields are the items of a stream
   * (`rpcStream_NAME` on the caller's side), not promises to wait on. An
   * async generator handler streams without saying so.
   */
  stream?: boolean;
}

/** @internal */
export function withOptions(tag: HandlerTag, options: HandlerOptions | undefined): HandlerTag {
  if (options?.timeoutMs !== undefined) {
    if (!(options.timeoutMs > 0))
      throw new TypeError(`timeoutMs must be a positive number of milliseconds, not ${String(options.timeoutMs)}`);
    tag.timeoutMs = options.timeoutMs;
  }
  if (options?.schema !== undefined) {
    const std = (options.schema as Partial<StandardSchemaV1> | null)?.['~standard'];
    if (typeof std?.validate !== 'function')
      throw new TypeError(
        'schema must be a Standard Schema (zod, valibot, arktype…: an object with ~standard.validate)',
      );
    tag.schema = options.schema;
  }
  if (options?.description !== undefined) tag.description = String(options.description);
  if (options?.stream) tag.stream = true;
  return tag;
}

/** What a handler is given: its schema's output where it has one. */
export type ContentOf<S> = S extends StandardSchemaV1 ? StandardSchemaV1.InferOutput<S> : unknown;

type FilterFn = (value: unknown, ...args: unknown[]) => unknown;

/** @internal */
export const HANDLER_TAGS = Symbol('postage.handlerTags');
/** @internal */
export const FILTERS = Symbol('postage.filters');

interface Tagged {
  [HANDLER_TAGS]?: HandlerTag[];
  [FILTERS]?: Array<{ fn: FilterFn; args: unknown[] }>;
}

/**
 * A handler decorator. It works as a TC39 standard decorator and under
 * `experimentalDecorators` (NestJS-style projects); without decorators at
 * all, call it as `MessageHandler('command', 'echo')(MyProcessor.prototype, 'echo')`.
 */
export interface HandlerDecorator<C = unknown> {
  /** TC39: a method (taking the schema's output, where the decorator has a schema). */
  (value: HandlerMethod<C>, context: ClassMethodDecoratorContext): void;
  /** TC39: a static field holding a `Handler` class. */
  <This, V>(value: undefined, context: ClassFieldDecoratorContext<This, V>): (this: This, initial: V) => V;
  /**
   * `experimentalDecorators` on a static field holding a `Handler` class, and a
   * plain call, `MessageHandler('command', 'echo')(Echo.prototype, 'echo')`.
   * (Its third parameter makes TypeScript check a legacy method decorator against the next overload, not this one.)
   */
  (target: object, propertyKey: string | symbol, descriptor?: undefined): void;
  /**
   * `experimentalDecorators`: a method, checked against the schema's output as
   * the TC39 form checks it. Last, because TypeScript reports the last
   * overload's error: the one that names the handler's parameter and the schema's output.
   */
  (target: object, propertyKey: string | symbol, descriptor: { value?: HandlerMethod<C> }): void;
}

/** A handler method: any function, or one taking the schema's output where there is a schema. */
type HandlerMethod<C> = unknown extends C ? unknown : (content: C, ...rest: never[]) => unknown;

function isTc39Context(v: unknown): v is DecoratorContext {
  return typeof v === 'object' && v !== null && typeof (v as { kind?: unknown }).kind === 'string';
}

function refuse(where: string): never {
  throw new TypeError(
    `postage-ts handler decorators go on methods, or on static fields holding a Handler class; ${where} is neither. ` +
      `Move the decorator to a method (or make the field \`static X = class extends Handler {…}\`).`,
  );
}

type AnyClass = abstract new (...args: never[]) => unknown;

/**
 * The library's classes whose members a handler may not take the name of
 * (the processor itself calls them: `step`, `main`, `ready`, `close`, `use`…).
 * `everyProcessor`: every processor has its members (MicroThread,
 * MessageProcessor), so a TC39 method decorator, which does not see its class,
 * can refuse their names at once; the others' (GenericApplication's) are
 * refused at construction.
 */
const machinery: Array<{ cls: AnyClass; everyProcessor: boolean }> = [{ cls: MicroThread, everyProcessor: true }];
/** Each machinery class's reserved member names, by prototype ('p') and static ('s'): read off the class, once. */
const reservedOf = new WeakMap<AnyClass, { p: Set<string>; s: Set<string> }>();

/** Adds a library class to the machinery handlers may not shadow. @internal */
export function registerMachinery(cls: AnyClass, everyProcessor: boolean): void {
  machinery.push({ cls, everyProcessor });
}

/** Whether a prototype member or static carries a handler decorator's marks. */
function isTagged(v: unknown): boolean {
  return typeof v === 'function' && ((v as Tagged)[HANDLER_TAGS] !== undefined || (v as Tagged)[FILTERS] !== undefined);
}

/**
 * A machinery class's member names, computed from the class: its methods and
 * accessors, less its built-in handlers (describe, quit, restart, ping…), which
 * are handlers a subclass may override, not machinery.
 */
function reserved(cls: AnyClass): { p: Set<string>; s: Set<string> } {
  let r = reservedOf.get(cls);
  if (!r) {
    const own = (o: object, skip: readonly string[]) =>
      Object.getOwnPropertyNames(o).filter((k) => {
        if (skip.includes(k)) return false;
        const d = Object.getOwnPropertyDescriptor(o, k);
        return !(d && 'value' in d && isTagged(d.value));
      });
    r = {
      p: new Set(own(cls.prototype as object, ['constructor'])),
      s: new Set(own(cls, ['length', 'name', 'prototype'])),
    };
    reservedOf.set(cls, r);
  }
  return r;
}

/**
 * Refuses a handler named like a member of the machinery `target` (a class,
 * or its prototype) inherits; without a target (a TC39 method decorator),
 * like one every processor has. The library's own classes declare theirs.
 */
function refuseShadowing(target: object | undefined, name: string, isStatic: boolean, prefix: string): void {
  // The most derived first: a name MessageProcessor overrides is told as MessageProcessor's.
  for (const { cls, everyProcessor } of [...machinery].reverse()) {
    if (target === undefined ? !everyProcessor : target === cls || target === cls.prototype) continue;
    if (target !== undefined && !Object.prototype.isPrototypeOf.call(isStatic ? cls : cls.prototype, target)) continue;
    if (!(isStatic ? reserved(cls).s : reserved(cls).p).has(name)) continue;
    const member = `${cls.name}${isStatic ? '.' : '.prototype.'}${name}${isStatic ? '' : '()'}`;
    throw new ReservedHandlerName(name, member, suggest(target, name, prefix, isStatic));
  }
}

/** A name for a handler that shadows nothing: the house's `msgQuit` / `rpcDescribe` shape. */
function suggest(target: object | undefined, name: string, prefix: string, isStatic: boolean): string {
  const base = `${prefix}${name.charAt(0).toUpperCase()}${name.slice(1)}`;
  for (let i = 1; ; i++) {
    const candidate = i === 1 ? base : `${base}${i}`;
    const taken = machinery.some(({ cls }) => (isStatic ? reserved(cls).s : reserved(cls).p).has(candidate));
    if (!taken && (target === undefined || !(candidate in target))) return candidate;
  }
}

/**
 * At construction, at the latest: refuses a class (anything under the
 * machinery) that has a handler on a machinery member's name. A TC39 method
 * decorator cannot see its class, so a name only some processors have
 * (GenericApplication's `joinGroup`) is caught here. @internal
 */
export function refuseShadowingIn(cls: AnyClass): void {
  const mine = new Set(machinery.map((m) => m.cls as unknown));
  for (let c: unknown = cls; typeof c === 'function' && !mine.has(c); c = Object.getPrototypeOf(c)) {
    const proto = (c as { prototype: object }).prototype;
    for (const key of Object.getOwnPropertyNames(proto)) {
      const d = Object.getOwnPropertyDescriptor(proto, key);
      if (key !== 'constructor' && d && 'value' in d && isTagged(d.value))
        refuseShadowing(proto, key, false, prefixOf(d.value));
    }
    for (const key of Object.getOwnPropertyNames(c)) {
      const d = Object.getOwnPropertyDescriptor(c, key);
      if (d && 'value' in d && isHandlerClass(d.value) && isTagged(d.value))
        refuseShadowing(c as object, key, true, prefixOf(d.value));
    }
  }
}

/** `rpc` for an RPC handler, `msg` for the others: the house's names for handlers. */
function prefixOf(v: unknown): string {
  return tagsOf(v)?.some((t) => t.category === 'rpc') ? 'rpc' : 'msg';
}

/**
 * The one tagging core behind every handler decorator: it marks a method (or
 * the `Handler` class held by a static field) and changes nothing else, in
 * either decorator flavour. The processor reads the marks up its class chain.
 * A handler named like the machinery is refused here (see refuseShadowing).
 */
function tagging(apply: (target: Tagged) => void, prefix = 'msg'): HandlerDecorator {
  return ((value: unknown, context: unknown, descriptor?: PropertyDescriptor) => {
    if (isTc39Context(context)) {
      const name = String(context.name);
      if (context.kind === 'method' && !context.static) {
        refuseShadowing(undefined, name, false, prefix);
        return void apply(value as Tagged);
      }
      if (context.kind === 'field' && context.static) {
        return function (this: unknown, initial: unknown) {
          if (!isHandlerClass(initial)) refuse(`static field '${name}' (it does not hold a Handler class)`);
          // A static field's initializer runs as the class is defined, with the class as `this`.
          if (typeof this === 'function') refuseShadowing(this, name, true, prefix);
          apply(initial as Tagged);
          return initial;
        };
      }
      return refuse(`${context.kind !== 'class' && context.static ? 'static ' : ''}${context.kind} '${name}'`);
    }
    // experimentalDecorators, or a plain call: (prototype or constructor, key, descriptor?). A field has no descriptor.
    const key = String(context);
    if (value === null || (typeof value !== 'object' && typeof value !== 'function')) refuse(`'${key}'`);
    const target = value as Record<string, unknown>;
    const fn = descriptor ? descriptor.value : target[key];
    if (typeof target === 'function') {
      if (!isHandlerClass(fn)) refuse(`static member '${key}' (it does not hold a Handler class)`);
    } else if (typeof fn !== 'function') refuse(descriptor ? `accessor '${key}'` : `field '${key}'`);
    refuseShadowing(target, key, typeof target === 'function', prefix);
    apply(fn as Tagged);
  }) as HandlerDecorator;
}

/** Whether a value is a `Handler` subclass. @internal */
export function isHandlerClass(v: unknown): boolean {
  return typeof v === 'function' && v.prototype instanceof Handler;
}

/** @internal */
export function handlerTag<C = unknown>(tag: HandlerTag): HandlerDecorator<C> {
  return tagging(
    (t) => {
      // A handler keeps its own tags: copying avoids sharing an inherited array.
      t[HANDLER_TAGS] = [...(Object.hasOwn(t, HANDLER_TAGS) ? t[HANDLER_TAGS]! : []), tag];
    },
    tag.category === 'rpc' ? 'rpc' : 'msg',
  ) as unknown as HandlerDecorator<C>;
}

/** Runs the method (or `Handler` class) for every message of this type and name; it gets `body.content`. */
export function MessageHandler<S extends StandardSchemaV1 | undefined = undefined>(
  type: string,
  name?: string,
  options?: HandlerOptions<S>,
): HandlerDecorator<ContentOf<S>> {
  return handlerTag(withOptions({ category: 'message', type, name, pass: 'content' }, options));
}

/** Like `MessageHandler`, but the method gets the whole body. */
export function MessageHandlerFullBody(type: string, name?: string, options?: HandlerOptions) {
  return handlerTag(withOptions({ category: 'message', type, name, pass: 'body' }, options));
}

/** Answers RPCs of this type and name: the method gets `(content, reply)`. */
export function RpcHandler<S extends StandardSchemaV1 | undefined = undefined>(
  type: string,
  name?: string,
  options?: HandlerOptions<S>,
): HandlerDecorator<ContentOf<S>> {
  return handlerTag(withOptions({ category: 'rpc', type, name, pass: 'content' }, options));
}

/**
 * Passes what its handler gets (the content, or the whole body for
 * `@MessageHandlerFullBody`; the handler's own copy) through
 * `fn(value, ...args)`, and hands the handler what `fn` returns. `fn`
 * throwing `FilterError` skips this handler only (Postage's `_filter_message`).
 */
export function MessageFilter<A extends unknown[]>(
  fn: (value: never, ...args: A) => unknown,
  ...args: A
): HandlerDecorator {
  return tagging((t) => {
    const list = Object.hasOwn(t, FILTERS) ? t[FILTERS]! : [];
    // Decorators apply bottom-up; unshift keeps the filters in reading order.
    list.unshift({ fn: fn as unknown as FilterFn, args });
    t[FILTERS] = list;
  });
}

/** What applyFilters returns when a filter skipped the handler. @internal */
export const SKIP: unique symbol = Symbol('postage.skip');

/** Applies a handler's filters to its own copy of what it is given; SKIP when one of them skips it. @internal */
export function applyFilters(target: object, value: unknown): unknown {
  const filters = (target as Tagged)[FILTERS];
  if (!filters) return value;
  let v = value;
  for (const { fn, args } of filters) {
    try {
      v = fn(v, ...args);
    } catch (err) {
      if (err instanceof FilterError) return SKIP;
      throw err;
    }
  }
  return v;
}

/** Reads the tags of a function or class. @internal */
export function tagsOf(v: unknown): HandlerTag[] | undefined {
  return typeof v === 'function' ? (v as Tagged)[HANDLER_TAGS] : undefined;
}

/**
 * A handler as a class, for handlers with state or helpers: postage builds
 * one per delivery and calls `call()`.
 */
export abstract class Handler<P = unknown, D = unknown> {
  /** The delivery being handled: its AMQP properties, conversation and count. */
  readonly delivery: DeliveryInfo | undefined = currentDelivery();
  constructor(
    /** The processor that received the message. */
    readonly processor: P,
    /** The content (or body) handed to this handler: its own deep copy. */
    readonly data: D,
    /** Answers the RPC (RPC handlers only). */
    readonly reply: (result: unknown) => void = () => undefined,
  ) {}
  abstract call(): unknown;
}
