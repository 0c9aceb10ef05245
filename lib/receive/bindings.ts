import type { Channel, ChannelModel } from 'amqplib';
import { BrokerError } from '../errors.js';
import type { Logger } from '../log.js';
import type { TopologyRegistry } from '../transport/topology-registry.js';
import { resolveExchange, type ExchangeLike } from '../topology/exchange.js';
import {
  amqpCodeOf,
  brokerSaid,
  declareQueue,
  exchangeDeclaration,
  type QueueFlags,
  type QueueSpec,
} from '../topology/topology.js';

interface Binding {
  exchange: ExchangeLike;
  queue: QueueSpec;
  key: string;
  flags: QueueFlags | undefined;
}

/** An exchange-to-exchange binding (a partitioned processor's way in). */
export interface Route {
  destination: ExchangeLike;
  source: ExchangeLike;
  key: string;
}

/**
 * A consumer's bindings, as data: every queue binding and exchange binding it made, replayed on a new channel after a
 * reconnection, a cancelled consumer or an exchange deleted under it. The consumer decides when; this knows what.
 */
export class Bindings {
  /** The (real) names of the queues bound, in the order first bound: the consumer's `queues`. */
  readonly queues: string[] = [];
  #bindings: Binding[] = [];
  #routes: Route[] = [];
  /** The name the broker gave each binding's queue (a server-named queue has one only once declared). */
  readonly #queueNames = new WeakMap<Binding, string>();
  /** Server-named queues by the spec object their bindings share, with the channel they were declared on. */
  readonly #serverNamed = new WeakMap<object, { ch: Channel; name: string }>();

  constructor(
    private readonly log: Logger,
    private readonly topology: () => TopologyRegistry,
    private readonly model: () => ChannelModel | undefined,
  ) {}

