import {
  Logger as NestLogger,
  Module,
  type DynamicModule,
  type FactoryProvider,
  type ModuleMetadata,
  type Provider,
} from '@nestjs/common';
import { DiscoveryModule, DiscoveryService } from '@nestjs/core';
import { asPino, type AnyLogger } from '../log.js';
import type { GenericProducer, ProducerOptions } from '../send/producer.js';
import type { MessageStore } from '../stores/store.js';
import { connect, Connection, type ConnectionOptions } from '../transport/shared.js';
import { PostageHealthIndicator } from './health.js';
import { PostageRuntime, type ProcessorSelection } from './runtime.js';
import {
  POSTAGE_COMPONENT_OPTIONS,
  POSTAGE_CONNECTION,
  POSTAGE_MODULE_OPTIONS,
  type PostageComponentOptions,
} from './tokens.js';

/** A producer class the module makes: built with `Class.create({ connection, logger })`. */
export type ProducerClass = (new (
  options?: ProducerOptions,
) => GenericProducer) &
  Pick<typeof GenericProducer, 'create'>;

/**
 * What the module's connection and components are made from (through Nest's DI with {@link
 * PostageModule.forRootAsync}).
 */
export interface PostageModuleOptions extends ConnectionOptions {
  /** A connection to share instead of opening one (`connect()`); the module then leaves closing it to you. */
  connection?: Connection;
  /**
   * Where postage-ts logs: Nest's logger (`new Logger()`, each line in the context of its component) unless given
   * pino, a `(fields, message)` logger, or another `LoggerService`.
   */
  logger?: AnyLogger;
  /**
   * Whether processors obey a remote `quit` / `restart` command. Off: anyone who may publish to a processor's exchange
   * could stop the app. @default false
   */
  remoteControl?: boolean;
  /** Which processor providers are started: every one in the app (the default), or only these classes. */
  processors?: ProcessorSelection;
  /**
   * A store for the transactional outbox and inbox (a `PostgresStore` from `postage-ts/postgres`), handed to every
   * processor that spreads the module's options (`super({ ...postage, eqk })`): each delivery runs in one of its
   * transactions. The health indicator then also reads each processor's outbox backlog.
   */
  store?: MessageStore;
  /**
   * With `store`: how long the oldest outbox row may wait before the health indicator says down (the relay and the
   * sweeper cannot publish). @default 60000
   */
  outboxMaxAgeMs?: number;
}

/** The parts of the module that are known before DI runs (they decide which providers exist). */
export interface PostageModuleStatics {
  /**
   * Producers to make and export, injectable by class: `@InjectProducer(OrdersProducer) orders:
   * Producer<OrdersProducer>`.
   */
  producers?: readonly ProducerClass[];
}

/** `forRootAsync`: options from a factory that Nest injects (`ConfigService`…). */
export interface PostageModuleAsyncOptions extends PostageModuleStatics, Pick<ModuleMetadata, 'imports'> {
  useFactory: (...deps: never[]) => PostageModuleOptions | Promise<PostageModuleOptions>;
  inject?: FactoryProvider['inject'];
}

/** Options as the providers read them, with what the module decided. */
interface Resolved {
  readonly options: PostageModuleOptions;
  readonly logger: AnyLogger;
}

/**
 * postage-ts in a NestJS application: one shared connection, processors that
 * are ordinary providers (constructor injection works) started at bootstrap
 * and drained at shutdown, producers injectable by class, and a health
 * indicator. Global: import it once, in the root module.
 *
 * @example
 * @Module({ imports: [PostageModule.forRoot({ producers: [OrdersProducer] })], providers: [OrdersService,
 * OrdersProcessor] })
 * export class AppModule {}
 */
export class PostageModule {
  static forRoot(options: PostageModuleOptions & PostageModuleStatics = {}): DynamicModule {
    const { producers, ...rest } = options;
    return PostageModule.#build({ provide: POSTAGE_MODULE_OPTIONS, useValue: rest }, producers ?? [], []);
  }

  static forRootAsync(options: PostageModuleAsyncOptions): DynamicModule {
    if (typeof options?.useFactory !== 'function')
      throw new TypeError(
        'PostageModule.forRootAsync({ useFactory, inject }): useFactory must be a function that returns the module ' +
          'options',
      );
    return PostageModule.#build(
      {
        provide: POSTAGE_MODULE_OPTIONS,
        useFactory: options.useFactory as (...deps: unknown[]) => PostageModuleOptions,
        inject: options.inject ?? [],
      },
      options.producers ?? [],
      options.imports ?? [],
    );
  }

  static #build(
    optionsProvider: Provider,
    producers: readonly ProducerClass[],
    imports: NonNullable<ModuleMetadata['imports']>,
  ): DynamicModule {
    const RESOLVED = Symbol('postage-ts.nestjs.resolved');
    const providers: Provider[] = [
      optionsProvider,
      {
        provide: RESOLVED,
        useFactory: (options: PostageModuleOptions): Resolved => ({
          options,
          // No context of its own: each line's context is then the component that said it, as Nest's own are.
          logger: options.logger ?? new NestLogger(),
        }),
        inject: [POSTAGE_MODULE_OPTIONS],
      },
      {
        provide: POSTAGE_CONNECTION,
        useFactory: ({ options, logger }: Resolved): Connection | Promise<Connection> => {
          if (options.connection !== undefined) {
            if (!Connection.is(options.connection))
              throw new TypeError('PostageModule: connection must be a postage-ts connection from connect()');
            return options.connection;
          }
          const { remoteControl: _r, processors: _p, store: _s, outboxMaxAgeMs: _o, ...connectOptions } = options;
          return connect({ ...connectOptions, logger });
        },
        inject: [RESOLVED],
      },
      {
        provide: POSTAGE_COMPONENT_OPTIONS,
        useFactory: ({ options, logger }: Resolved, connection: Connection): PostageComponentOptions => ({
          connection,
          logger,
          handleSignals: false,
          remoteControl: options.remoteControl ?? false,
          ...(options.store === undefined ? {} : { store: options.store }),
        }),
        inject: [RESOLVED, POSTAGE_CONNECTION],
      },
      ...producers.map(
        (P): Provider => ({
          provide: P,
          useFactory: ({ connection, logger }: PostageComponentOptions) => P.create({ connection, logger }),
          inject: [POSTAGE_COMPONENT_OPTIONS],
        }),
      ),
      {
        provide: PostageRuntime,
        useFactory: (
          discovery: DiscoveryService,
          { options, logger }: Resolved,
          connection: Connection,
          ...made: GenericProducer[]
        ) =>
          new PostageRuntime(
            discovery,
            connection,
            options.connection === undefined,
            made,
            options.processors ?? 'all',
            asPino(logger, { component: 'nestjs' }),
          ),
        inject: [DiscoveryService, RESOLVED, POSTAGE_CONNECTION, ...producers],
      },
      {
        provide: PostageHealthIndicator,
        useFactory: (connection: Connection, runtime: PostageRuntime, { options }: Resolved) =>
          new PostageHealthIndicator(connection, runtime, { outboxMaxAgeMs: options.outboxMaxAgeMs }),
        inject: [POSTAGE_CONNECTION, PostageRuntime, RESOLVED],
      },
    ];
    return {
      module: PostageModule,
      global: true,
      imports: [DiscoveryModule, ...imports],
      providers,
      exports: [POSTAGE_CONNECTION, POSTAGE_COMPONENT_OPTIONS, PostageHealthIndicator, ...producers],
    };
  }
}
Module({})(PostageModule);
