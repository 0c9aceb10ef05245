import { FilterError } from '../errors.js';
import type { MessageBody } from './messages.js';

/** What a handler tag says: which deliveries it takes and what it is given. */
export interface HandlerTag {
  category: 'message' | 'rpc';
  type: string;
  name: string | undefined;
  /** 'content' hands the handler `body.content`; 'body' the whole body. */
  pass: 'content' | 'body';
}

export type FilterFn = (body: MessageBody<object>, ...args: never[]) => MessageBody<object>;

/** @internal */
export const HANDLER_TAGS = Symbol('postage.handlerTags');
/** @internal */
export const FILTERS = Symbol('postage.filters');

interface Tagged {
  [HANDLER_TAGS]?: HandlerTag[];
  [FILTERS]?: Array<{ fn: FilterFn; args: unknown[] }>;
}

/** A TC39 decorator for a handler method, or for a static field holding a `Handler` class. */
export interface HandlerDecorator {
  (value: unknown, context: ClassMethodDecoratorContext): void;
  <This, V>(value: undefined, context: ClassFieldDecoratorContext<This, V>): (this: This, initial: V) => V;
}

/** Tags a method, or the class held by a static field (a `Handler` class). */
function tagging(apply: (target: Tagged) => void): HandlerDecorator {
  return ((value: unknown, context: ClassMethodDecoratorContext | ClassFieldDecoratorContext) => {
    if (context.kind === 'field') {
      return (initial: unknown) => {
        if (typeof initial === 'function') apply(initial as Tagged);
        return initial;
      };
    }
    apply(value as Tagged);
  }) as HandlerDecorator;
}

function handlerTag(tag: HandlerTag) {
  return tagging((t) => {
    // A handler keeps its own tags: copying avoids sharing an inherited array.
    t[HANDLER_TAGS] = [...(Object.hasOwn(t, HANDLER_TAGS) ? t[HANDLER_TAGS]! : []), tag];
  });
}

/** Runs the method (or `Handler` class) for every message of this type and name; it gets `body.content`. */
export function MessageHandler(type: string, name?: string) {
  return handlerTag({ category: 'message', type, name, pass: 'content' });
}

/** Like `MessageHandler`, but the method gets the whole body. */
export function MessageHandlerFullBody(type: string, name?: string) {
  return handlerTag({ category: 'message', type, name, pass: 'body' });
}

/** Answers RPCs of this type and name: the method gets `(content, reply)`. */
export function RpcHandler(type: string, name?: string) {
  return handlerTag({ category: 'rpc', type, name, pass: 'content' });
}

/**
 * Passes the body through `fn(body, ...args)` before the handler sees it;
 * `fn` throwing `FilterError` skips this handler only.
 */
export function MessageFilter<A extends unknown[]>(fn: (body: MessageBody, ...args: A) => MessageBody, ...args: A) {
  return tagging((t) => {
    const list = Object.hasOwn(t, FILTERS) ? t[FILTERS]! : [];
    // Decorators apply bottom-up; unshift keeps the filters in reading order.
    list.unshift({ fn: fn as unknown as FilterFn, args });
    t[FILTERS] = list;
  });
}

/** Applies a handler's filters; undefined when one of them skips it. @internal */
export function applyFilters(target: object, body: MessageBody<object>): MessageBody<object> | undefined {
  const filters = (target as Tagged)[FILTERS];
  if (!filters) return body;
  let b = body;
  for (const { fn, args } of filters) {
    try {
      b = (fn as (body: MessageBody<object>, ...a: unknown[]) => MessageBody<object>)(b, ...args);
    } catch (err) {
      if (err instanceof FilterError) return undefined;
      throw err;
    }
  }
  return b;
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
