import { TopologyError } from '../errors.js';

/** An exchange as a plain object, accepted wherever an `Exchange` class is. */
export interface ExchangeObject extends PostageSpelling {
  name: string;
  type: string;
  durable?: boolean;
  autoDelete?: boolean;
  passive?: boolean;
  arguments?: Record<string, unknown>;
}

/** Python Postage's attribute names, accepted so that code ported word for word keeps its meaning. */
interface PostageSpelling {
  /** @deprecated Postage's spelling of `type`. */
  exchange_type?: string;
  /** @deprecated Postage's spelling of `autoDelete`. */
  auto_delete?: boolean;
}

/** What `Exchange.parameters` returns (Postage's names, camel-cased). */
export interface ExchangeParameters {
  exchange: string;
  type: string;
  passive: boolean;
  durable: boolean;
  autoDelete: boolean;
}

/**
 * An exchange declared by class attributes, never instantiated.
 *
 * @example
 * class PingExchange extends Exchange {
 *   static name = 'ping-exchange'; static type = 'direct';
 * }
 */
export class Exchange {
  /** The exchange's name on the broker; a subclass without one uses its class name. */
  declare static readonly name: string;
  /** @default 'direct' */
  static type = 'direct';
  /** @default true */
  static durable = true;
  /** @default false */
  static autoDelete = false;
  /** @default false */
  static passive = false;
  /** Extra `x-…` arguments for the declaration. */
  static arguments: Record<string, unknown> | undefined = undefined;

  static get parameters(): ExchangeParameters {
    const r = resolveExchange(this);
    return { exchange: r.name, type: r.type, passive: r.passive, durable: r.durable, autoDelete: r.autoDelete };
  }
}

export type ExchangeLike = typeof Exchange | ExchangeObject;

/** Everything needed to declare an exchange, whatever form it was given in. */
export interface ResolvedExchange {
  name: string;
  type: string;
  durable: boolean;
  autoDelete: boolean;
  passive: boolean;
  arguments: Record<string, unknown> | undefined;
}

/**
 * Everything needed to declare an exchange, whatever form it was given in.
 * Postage's `exchange_type` / `auto_delete` count as `type` / `autoDelete`
 * (and win over the inherited defaults); both spellings at odds are refused.
 */
export function resolveExchange(ex: ExchangeLike): ResolvedExchange {
  const postage = ex as PostageSpelling;
  const own = (key: 'type' | 'autoDelete'): unknown =>
    typeof ex === 'function' ? (Object.hasOwn(ex, key) || ex === Exchange ? ex[key] : undefined) : ex[key];
  const type = pick(ex.name, 'type', 'exchange_type', own('type'), postage.exchange_type) ?? ex.type ?? 'direct';
  const autoDelete =
    pick(ex.name, 'autoDelete', 'auto_delete', own('autoDelete'), postage.auto_delete) ?? ex.autoDelete ?? false;
  if (typeof ex === 'function') {
    return {
      name: ex.name,
      type: String(type),
      durable: ex.durable,
      autoDelete: Boolean(autoDelete),
      passive: ex.passive,
      arguments: ex.arguments,
    };
  }
  return {
    name: ex.name,
    type: String(type),
    durable: ex.durable ?? true,
    autoDelete: Boolean(autoDelete),
    passive: ex.passive ?? false,
    arguments: ex.arguments,
  };
}

/** One value out of the TypeScript and the Postage spelling of an attribute; both, at odds, are an error. */
function pick(name: string, ts: string, py: string, tsValue: unknown, pyValue: unknown): unknown {
  if (pyValue === undefined) return tsValue;
  if (tsValue !== undefined && tsValue !== pyValue) {
    throw new TopologyError(
      `exchange '${name}' sets both ${ts} (${String(tsValue)}) and Postage's ${py} (${String(pyValue)}): keep ${ts}, ` +
        'the TypeScript spelling',
    );
  }
  return pyValue;
}
