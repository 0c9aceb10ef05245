/**
 * What the dashboard shows, gathered: the components as they come and go (describe on presence), every queue's depth,
 * consumers and rates, and the messages seen on the wire (a queue of its own bound as every component's queue is).
 */
import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib';
import { HEADERS } from '../../scope/context.js';
import type { ProcessorDescription } from '../../receive/description.js';
import { JsonEncoder } from '../../envelope/encoder.js';
import { openChannel } from '../../transport/channels.js';
import { COPYING_EXCHANGE_TYPES, exchangeType } from '../../transport/exchange-type.js';
import { type ComponentDirectory, componentId } from '../directory.js';
import { headerText as text } from '../error-queue.js';
import type { SeenMessage } from '../sequence.js';

interface ComponentState {
  description: ProcessorDescription;
  up: boolean;
  lastSeen: number;
}

export interface QueueState {
  name: string;
  messages: number | null;
  consumers: number | null;
  /** Messages routed to it per second (counted from the dashboard's own copy of each binding). */
  inPerSecond: number;
  /** inPerSecond minus the depth's change per second. */
  outPerSecond: number;
  error: boolean;
}

/** What the page is sent: the components, the queues (error queues last), the error queues, how many seen. */
export interface DashboardState {
  components: Array<ProcessorDescription & { id: string; up: boolean }>;
  queues: QueueState[];
  errorQueues: string[];
  seen: number;
}

const KEEP_SEEN = 2000;
/** The sender name of the dashboard's own describe questions, left out of the traffic it shows. */
export const DASHBOARD_NAME = 'postage-dashboard';

/** Whether a topic binding key matches a routing key (`*` one word, `#` any number). */
export function keyMatches(binding: string, key: string): boolean {
  if (binding === '' || binding === '#') return true;
  if (!binding.includes('*') && !binding.includes('#')) return binding === key;
  const b = binding.split('.');
  const k = key.split('.');
  const match = (i: number, j: number): boolean => {
    if (i === b.length) return j === k.length;
    if (b[i] === '#') return match(i + 1, j) || (j < k.length && match(i, j + 1));
    return j < k.length && (b[i] === '*' || b[i] === k[j]) && match(i + 1, j + 1);
  };
  return match(0, 0);
}

/**
 * The dashboard's view of the system, refreshed every `refreshMs` until closed; `onState` hears each refresh.
 *
 * Queue depth and consumers come from passive declares: they need only the rights a component has, and the
 * management plugin is off on a stock RabbitMQ. Rates in come from the dashboard's own queue, bound as every
 * component's queue is, so it counts what each queue is sent; rate out is that less the depth's growth.
 */
export class StateGatherer {
  readonly #components = new Map<string, ComponentState>();
  readonly #queues = new Map<string, QueueState>();
  readonly #seen: SeenMessage[] = [];
  readonly #routedSince = new Map<string, number>();
  readonly #watched = new Set<string>();
  readonly #exchangeTypes = new Map<string, string>();
  readonly #decoder = new JsonEncoder();
  /** What the components last said, worked out once per refresh: every message seen is matched against the bindings. */
  #bindings: Array<ProcessorDescription['bindings'][number] & { component: string }> = [];
  #errorQueues: string[] = [];
  #probe: Channel | undefined;
  #lastTick = Date.now();
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> = Promise.resolve();
  #closed = false;

  private constructor(
    private readonly conn: ChannelModel,
    private readonly directory: ComponentDirectory,
    private readonly watch: Channel,
    private readonly watchQueue: string,
    private readonly refreshMs: number,
    private readonly onState: (state: DashboardState) => void,
  ) {}

