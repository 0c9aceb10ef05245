/**
 * `@ContractHandler(contract, name)`: a processor implements one name of a contract. The decorator is a
 * `@MessageHandler('command', name)` or `@RpcHandler('command', name)` by the entry's kind, checked (by the compiler)
 * against what the contract says the handler takes and, for an RPC, returns; the entry's parameter schema becomes the
 * handler's schema, so a content that fails it never reaches the handler.
 */
import type { StandardJSONSchemaV1, StandardSchemaV1 } from '@standard-schema/spec';
import { handlerTag, withOptions, type HandlerOptions } from '../receive/handlers.js';
import {
  isTypeOnly,
  type Contract,
  type ContractEntry,
  type ContractParamsOut,
  type ContractResultValue,
} from '../envelope/contract.js';

/** What an RPC handler of a contract may return: the result (or a promise of it), or nothing when it calls `reply`. */
export type ContractReturn<R> =
  | R
  | PromiseLike<R>
  | Generator<unknown, R | undefined, unknown>
  | AsyncGenerator<unknown, R | undefined, unknown>
  | undefined
  | PromiseLike<undefined>
  | void
  | PromiseLike<void>;

/** A handler method of a contract: takes the command's content (`{ parameters }`), returns what the entry says. */
type ContractMethod<C, R> = (content: C, ...rest: never[]) => R;

/** The methods of `T` that could handle content `C` returning `R`: the names a plain call may tag. */
type HandlerKeys<T, C, R> = {
  [K in keyof T]: T[K] extends ContractMethod<C, R> ? K : never;
}[keyof T];

/**
 * The decorator `@ContractHandler` makes. Like `HandlerDecorator`, it works as a TC39 standard decorator, under
 * `experimentalDecorators`, and as a plain call `ContractHandler(C, 'name')(MyProcessor.prototype, 'method')`; in
 * each form a method that does not take the entry's parameters (or, for an RPC, returns something else than its
 * result) does not compile.
 */
export interface ContractHandlerDecorator<C, R> {
  /** `experimentalDecorators` on a static field holding a `Handler` class. */
  (target: abstract new (...args: never[]) => unknown, propertyKey: string | symbol, descriptor?: undefined): void;
  /** A plain call on a prototype: the key must name a method that takes what the entry says. */
  <T extends object, K extends HandlerKeys<T, C, R>>(target: T, propertyKey: K, descriptor?: undefined): void;
  /** TC39: a static field holding a `Handler` class. */
  <This, V>(value: undefined, context: ClassFieldDecoratorContext<This, V>): (this: This, initial: V) => V;
  /**
   * TC39: a method. Last of those a two-argument call can match, because TypeScript reports the last candidate's
   * error: the one that names the method's type and the contract's.
   */
  (value: ContractMethod<C, R>, context: ClassMethodDecoratorContext): void;
  /** `experimentalDecorators`: a method. Last, for the same reason. */
  (target: object, propertyKey: string | symbol, descriptor: { value?: ContractMethod<C, R> }): void;
}

/** What `@ContractHandler` may say besides the contract and the name. */
export type ContractHandlerOptions = Pick<HandlerOptions, 'timeoutMs' | 'description'>;

/** The content a handler of entry `E` is given. */
export type ContractContent<E extends ContractEntry> = { parameters: ContractParamsOut<E> };

/**
 * Handles `name` of `contract` (a `defineContract`): the method gets the command's content, `{ parameters }`, typed
 * (and, with a schema, checked) by the entry; an RPC's method returns the entry's result (or calls `reply`).
 *
 * @example
 * @ContractHandler(Pricing, 'price')
 * price({ parameters }: { parameters: { sku: string } }): number { return 1200; }
 */
export function ContractHandler<C extends Contract, N extends keyof C & string>(
  contract: C,
  name: N,
  options?: ContractHandlerOptions,
): ContractHandlerDecorator<
  ContractContent<C[N]>,
  C[N]['kind'] extends 'rpc' ? ContractReturn<ContractResultValue<C[N]>> : unknown
> {
  const entry = (contract as Record<string, ContractEntry | undefined>)?.[name];
  if (!entry || !Object.hasOwn(contract, name))
    throw new TypeError(
      `the contract has no '${String(name)}': it has ${Object.keys(contract ?? {}).join(', ') || 'no names'}`,
    );
  const schema = entry.params === undefined || isTypeOnly(entry.params) ? undefined : contentSchema(entry.params);
  const tag = withOptions(
    { category: entry.kind, type: 'command', name, pass: 'content' },
    { timeoutMs: options?.timeoutMs, description: options?.description ?? entry.description, schema },
  );
  return handlerTag(tag) as unknown as ContractHandlerDecorator<
    ContractContent<C[N]>,
    C[N]['kind'] extends 'rpc' ? ContractReturn<ContractResultValue<C[N]>> : unknown
  >;
}

/**
 * A schema of the command's content (`{ parameters }`) from the schema of its parameters: the handler's schema (what
 * the pipeline checks and `describe` shows) where the contract has one for the parameters alone.
 */
export function contentSchema(params: StandardSchemaV1): StandardSchemaV1 {
  const check = (content: unknown): StandardSchemaV1.Result<unknown> | Promise<StandardSchemaV1.Result<unknown>> => {
    const c = content as { parameters?: unknown } | null;
    const r = params['~standard'].validate(c?.parameters);
    const wrap = (res: StandardSchemaV1.Result<unknown>): StandardSchemaV1.Result<unknown> =>
      res.issues
        ? { issues: res.issues.map((i) => ({ ...i, path: ['parameters', ...(i.path ?? [])] })) }
        : { value: { ...(c as object), parameters: res.value } };
    return r instanceof Promise ? r.then(wrap) : wrap(r);
  };
  const std: StandardSchemaV1.Props & { jsonSchema?: StandardJSONSchemaV1.Converter } = {
    version: 1,
    vendor: 'postage-ts/contract',
    validate: check,
  };
  const converter = (params['~standard'] as Partial<StandardJSONSchemaV1.Props>).jsonSchema;
  if (typeof converter?.input === 'function') {
    const wrapped =
      (side: 'input' | 'output') =>
      (opts: StandardJSONSchemaV1.Options): Record<string, unknown> => {
        const { $schema, ...inner } = converter[side](opts);
        void $schema;
        return { type: 'object', properties: { parameters: inner }, required: ['parameters'] };
      };
    std.jsonSchema = { input: wrapped('input'), output: wrapped('output') };
  }
  return { '~standard': std };
}
