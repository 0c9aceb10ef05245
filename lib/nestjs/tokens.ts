import { Inject } from '@nestjs/common';
import type { AnyLogger } from '../log.js';
import type { GenericProducer } from '../send/producer.js';
import type { MessageStore } from '../stores/store.js';
import type { Connection } from '../transport/shared.js';

/** Symbol.for, so that an ESM and a CommonJS copy of postage-ts in one Nest app name the same providers. */
export const POSTAGE_MODULE_OPTIONS = Symbol.for('postage-ts.nestjs.options');
export const POSTAGE_CONNECTION = Symbol.for('postage-ts.nestjs.connection');
export const POSTAGE_COMPONENT_OPTIONS = Symbol.for('postage-ts.nestjs.component-options');

/**
 * What the module hands each component: spread it into a processor's options,
 * `super({ ...postage, eqk })`, so the processor shares the module's
 * connection, logs through Nest, leaves signals to Nest, and refuses remote
 * `quit` / `restart` unless the module allows them, and runs each delivery
 * in the module's `store` where it has one.
 */
export interface PostageComponentOptions {
  readonly connection: Connection;
  readonly logger: AnyLogger;
  readonly handleSignals: false;
  readonly remoteControl: boolean;
  /** The module's `store` (`PostageModule.forRoot({ store })`), where it has one: each processor's runs in it. */
  readonly store?: MessageStore;
}

type NestInjectDecorator = ReturnType<typeof Inject>;

/** Injects {@link PostageComponentOptions}: `constructor(@InjectPostage() postage: PostageComponentOptions, …)`. */
export function InjectPostage(): NestInjectDecorator {
  return Inject(POSTAGE_COMPONENT_OPTIONS);
}

/** Injects the module's shared {@link Connection} (its `status`, `statusChanges()`). */
export function InjectConnection(): NestInjectDecorator {
  return Inject(POSTAGE_CONNECTION);
}

/**
 * Injects a producer the module made (`PostageModule.forRoot({ producers: [OrdersProducer] })`);
 * type the field `Producer<OrdersProducer>` to get its `message_NAME` / `rpc_NAME` methods.
 */
export function InjectProducer(producer: abstract new (...args: never[]) => GenericProducer): NestInjectDecorator {
  return Inject(producer);
}
