import { isDeepStrictEqual } from 'node:util';
import { MalformedMessage } from '../errors.js';
import type { FingerprintDict } from './fingerprint.js';

export type Category = 'message' | 'rpc';
export type ResultType = 'success' | 'error' | 'exception';

/** The wire form of every Postage message (version '2'). */
export interface MessageBody<C extends object = Record<string, unknown>> {
  type: string;
  name: string;
  category: Category;
  version: '2';
  fingerprint: Partial<FingerprintDict>;
  content: C;
  _reserved: Record<string, unknown>;
}

export interface ArgsContent {
  args?: unknown[];
  kwds?: Record<string, unknown>;
}
export interface CommandContent<P = Record<string, unknown>> {
  parameters: P;
}
export interface ResultContent<V = unknown> {
  type: ResultType;
  value: V;
  message: string;
}

type EmptyContent = Record<string, never>;

/**
 * The base Postage message: type `'none'`, category `'message'`, content
 * `{ args?, kwds? }`. Subclasses fix the type, category and content shape.
 */
export class Message<C extends object = ArgsContent> {
  static readonly type: string = 'none';
  static readonly category: Category = 'message';
  /** Postage's boolean value of a message: false for failed results. */
  static readonly okValue: boolean = true;

  body: MessageBody<C>;

  constructor(args?: unknown[], kwds?: Record<string, unknown>) {
    const cls = this.constructor as typeof Message;
    const content: ArgsContent = {};
    if (args !== undefined && args.length > 0) content.args = args;
    if (kwds !== undefined && Object.keys(kwds).length > 0) content.kwds = kwds;
    // Key order matches Python Postage's bodies.
    this.body = {
      type: cls.type,
      name: 'none',
      category: cls.category,
      version: '2',
      fingerprint: {},
      content: content as C,
      _reserved: {},
    };
  }

  get type(): string {
    return this.body.type;
  }
  get category(): Category {
    return this.body.category;
  }
  get name(): string {
    return this.body.name;
  }
  get content(): C {
    return this.body.content;
  }
  /** Postage's `bool(message)`: false for `MessageResultError` and `MessageResultException`. */
  get ok(): boolean {
    return (this.constructor as typeof Message).okValue;
  }

  /** Two messages are equal when their bodies are. */
  equals(other: Message<object>): boolean {
    return isDeepStrictEqual(this.body, other.body);
  }

  /** Merges the given keys into `body.fingerprint`. */
  setFingerprint(fingerprint: Partial<FingerprintDict>): this {
    Object.assign(this.body.fingerprint, fingerprint);
    return this;
  }

  /**
   * Rebuilds the right class from a received body, or throws
   * {@link MalformedMessage} naming what is wrong.
   */
  static fromBody(body: unknown): AnyMessage {
    const b = validateEnvelope(body);
    const cls = classFor(b);
    const msg = Object.create(cls.prototype) as AnyMessage;
    (msg as Message<object>).body = b;
    return msg;
  }
}

/** A command for one or more components (category `'message'`). */
export class MessageCommand<P = Record<string, unknown>> extends Message<CommandContent<P>> {
  static override readonly type: string = 'command';
  constructor(name: string, parameters: P = {} as P) {
    super();
    this.body.name = String(name);
    this.body.content = { parameters };
  }
}

/** A command that expects an answer (category `'rpc'`). */
export class RpcCommand<P = Record<string, unknown>> extends MessageCommand<P> {
  static override readonly category: Category = 'rpc';
}

/** A component's status; the status is the message's name. */
export class MessageStatus extends Message<EmptyContent> {
  static override readonly type: string = 'status';
  constructor(status: string) {
    super();
    this.body.name = String(status);
  }
}

/** A successful RPC result. */
export class MessageResult<V = unknown> extends Message<ResultContent<V>> {
  static override readonly type: string = 'result';
  static readonly resultType: ResultType = 'success';
  constructor(value: V, message = '') {
    super();
    this.body.content = { type: (this.constructor as typeof MessageResult).resultType, value, message };
  }
  /** The result's value (`body.content.value`). */
  get value(): V {
    return this.body.content.value;
  }
  /** The result's message (`body.content.message`). */
  get message(): string {
    return this.body.content.message;
  }
}

/** A foreseen failure of an RPC, described by `message`. */
export class MessageResultError extends MessageResult<null> {
  static override readonly resultType: ResultType = 'error';
  static override readonly okValue: boolean = false;
  constructor(message: string) {
    super(null, message);
  }
}

/** An error raised in the remote handler: `value` is its name. */
export class MessageResultException extends MessageResult<string> {
  static override readonly resultType: ResultType = 'exception';
  static override readonly okValue: boolean = false;
  constructor(name: string, message: string) {
    super(name, message);
  }
}

export type AnyResult = MessageResult | MessageResultError | MessageResultException;
export type AnyMessage = Message<object>;

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function validateEnvelope(body: unknown): MessageBody<Record<string, unknown>> {
  if (!isPlainObject(body))
    throw new MalformedMessage(
      `body is ${Array.isArray(body) ? 'an array' : typeof body === 'object' ? 'null' : `a ${typeof body}`}, not an ` +
        'object',
    );
  if (!('version' in body)) throw new MalformedMessage('no "version" key');
  if (body.version !== '2')
    throw new MalformedMessage(`version ${JSON.stringify(body.version)} is not supported (only "2")`);
  for (const key of ['type', 'name'] as const) {
    if (typeof body[key] !== 'string')
      throw new MalformedMessage(`"${key}" is ${body[key] === undefined ? 'missing' : 'not a string'}`);
  }
  if (body.category !== 'message' && body.category !== 'rpc') {
    throw new MalformedMessage(`"category" is ${JSON.stringify(body.category) ?? 'missing'}, not "message" or "rpc"`);
  }
  for (const key of ['fingerprint', 'content'] as const) {
    if (!isPlainObject(body[key]))
      throw new MalformedMessage(`"${key}" is ${body[key] === undefined ? 'missing' : 'not an object'}`);
  }
  if (body._reserved !== undefined && !isPlainObject(body._reserved))
    throw new MalformedMessage('"_reserved" is not an object');
  if (body._reserved === undefined) body._reserved = {};
  return body as unknown as MessageBody<Record<string, unknown>>;
}

/** Any message class, whatever its constructor takes: only its prototype is used. */
type MessageClass = { prototype: AnyMessage };

function classFor(b: MessageBody<Record<string, unknown>>): MessageClass {
  switch (b.type) {
    case 'command':
      return b.category === 'rpc' ? RpcCommand : MessageCommand;
    case 'status':
      return MessageStatus;
    case 'result': {
      const t = b.content.type;
      if (t === 'success') return MessageResult;
      if (t === 'error') return MessageResultError;
      if (t === 'exception') return MessageResultException;
      throw new MalformedMessage(
        'result content type ' +
          `${JSON.stringify(t) ?? 'is missing'}${t === undefined ? '' : ' is not success, error or exception'}`,
      );
    }
    default:
      return Message;
  }
}