  /** Starts watching and resolves once the first refresh is done. */
  static async start(
    conn: ChannelModel,
    directory: ComponentDirectory,
    refreshMs: number,
    onState: (state: DashboardState) => void,
  ): Promise<StateGatherer> {
    // The dashboard's own view of the traffic: one exclusive queue with a copy of every binding.
    const watch = await openChannel(conn);
    watch.on('error', () => undefined);
    const { queue } = await watch.assertQueue('', { exclusive: true, autoDelete: true });
    const g = new StateGatherer(conn, directory, watch, queue, refreshMs, onState);
    await watch.consume(queue, (m) => g.#saw(m), { noAck: true });
    g.#loop();
    await g.#running;
    return g;
  }

  /** The error queues the running components report. */
  get errorQueues(): readonly string[] {
    return this.#errorQueues;
  }

  /** The messages seen, oldest first (the last {@link KEEP_SEEN}). */
  get seen(): readonly SeenMessage[] {
    return this.#seen;
  }

  state(): DashboardState {
    return {
      components: [...this.#components.values()].map((c) => ({
        ...c.description,
        id: componentId(c.description),
        up: c.up,
      })),
      queues: [...this.#queues.values()].sort(
        (a, b) => Number(a.error) - Number(b.error) || a.name.localeCompare(b.name),
      ),
      errorQueues: this.#errorQueues,
      seen: this.#seen.length,
    };
  }

  /** Stops refreshing, once the refresh under way (if any) is done. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    await this.#running;
  }

  #saw(m: ConsumeMessage | null): void {
    if (!m) return;
    const { exchange, routingKey } = m.fields;
    let body: { type?: string; name?: string; fingerprint?: { name?: string } } = {};
    try {
      body = this.#decoder.decode(m.content) as typeof body;
    } catch {
      // Not an envelope: shown by where it went.
    }
    if (body.fingerprint?.name === DASHBOARD_NAME) return;
    const targets = this.#bindings.filter((b) => b.exchange === exchange && keyMatches(b.key, routingKey));
    for (const q of new Set(targets.map((t) => t.queue))) this.#routedSince.set(q, (this.#routedSince.get(q) ?? 0) + 1);
    const headers = (m.properties.headers ?? {}) as Record<string, unknown>;
    this.#seen.push({
      at: new Date().toISOString(),
      exchange,
      routingKey,
      messageId: text(m.properties.messageId),
      conversationId: text(headers[HEADERS.conversationId]) ?? text(m.properties.messageId),
      causationId: text(headers[HEADERS.causationId]),
      correlationId: text(m.properties.correlationId),
      replyTo: text(m.properties.replyTo),
      what: `${body.type ?? '?'}/${body.name ?? '?'}`,
      from: body.fingerprint?.name ?? '(unknown sender)',
      to: [...new Set(targets.map((t) => t.component))],
    });
    if (this.#seen.length > KEEP_SEEN) this.#seen.splice(0, this.#seen.length - KEEP_SEEN);
  }

  /** Whether `exchange` gives every queue bound to it a copy (asked once per exchange that exists). */
  async #copies(exchange: string): Promise<boolean> {
    let type = this.#exchangeTypes.get(exchange);
    if (type === undefined) {
      type = await exchangeType(this.conn, exchange).catch(() => undefined);
      if (type === undefined) return false;
      this.#exchangeTypes.set(exchange, type);
    }
    return COPYING_EXCHANGE_TYPES.has(type);
  }

  async #check(queue: string): Promise<{ messageCount: number; consumerCount: number } | undefined> {
    try {
      if (!this.#probe) {
        const probe = await openChannel(this.conn);
        probe.on('error', () => undefined);
        probe.on('close', () => {
          if (this.#probe === probe) this.#probe = undefined;
        });
        this.#probe = probe;
      }
      return await this.#probe.checkQueue(queue);
    } catch {
      // A queue that is gone closes the channel: the next check opens another.
      this.#probe = undefined;
      return undefined;
    }
  }

  async #refresh(): Promise<void> {
    const answered = await this.directory
      .describeAll(Math.max(0.3, (this.refreshMs * 0.8) / 1000))
      .catch(() => [] as ProcessorDescription[]);
    const now = Date.now();
    const components = this.#components;
    for (const d of answered) components.set(componentId(d), { description: d, up: true, lastSeen: now });
    for (const c of components.values()) if (now - c.lastSeen > this.refreshMs * 2.5) c.up = false;
    this.#bindings = [...components.values()].flatMap((c) =>
      c.description.bindings.map((b) => ({ ...b, component: c.description.fingerprint.name })),
    );
    this.#errorQueues = [
      ...new Set(
        [...components.values()].map((c) => c.description.errorQueue).filter((q): q is string => typeof q === 'string'),
      ),
    ];
    for (const b of this.#bindings) {
      const k = `${b.exchange}\u0000${b.key}`;
      if (this.#watched.has(k) || b.exchange === '') continue;
      // Bound to an exchange that routes each message to one queue (a partitioned processor's consistent-hash
      // exchange), the watching queue would be one more partition and take its share of the messages: not bound there
      // (those queues show no rate in).
      if (!(await this.#copies(b.exchange))) continue;
      this.#watched.add(k);
      await this.watch.bindQueue(this.watchQueue, b.exchange, b.key).catch(() => this.#watched.delete(k));
    }
    const seconds = Math.max(0.001, (now - this.#lastTick) / 1000);
    this.#lastTick = now;
    const names = new Set([...this.#bindings.map((b) => b.queue), ...this.#errorQueues]);
    for (const name of names) {
      const r = await this.#check(name);
      const before = this.#queues.get(name);
      const routed = this.#routedSince.get(name) ?? 0;
      this.#routedSince.set(name, 0);
      const inPerSecond = routed / seconds;
      const grew = r && before?.messages != null ? (r.messageCount - before.messages) / seconds : 0;
      this.#queues.set(name, {
        name,
        messages: r?.messageCount ?? null,
        consumers: r?.consumerCount ?? null,
        inPerSecond,
        outPerSecond: Math.max(0, inPerSecond - grew),
        error: this.#errorQueues.includes(name),
      });
    }
    this.onState(this.state());
  }

  #loop(): void {
    this.#running = this.#refresh()
      .catch(() => undefined)
      .finally(() => {
        if (!this.#closed) this.#timer = setTimeout(() => this.#loop(), this.refreshMs);
      });
  }
}
