/** An exchange as a plain object, accepted wherever an `Exchange` class is. */
export interface ExchangeObject {
  name: string;
  type: string;
  durable?: boolean;
  autoDelete?: boolean;
  passive?: boolean;
  arguments?: Record<string, unknown>;
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
    return { exchange: this.name, type: this.type, passive: this.passive, durable: this.durable, autoDelete: this.autoDelete };
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

export function resolveExchange(ex: ExchangeLike): ResolvedExchange {
  if (typeof ex === 'function') {
    return { name: ex.name, type: ex.type, durable: ex.durable, autoDelete: ex.autoDelete, passive: ex.passive, arguments: ex.arguments };
  }
  return {
    name: ex.name,
    type: ex.type,
    durable: ex.durable ?? true,
    autoDelete: ex.autoDelete ?? false,
    passive: ex.passive ?? false,
    arguments: ex.arguments,
  };
}
