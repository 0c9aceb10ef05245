/**
 * A contract: the names two services agree on, each a message or an RPC, with what its parameters are and, for an
 * RPC, what its result is. The processor's handlers are checked against it (`@ContractHandler`) and the producer's
 * senders are typed from it (`ContractProducer`), so both ends compile against one module.
 *
 * This file is the whole of `postage-ts/contract`: it imports nothing at run time (types only), so a contract module
 * shared between services loads no amqplib and starts nothing.
 */
import type { StandardSchemaV1 } from '@standard-schema/spec';
import type { MessageResult, MessageResultError, MessageResultException } from './messages.js';

/** One name of a contract. */
export interface ContractEntry {
  /** `'message'`: sent with `message_NAME`, handled by a message handler; `'rpc'`: called with `rpc_NAME`, answered. */
  readonly kind: 'message' | 'rpc';
  /**
   * The command's parameters (its content's `parameters`): a Standard Schema (zod, valibot, arktype…) checked on
   * receipt (and on send with `validate`), or `typeOnly<T>()` for a type the compiler checks and nothing else.
   * @default no parameters
   */
  readonly params?: StandardSchemaV1;
  /** An RPC's result (the value `rpc_NAME` resolves with on success): a Standard Schema or `typeOnly<T>()`. */
  readonly result?: StandardSchemaV1;
  /** What it does, for `describe` and AsyncAPI. */
  readonly description?: string;
}

/** A contract's names. */
export type ContractEntries = Readonly<Record<string, ContractEntry>>;

/** What `defineContract` returns: the entries as given, frozen, marked as a contract. */
export type Contract<E extends ContractEntries = ContractEntries> = Readonly<E>;

/** What a sender passes as an entry's parameters: its schema's input. */
export type ContractParams<E extends ContractEntry> = E['params'] extends StandardSchemaV1
  ? StandardSchemaV1.InferInput<E['params']>
  : Record<string, never>;

/** What a handler receives as an entry's parameters: its schema's output. */
export type ContractParamsOut<E extends ContractEntry> = E['params'] extends StandardSchemaV1
  ? StandardSchemaV1.InferOutput<E['params']>
  : Record<string, never>;

/** An RPC entry's result value. */
export type ContractResultValue<E extends ContractEntry> = E['result'] extends StandardSchemaV1
  ? StandardSchemaV1.InferOutput<E['result']>
  : unknown;

/**
 * What an `rpc_NAME` typed from a contract resolves to: `MessageResult<R>`, `MessageResultError` or
 * `MessageResultException` (it never rejects for a remote failure), with `ok` telling them apart, so that
 * `if (r.ok) r.body.content.value` is an `R`.
 */
export type ContractResult<R> =
  | (MessageResult<R> & { readonly ok: true })
  | (MessageResultError & { readonly ok: false })
  | (MessageResultException & { readonly ok: false });

const CONTRACT = Symbol.for('postage-ts.contract');
const TYPE_ONLY = 'postage-ts/type-only';

function isStandardSchema(v: unknown): v is StandardSchemaV1 {
  const std = (v as Partial<StandardSchemaV1> | null | undefined)?.['~standard'];
  return typeof std?.validate === 'function';
}

/**
 * Makes a contract: names, each `{ kind: 'message' | 'rpc', params?, result?, description? }`. Checks the entries
 * now (a wrong kind, a schema that is no Standard Schema) and returns them frozen.
 *
 * @example
 * export const Pricing = defineContract({
 *   price: { kind: 'rpc', params: PriceRequest, result: typeOnly<number>() },
 *   repriced: { kind: 'message', params: typeOnly<{ sku: string; cents: number }>() },
 * });
 */
export function defineContract<const E extends ContractEntries>(entries: E): Contract<E> {
  if (typeof entries !== 'object' || entries === null || Array.isArray(entries))
    throw new TypeError('defineContract takes an object of names, each { kind, params?, result? }');
  const out: Record<string, ContractEntry> = {};
  for (const [name, entry] of Object.entries(entries)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name))
      throw new TypeError(
        `contract name '${name}' cannot be a method name suffix (message_${name}): use letters, digits, _`,
      );
    if (entry?.kind !== 'message' && entry?.kind !== 'rpc')
      throw new TypeError(`contract entry '${name}' needs kind 'message' or 'rpc', not ${String(entry?.kind)}`);
    for (const key of ['params', 'result'] as const)
      if (entry[key] !== undefined && !isStandardSchema(entry[key]))
        throw new TypeError(
          `contract entry '${name}': ${key} must be a Standard Schema (zod, valibot, arktype…) or typeOnly<T>()`,
        );
    if (entry.kind === 'message' && entry.result !== undefined)
      throw new TypeError(`contract entry '${name}' is a message: only an rpc has a result`);
    out[name] = Object.freeze({ ...entry });
  }
  Object.defineProperty(out, CONTRACT, { value: true });
  return Object.freeze(out) as Contract<E>;
}

/** Whether `v` was made by `defineContract` (of any copy of postage-ts). */
export function isContract(v: unknown): v is Contract {
  return typeof v === 'object' && v !== null && (v as Record<symbol, unknown>)[CONTRACT] === true;
}

/**
 * A type for a contract's parameters or result that only the compiler checks: a Standard Schema that lets every
 * value through, for teams that share a TypeScript type rather than a schema library.
 *
 * @example
 * defineContract({ restock: { kind: 'message', params: typeOnly<{ sku: string; count: number }>() } })
 */
export function typeOnly<T>(): StandardSchemaV1<T, T> {
  return { '~standard': { version: 1, vendor: TYPE_ONLY, validate: (value) => ({ value: value as T }) } };
}

/** Whether a schema is a `typeOnly<T>()`, which checks nothing at run time. @internal */
export function isTypeOnly(schema: unknown): boolean {
  return (schema as Partial<StandardSchemaV1> | undefined)?.['~standard']?.vendor === TYPE_ONLY;
}