  /** Every binding made so far: exchange, routing key, and the queue's real name. */
  list(): Array<{ exchange: string; key: string; queue: string }> {
    return this.#bindings.map((b) => ({
      exchange: resolveExchange(b.exchange).name,
      key: b.key,
      queue: this.#queueNames.get(b) ?? nameIn(b.queue),
    }));
  }

  /** Declares the exchange and queue, binds them; `force` declares the exchange even where declared already. */
  async bind(ch: Channel, b: Binding, force = false): Promise<string> {
    // The exchange is the connection's (others may bind to it too): declared through its topology, once.
    const exName = resolveExchange(b.exchange).name;
    await this.topology().ensure(this.#model(), ch, exchangeDeclaration(b.exchange), force);
    const name = await this.#declareQueue(ch, b);
    if (exName !== '') {
      await ch
        .bindQueue(name, exName, b.key)
        .catch(bindRefused(`queue '${name}' to exchange '${exName}' with key '${b.key}'`));
    }
    this.#bindings.push(b);
    this.#queueNames.set(b, name);
    if (!this.queues.includes(name)) this.queues.push(name);
    this.log.debug({ exchange: exName, queue: name, key: b.key }, 'queue bound');
    return name;
  }

  /** Binds exchange `destination` to `source` (declaring both through the connection's topology). */
  async route(ch: Channel, r: Route, force = false): Promise<void> {
    const topology = this.topology();
    await topology.ensure(this.#model(), ch, exchangeDeclaration(r.source), force);
    await topology.ensure(this.#model(), ch, exchangeDeclaration(r.destination), force);
    const [dest, src] = [resolveExchange(r.destination).name, resolveExchange(r.source).name];
    await ch
      .bindExchange(dest, src, r.key)
      .catch(bindRefused(`exchange '${dest}' to exchange '${src}' with key '${r.key}'`));
    this.#routes.push(r);
  }

  /**
   * Every binding and route made so far, again on a new channel (`force`: their exchanges declared anew too). A
   * replay that fails halfway keeps every binding for the next attempt.
   */
  async replay(ch: Channel, force: boolean): Promise<void> {
    const bindings = this.#bindings;
    const routes = this.#routes;
    this.#bindings = [];
    this.#routes = [];
    this.queues.length = 0;
    try {
      for (const b of bindings) await this.bind(ch, b, force);
      for (const r of routes) await this.route(ch, r, force);
    } catch (err) {
      this.#bindings = bindings;
      this.#routes = routes;
      throw err;
    }
  }

  /**
   * Declares `queue` again with every binding it had (a server-named queue gets a new name); resolves to the names.
   * A failure keeps every binding, for the next attempt.
   */
  async rebind(ch: Channel, queue: string): Promise<string[]> {
    const mine = this.#bindings.filter((b) => this.#queueNames.get(b) === queue);
    this.#bindings = this.#bindings.filter((b) => !mine.includes(b));
    this.#dropQueue(queue);
    const names = new Set<string>();
    try {
      for (const b of mine) names.add(await this.bind(ch, b));
    } catch (err) {
      for (const b of mine) if (!this.#bindings.includes(b)) this.#bindings.push(b);
      if (!this.queues.includes(queue)) this.queues.push(queue);
      throw err;
    }
    return [...names];
  }

  /** Forgets the binding of `queue` to `exchange` with `key` (unbound on the broker by the caller). */
  unbind(exchange: string, queue: string, key: string): void {
    this.#bindings = this.#bindings.filter(
      (b) => !(resolveExchange(b.exchange).name === exchange && nameIn(b.queue) === queue && b.key === key),
    );
  }

  /** Forgets `queue` and its bindings (left on the broker: others may share the queue). */
  forget(queue: string): void {
    this.#dropQueue(queue);
    this.#bindings = this.#bindings.filter((b) => nameIn(b.queue) !== queue);
  }

  /** The name a queue spec has on `ch` (the broker's, for a server-named spec object). */
  nameOf(spec: QueueSpec, ch: Channel | undefined): string | undefined {
    if (typeof spec === 'string') return spec || undefined;
    if (spec.name !== '') return spec.name;
    const known = this.#serverNamed.get(spec);
    return known && known.ch === ch ? known.name : undefined;
  }

  /** The exchanges its queues and routes are bound to, by name: those it declares (a passive one is another's). */
  *exchangeNames(): Generator<string> {
    const named = (x: ExchangeLike) => {
      const r = resolveExchange(x);
      return r.passive ? [] : [r.name];
    };
    for (const b of this.#bindings) yield* named(b.exchange);
    for (const r of this.#routes) {
      yield* named(r.source);
      yield* named(r.destination);
    }
  }

  /**
   * Exchanges deleted under the consumer (`gone`): declared again on `ch`, and everything bound to them bound again.
   */
  async bindAgain(model: ChannelModel, ch: Channel, gone: Set<string>): Promise<void> {
    const topology = this.topology();
    const declared = new Set<string>();
    const declare = async (x: ExchangeLike) => {
      const name = resolveExchange(x).name;
      if (!gone.has(name) || declared.has(name)) return;
      await topology.ensure(model, ch, exchangeDeclaration(x), true);
      declared.add(name);
    };
    for (const b of this.#bindings) {
      const exName = resolveExchange(b.exchange).name;
      const queue = this.#queueNames.get(b);
      if (!gone.has(exName) || queue === undefined) continue;
      await declare(b.exchange);
      await ch.bindQueue(queue, exName, b.key);
    }
    for (const r of this.#routes) {
      const [dest, src] = [resolveExchange(r.destination).name, resolveExchange(r.source).name];
      if (!gone.has(dest) && !gone.has(src)) continue;
      await declare(r.source);
      await declare(r.destination);
      await ch.bindExchange(dest, src, r.key);
    }
  }

  /**
   * Bindings given one server-named spec object share one queue: declared once per channel, so a new name after each
   * restore (a server name cannot be declared again by name).
   */
  async #declareQueue(ch: Channel, b: Binding): Promise<string> {
    const spec = b.queue;
    if (typeof spec === 'string' || spec.name !== '') return declareQueue(ch, spec, b.flags);
    const known = this.#serverNamed.get(spec);
    if (known?.ch === ch) return known.name;
    const name = await declareQueue(ch, spec, b.flags);
    this.#serverNamed.set(spec, { ch, name });
    return name;
  }

  #model(): ChannelModel {
    const model = this.model();
    if (!model) throw new BrokerError('consumer is not connected (it is reconnecting)', 'NOT_CONNECTED');
    return model;
  }

  #dropQueue(queue: string): void {
    const i = this.queues.indexOf(queue);
    if (i >= 0) this.queues.splice(i, 1);
  }
}

function nameIn(spec: QueueSpec): string {
  return typeof spec === 'string' ? spec : spec.name;
}

/** A bind the broker refused (`what`: what was bound to what), as the BrokerError that says so. */
function bindRefused(what: string): (err: unknown) => never {
  return (err) => {
    throw new BrokerError(`cannot bind ${what}: ${brokerSaid(err)}`, 'DECLARE_FAILED', {
      cause: err,
      amqpCode: amqpCodeOf(err),
    });
  };
}
