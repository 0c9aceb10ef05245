import type { DiscoveryService } from '@nestjs/core';
import type { Logger } from '../log.js';
import { isProcessor, type MessageProcessor } from '../receive/processor.js';
import type { GenericProducer } from '../send/producer.js';
import { serve, type Served } from '../application/serve.js';
import type { Connection } from '../transport/shared.js';

/** Which processor classes the module runs: every processor provider in the app, or only these. */
export type ProcessorSelection = 'all' | ReadonlyArray<abstract new (...args: never[]) => MessageProcessor>;

/**
 * The module's part in the Nest application's life: at bootstrap it finds the
 * processors among the app's providers and serves them (ready, one scheduler,
 * no signal handlers: Nest owns the process); at shutdown it drains them, then
 * closes the producers and the connection it opened.
 * @internal
 */
export class PostageRuntime {
  #served: Served | undefined;
  #processors: MessageProcessor[] = [];

  constructor(
    private readonly discovery: DiscoveryService,
    private readonly connection: Connection,
    private readonly ownsConnection: boolean,
    private readonly producers: readonly GenericProducer[],
    private readonly selection: ProcessorSelection,
    private readonly log: Logger,
  ) {}

  /** The processors it runs (after bootstrap). */
  get processors(): readonly MessageProcessor[] {
    return this.#processors;
  }

  async onApplicationBootstrap(): Promise<void> {
    const found: MessageProcessor[] = [];
    for (const wrapper of this.discovery.getProviders()) {
      const instance: unknown = wrapper.instance;
      if (!isProcessor(instance)) continue;
      if (this.selection !== 'all' && !this.selection.some((c) => instance instanceof c)) continue;
      if (!wrapper.isDependencyTreeStatic()) {
        this.log.warn(
          `${instance.constructor.name} is request- or transient-scoped: a processor must be a singleton to consume, ` +
            'so it is not started',
        );
        continue;
      }
      if (!found.includes(instance)) found.push(instance);
    }
    this.#processors = found;
    if (found.length === 0) return;
    this.#served = await serve(...found, { handleSignals: false });
    for (const p of found) {
      // A processor that did not take the module's options runs, but apart from the app's connection and shutdown: say
      // how to join.
      if (p.consumer.connection !== this.connection.model) {
        this.log.warn(
          `${p.constructor.name} opened its own connection instead of the module's: ` +
            "inject the module's options and spread them, constructor(@InjectPostage() postage: " +
            'PostageComponentOptions) { super({ ...postage, eqk }) }',
        );
      }
    }
    this.log.debug({ processors: found.map((p) => p.constructor.name) }, 'postage-ts processors started');
  }

  /**
   * Drains in the first shutdown phase, so handlers in flight finish and are acked before any beforeApplicationShutdown
   * / onApplicationShutdown hook.
   */
  async onModuleDestroy(): Promise<void> {
    await this.#served?.close();
  }

  async onApplicationShutdown(): Promise<void> {
    await this.#served?.close();
    await Promise.allSettled(this.producers.map((p) => p.close()));
    if (this.ownsConnection) await this.connection.close();
  }
}
