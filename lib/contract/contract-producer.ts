/**
 * `ContractProducer(contract)`: a `GenericProducer` base class whose senders are the contract's names, typed from
 * it (a name it does not have, or a wrong argument, does not compile; `rpc_NAME` resolves to the entry's result
 * type), and which may check what it sends against the contract's schemas.
 */
import type { StandardSchemaV1 } from '@standard-schema/spec';
import { ValidationError } from '../errors.js';
import { GenericProducer, type ProducerOptions } from '../send/producer.js';
import { isContract, isTypeOnly, type Contract, type ContractEntry } from '../envelope/contract.js';
import type { ContractBrand } from '../send/contract-senders.js';

/** What `ContractProducer` may say besides the contract. */
export interface ContractProducerOptions {
  /**
   * Check every send's parameters against the contract's schema for its name before it goes out: a send that
   * fails rejects with `ValidationError` (its issues, paths from `parameters`) and nothing is sent. The class's
   * static `validate` can change it for a subclass. A `typeOnly<T>()` entry checks nothing.
   * @default false
   */
  validate?: boolean;
}

/** The class `ContractProducer` returns: `GenericProducer`'s statics, instances typed from contract `C`. */
export type ContractProducerClass<C extends Contract> = Omit<typeof GenericProducer, 'prototype'> & {
  new (options?: ProducerOptions): GenericProducer & ContractBrand<C>;
  readonly prototype: GenericProducer & ContractBrand<C>;
  /** The contract its senders are typed from (what `postage asyncapi` reads). */
  readonly contract: C;
  /** Whether sends are checked against the contract: see {@link ContractProducerOptions.validate}. */
  validate: boolean;
};

/** What GenericProducer falls back to for a name it has no method of: the sender of `message_`/`rpc_` NAME. */
const fallback = (): object => Object.getPrototypeOf(GenericProducer.prototype) as object;

/** The parameters among a sender's arguments: the first, unless it is the send options alone. */
function paramsIn(args: unknown[]): unknown {
  if (args.length !== 1) return args[0];
  const only = args[0];
  const keys = typeof only === 'object' && only !== null ? Object.keys(only) : [];
  return keys.length > 0 && keys.every((k) => k.startsWith('_')) ? undefined : only;
}

async function check(schema: StandardSchemaV1, params: unknown, what: string): Promise<void> {
  const r = await schema['~standard'].validate(params ?? {});
  if (!r.issues) return;
  throw new ValidationError(
    what,
    r.issues.map((i) => ({
      message: i.message,
      path: ['parameters', ...(i.path ?? []).map((s) => String(typeof s === 'object' && s !== null ? s.key : s))],
    })),
  );
}

/**
 * A producer base class typed from `contract`: subclass it, give it `static eks`, then `await Sub.create()`.
 * `message_NAME(params)` / `rpc_NAME(params)` exist for the contract's messages and RPCs and send
 * `MessageCommand(NAME, params)` / `RpcCommand(NAME, params)` (a `build_…_NAME` builder of the subclass still wins);
 * `rpc_NAME` resolves to `MessageResult<R>` (`r.ok`: `r.body.content.value` is an `R`), `MessageResultError` or
 * `MessageResultException`.
 *
 * @example
 * class PriceClient extends ContractProducer(Pricing, { validate: true }) {
 *   static override eks = [[PriceExchange, 'price'] as const];
 * }
 * const r = await (await PriceClient.create()).rpc_price({ sku: 'A-1', qty: 2 });
 * if (r.ok) r.body.content.value; // number
 */
export function ContractProducer<C extends Contract>(
  contract: C,
  options: ContractProducerOptions = {},
): ContractProducerClass<C> {
  if (!isContract(contract)) throw new TypeError('ContractProducer takes a contract made by defineContract');
  class ContractBound extends GenericProducer {
    static readonly contract: C = contract;
    static validate: boolean = options.validate ?? false;
  }
  Object.defineProperty(ContractBound, 'name', { value: 'ContractProducer' });
  for (const [name, entry] of Object.entries(contract as Record<string, ContractEntry>)) {
    const method = `${entry.kind === 'rpc' ? 'rpc' : 'message'}_${name}`;
    const schema = entry.params !== undefined && !isTypeOnly(entry.params) ? entry.params : undefined;
    Object.defineProperty(ContractBound.prototype, method, {
      configurable: true,
      writable: true,
      value: function (this: GenericProducer, ...args: unknown[]): Promise<unknown> {
        const send = Reflect.get(fallback(), method, this) as (...a: unknown[]) => Promise<unknown>;
        if (!schema || !(this.constructor as ContractProducerClass<C>).validate) return send(...args);
        return check(schema, paramsIn(args), `${method} of the contract`).then(() => send(...args));
      },
    });
  }
  return ContractBound as unknown as ContractProducerClass<C>;
}
