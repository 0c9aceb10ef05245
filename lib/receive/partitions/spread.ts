import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib';
import { randomBytes } from 'node:crypto';
import type { Logger } from '../../log.js';
import { instruments } from '../../telemetry/metrics.js';
import { flushChannel } from '../../transport/amqplib-adapter.js';
import { openChannel } from '../../transport/channels.js';
import { AckBatcher } from '../acks.js';
import type { GenericConsumer } from '../consumer.js';
import { consumerInternals } from '../consumer-internals.js';
import { badReplyTo } from '../delivery/replier.js';
import type { FingerprintDict } from '../../envelope/fingerprint.js';
import { assignPartitions } from './assignment.js';

/** One partition changing hands, as this replica saw it: told as a log line, an event and a metric. */
export interface PartitionMove {
  /** The partition queue (`orders.p3`). */
  partition: string;
  /** The queue it is a partition of (`orders`). */
  queue: string;
  /** `acquired`: this replica now consumes it; `released`: it finished what it held of it and let it go. */
  direction: 'acquired' | 'released';
  /** This replica's id (`describe` lists every replica's). */
  replica: string;
  /** How many replicas this one knows of, itself included, after the change. */
  replicas: number;
  /** What set it off. */
  reason: 'start' | 'join' | 'leave' | 'expired' | 'reconnect' | 'close' | 'lost';
  /** For a release: how long finishing what it held took, in ms. */
  drainedMs?: number;
}

/** A partitioned processor's partitions, as `describe` tells of them. */
export interface PartitionsDescription {
  queue: string;
  partitions: string[];
  /**
   * Partitions this replica consumes now (with rebalancing off: those it has had deliveries from). A partition it
   * was given while another replica still finishes what it holds of it is not among them until that one let go: the
   * broker keeps the old one active meanwhile (see `standbyHere`).
   */
  activeHere: string[];
  /** Partitions this replica gives up and still finishes what it holds of (the broker's active consumer until then). */
  lettingGo?: string[];
  /** Partitions this replica was given and waits for, as a standby, while another replica lets go of them. */
  standbyHere?: string[];
  /** Whether the partitions spread over the replicas (the `rebalance` option). */
  rebalance: boolean;
  /** This replica's id. */
  replica: string;
  /**
   * Every replica this one knows of, and the partitions the shared assignment gives each (none: idle, there are
   * more replicas than partitions). With rebalancing off, only this one.
   */
  replicas: Array<{ id: string; pid: string; host: string; partitions: string[] }>;
  /** Messages waiting (ready, not delivered) in each partition, when asked. */
  waiting?: Record<string, number>;
  /**
   * What the queue is bound to, as the processor's eqk says: where senders send (with `_partition_key`); the
   * processor routes it on to the partitions. `type` is the exchange's.
   */
  routes?: Array<{ exchange: string; type: string; key: string }>;
}

/** How rebalancing works, from the processor's `rebalance` option. @internal */
export interface SpreadSettings {
  rebalance: boolean;
  heartbeatMs: number;
}

/** The fanout exchange over which the replicas of a partitioned processor announce themselves. */
export function replicasExchange(queue: string): string {
  return `${queue}.replicas`;
}

const VERSION = 1;

/** What a replica says on the replicas exchange. */
interface Announcement {
  v: number;
  kind: 'hello' | 'beat' | 'bye';
  id: string;
  partitions: number;
  pid: string;
  host: string;
  /** Partitions it consumes now. */
  holds: string[];
  /** Partitions it gives up and still finishes what it holds of. */
  lettingGo?: string[];
}

interface Member {
  id: string;
  pid: string;
  host: string;
  seen: number;
  holds: string[];
  lettingGo: string[];
}

/** A partition this replica consumes: its own channel, so that letting go of it (closing it) touches nothing else. */
interface Lease {
  partition: string;
  queue: string;
  ch: Channel | undefined;
  tag: string;
  acks: AckBatcher | undefined;
  /** Deliveries handed to the processor and not settled yet. */
  inFlight: number;
  /** Giving it up: new deliveries stay unhandled (they go back with the channel), those handed over finish. */
  releasing: boolean;
  /** Resolves a release's wait once nothing is in flight. */
  idle: (() => void) | undefined;
}

let nextTag = 0;
const TAG_PREFIX = `postage.part.${process.pid}.${randomBytes(3).toString('hex')}`;

/**
 * Consumes a partitioned processor's partitions, each on a channel of its
 * own, and (with rebalancing) only its share of them. Replicas find each
 * other on a fanout exchange (`QUEUE.replicas`), each through a server-named
 * exclusive queue of its own: a hello when it starts, a beat every
 * `heartbeatMs`, a bye when it closes; one not heard from for two beats and a
 * half is taken for gone. From the same list of ids every replica works out
 * the same assignment ({@link assignPartitions}) and consumes what it is
 * given. The partitions keep single active consumer, so a replica that takes
 * a partition before its last owner has let go of it waits as a standby:
 * the broker hands it over only when the old owner's channel closes, after
 * the old owner finished and settled what it held of it. That is what keeps
 * each key's order through every move.
 *
 * It is also the processor's settler and replier for these deliveries: acks
 * go to the channel a delivery came on. @internal
 */
export class PartitionSpread {
  /** This replica's id: sortable and unique. */
  readonly id = `${Date.now().toString(36)}.${randomBytes(4).toString('hex')}`;
  readonly #consumer: GenericConsumer;
  readonly #queues: Map<string, string[]>;
  readonly #total: number;
  readonly #settings: SpreadSettings;
  readonly #drainMs: number;
  readonly #deliver: (msg: ConsumeMessage) => void;
  readonly #log: Logger;
  readonly #fp: FingerprintDict;
  readonly #told: (move: PartitionMove) => void;
  readonly #exchange: string;
  readonly #leases = new Map<string, Lease>();
  readonly #byTag = new Map<string, Lease>();
  /** Partitions that have had deliveries here (what `activeHere` says with rebalancing off). */
  readonly #delivered = new Set<string>();
  readonly #members = new Map<string, Member>();
  #control: Channel | undefined;
  /** When this replica last published a beat, and last heard one of its own come back (see #tick). */
  #saidAt = 0;
  #heardSelfAt = 0;
  #reopening = false;
  #warnedReopenAt = 0;
  #beat: NodeJS.Timeout | undefined;
  #soon: NodeJS.Timeout | undefined;
  #joined = false;
  #running = false;
  #again = false;
  #reason: PartitionMove['reason'] = 'start';
  #closing = false;
  #warnedCount = new Set<string>();

  constructor(options: {
    consumer: GenericConsumer;
    queues: Map<string, string[]>;
    settings: SpreadSettings;
    drainMs: number;
    deliver: (msg: ConsumeMessage) => void;
    log: Logger;
    fingerprint: FingerprintDict;
    told: (move: PartitionMove) => void;
  }) {
    this.#consumer = options.consumer;
    this.#queues = options.queues;
    this.#total = [...options.queues.values()].reduce((n, ps) => n + ps.length, 0);
    this.#settings = options.settings;
    this.#drainMs = options.drainMs;
    this.#deliver = options.deliver;
    this.#log = options.log;
    this.#fp = options.fingerprint;
    this.#told = options.told;
    this.#exchange = replicasExchange([...options.queues.keys()][0]);
  }

  /** Partitions per queue (all queues of a processor are split alike). */
  get #n(): number {
    return [...this.#queues.values()][0]?.length ?? 0;
  }

  /** Joins the other replicas (with rebalancing) and starts consuming its share. */
  async start(): Promise<void> {
    if (!this.#settings.rebalance) {
      this.#joined = true;
      await this.#reconcile();
      return;
    }
    await this.#openControl();
    this.#say('hello');
    this.#beat = setInterval(() => this.#tick(), this.#settings.heartbeatMs);
    this.#beat.unref();
    // A short wait for the others' answers to the hello, so that a replica joining a fleet does not first subscribe
    // to every partition.
    const wait = setTimeout(
      () => {
        this.#joined = true;
        this.#reconcileSoon('start');
      },
      Math.min(500, this.#settings.heartbeatMs),
    );
    wait.unref();
  }

  async #openControl(): Promise<void> {
    const model = this.#model();
    if (!model) return;
    const ch = await openChannel(model);
    ch.on('error', (err: Error) => this.#log.debug({ err: err.message }, 'replicas channel error'));
    ch.on('close', () => {
      if (this.#control === ch) this.#control = undefined;
    });
    await ch.assertExchange(this.#exchange, 'fanout', { durable: true });
    const { queue } = await ch.assertQueue('', { exclusive: true, autoDelete: true, durable: false });
    await ch.bindQueue(queue, this.#exchange, '');
    await ch.consume(queue, (msg) => msg && this.#heard(msg), { noAck: true });
    // Opened while closing (a reopen on its way): not kept.
    if (this.#closing) {
      await ch.close().catch(() => undefined);
      return;
    }
    // Opened again (a beat found the exchange gone, or the connection came back) while another was open: one is kept.
    const before = this.#control;
    this.#control = ch;
    if (before && before !== ch) await before.close().catch(() => undefined);
  }

  #reopenControl(): void {
    if (this.#reopening || this.#closing || !this.#model()) return;
    this.#reopening = true;
    const old = this.#control;
    this.#control = undefined;
    // Once per outage: a broker that keeps refusing the declare is retried every beat, quietly.
    if (this.#heardSelfAt >= this.#warnedReopenAt) {
      this.#warnedReopenAt = Date.now();
      this.#log.warn(
        { exchange: this.#exchange, replica: this.id },
        `this replica's beats no longer come back over ${this.#exchange} (deleted?): declaring it and its binding ` +
          'again',
      );
    }
    void (async () => {
      await old?.close().catch(() => undefined);
      await this.#openControl();
      this.#saidAt = 0;
      // Everyone answers a hello at once: the others are heard again well before they would be forgotten.
      this.#say('hello');
    })()
      .catch((err: unknown) => this.#log.debug({ err }, 'replicas channel not opened again; the next beat tries'))
      .finally(() => {
        this.#reopening = false;
      });
  }

  #model(): ChannelModel | undefined {
    return this.#consumer.connection;
  }

  #say(kind: Announcement['kind']): void {
    const a: Announcement = {
      v: VERSION,
      kind,
      id: this.id,
      partitions: this.#n,
      pid: String(this.#fp.pid),
      host: String(this.#fp.host),
      holds: this.#holding(),
      lettingGo: this.#lettingGo(),
    };
    try {
      this.#control?.publish(this.#exchange, '', Buffer.from(JSON.stringify(a)), { contentType: 'application/json' });
    } catch (err) {
      this.#log.debug({ err: (err as Error).message }, 'replicas announcement not sent (its channel closed)');
    }
  }

  #holding(): string[] {
    return [...this.#leases.values()].filter((l) => l.ch && !l.releasing).map((l) => l.partition);
  }

  #lettingGo(): string[] {
    return [...this.#leases.values()].filter((l) => l.ch && l.releasing).map((l) => l.partition);
  }

  #heard(msg: ConsumeMessage): void {
    let a: Announcement;
    try {
      a = JSON.parse(msg.content.toString('utf8')) as Announcement;
    } catch {
      return;
    }
    if (a?.v !== VERSION || typeof a.id !== 'string' || this.#closing) return;
    if (a.id === this.id) {
      this.#heardSelfAt = Date.now();
      return;
    }
    if (a.partitions !== this.#n && !this.#warnedCount.has(a.id)) {
      this.#warnedCount.add(a.id);
      this.#log.warn(
        { replica: a.id, pid: a.pid, host: a.host },
        `replica ${a.pid}@${a.host} has ${a.partitions} partitions where this one has ${this.#n}`,
      );
    }
    if (a.kind === 'bye') {
      if (this.#members.delete(a.id)) this.#reconcileSoon('leave');
      return;
    }
    const known = this.#members.has(a.id);
    this.#members.set(a.id, {
      id: a.id,
      pid: a.pid,
      host: a.host,
      seen: Date.now(),
      holds: Array.isArray(a.holds) ? a.holds : [],
      lettingGo: Array.isArray(a.lettingGo) ? a.lettingGo : [],
    });
    // A newcomer learns of every replica at once, not a beat later.
    if (a.kind === 'hello') this.#say('beat');
    if (!known) this.#reconcileSoon('join');
  }

  /** Every beat: say it is here, and forget the replicas that have gone silent. */
  #tick(): void {
    // A fanout brings a replica's own beats back to it. One that did not come back a beat later, or a control channel
    // closed under it (a publish to a deleted exchange closes it), means the replicas exchange or this replica's
    // binding to it is gone (an operator deleted it): declared again before the others are forgotten for silence.
    // A beat long overdue means the event loop was held up: its echo may wait unread behind this timer, so it is not
    // counted as lost this time.
    const overdue = Date.now() - this.#saidAt > 1.5 * this.#settings.heartbeatMs;
    if (!this.#control || (!overdue && this.#heardSelfAt < this.#saidAt)) {
      this.#reopenControl();
      return;
    }
    this.#saidAt = Date.now();
    this.#say('beat');
    const limit = Date.now() - 2.5 * this.#settings.heartbeatMs;
    for (const m of this.#members.values()) {
      if (m.seen >= limit) continue;
      this.#members.delete(m.id);
      this.#log.warn(
        { replica: m.id, pid: m.pid, host: m.host },
        `replica ${m.pid}@${m.host} went silent: its partitions are spread over the others`,
      );
      this.#reconcileSoon('expired');
    }
  }

  /** The replicas this one knows of, itself included, by id. */
  #ids(): string[] {
    return [this.id, ...this.#members.keys()];
  }

  /** Partitions this replica should consume now. */
  #share(): Set<string> {
    const mine = new Set<string>();
    for (const names of this.#queues.values()) {
      if (!this.#settings.rebalance) {
        for (const p of names) mine.add(p);
        continue;
      }
      for (const [p, owner] of assignPartitions(names, this.#ids())) if (owner === this.id) mine.add(p);
    }
    return mine;
  }

  #reconcileSoon(reason: PartitionMove['reason']): void {
    this.#reason = reason;
    if (!this.#joined || this.#closing || this.#soon) return;
    // Several hellos or byes at once make one change.
    this.#soon = setTimeout(() => {
      this.#soon = undefined;
      void this.#reconcile();
    }, 20);
  }

  async #reconcile(): Promise<void> {
    if (this.#running) {
      this.#again = true;
      return;
    }
    this.#running = true;
    try {
      do {
        this.#again = false;
        await this.#reconcileOnce();
      } while (this.#again && !this.#closing);
    } catch (err) {
      this.#log.warn({ err }, 'could not take up its partitions; trying again in a second');
      setTimeout(() => this.#reconcileSoon(this.#reason), 1000).unref();
    } finally {
      this.#running = false;
    }
  }

  async #reconcileOnce(): Promise<void> {
    if (this.#closing) return;
    const model = this.#model();
    if (!model) return;
    const mine = this.#share();
    const reason = this.#reason;
    for (const lease of this.#leases.values())
      if (!mine.has(lease.partition) && !lease.releasing) void this.#release(lease, reason);
    const taken: string[] = [];
    for (const [queue, names] of this.#queues) {
      for (const p of names) {
        if (!mine.has(p) || this.#leases.has(p)) continue;
        if (this.#closing || this.#model() !== model) return;
        await this.#acquire(model, queue, p);
        taken.push(p);
      }
    }
    if (taken.length > 0) {
      const replicas = this.#ids().length;
      this.#log.info(
        { partitions: taken, replicas, reason, replica: this.id },
        `took partitions ${taken.join(', ')} (${replicas} replicas, ${why(reason)})`,
      );
      for (const p of taken)
        this.#move({ partition: p, queue: queueOfPartition(p), direction: 'acquired', replicas, reason });
      this.#say('beat');
    }
  }

  async #acquire(model: ChannelModel, queue: string, partition: string): Promise<void> {
    const ch = await openChannel(model);
    const lease: Lease = {
      partition,
      queue,
      ch,
      tag: `${TAG_PREFIX}.${nextTag++}`,
      acks: undefined,
      inFlight: 0,
      releasing: false,
      idle: undefined,
    };
    ch.on('error', (err: Error) => this.#log.warn({ err: err.message, partition }, 'partition channel error'));
    ch.on('close', () => {
      if (lease.ch !== ch) return;
      // The broker closed it (or the connection went): what it held goes back; taken up again on the next change.
      this.#drop(lease);
      if (!this.#closing && this.#model() === model) setTimeout(() => this.#reconcileSoon('lost'), 1000).unref();
    });
    await ch.prefetch(this.#consumer.prefetch);
    const prefetch = this.#consumer.prefetch;
    lease.acks = new AckBatcher(ch, prefetch > 0 ? Math.max(1, Math.floor(prefetch / 2)) : 256, () => flushChannel(ch));
    this.#leases.set(partition, lease);
    this.#byTag.set(lease.tag, lease);
    await this.#consume(lease, ch);
    if (this.#closing && lease.ch === ch) {
      // Closed while this consume was on its way: close() did not see it.
      this.#drop(lease);
      await ch.close().catch(() => undefined);
    }
  }

  async #consume(lease: Lease, ch: Channel): Promise<void> {
    await ch.consume(
      lease.partition,
      (msg) => {
        if (msg) this.#arrived(lease, msg);
        // amqplib's word for the broker's basic.cancel: the partition queue was deleted (or its node went).
        else this.#cancelled(lease, ch);
      },
      { consumerTag: lease.tag },
    );
  }

  /**
   * The broker cancelled a partition's consumer: the partition is declared again, bound to the hash exchange, and
   * consumed again on its channel (while this replica still holds it), as a plain queue's consumer does. Left gone,
   * its keys would hash onto the other partitions, `describe` would still call it active here, and every replica
   * started later would be refused at ready() for a partition count the broker does not have.
   */
  #cancelled(lease: Lease, ch: Channel): void {
    if (this.#closing) return;
    const held = () => !this.#closing && lease.ch === ch && !lease.releasing;
    consumerInternals(this.#consumer).recoverQueue(
      lease.partition,
      async () => {
        if (held()) await this.#consume(lease, ch);
      },
      () => !this.#closing,
    );
  }

  #arrived(lease: Lease, msg: ConsumeMessage): void {
    // Giving it up: left unsettled, it goes back to the partition with the channel, for the next owner.
    if (lease.releasing || lease.ch === undefined) return;
    lease.inFlight++;
    this.#delivered.add(lease.partition);
    this.#deliver(msg);
  }

  /** Stops handling a partition, waits for what it handed over to settle, then closes its channel. */
  async #release(lease: Lease, reason: PartitionMove['reason']): Promise<void> {
    if (lease.releasing) return;
    lease.releasing = true;
    const started = Date.now();
    if (lease.inFlight > 0 && lease.ch) {
      // The others hear at once that it is letting go (their describe says they wait for it), not a beat later.
      if (!this.#closing) this.#say('beat');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          this.#log.warn(
            { partition: lease.partition, inFlight: lease.inFlight },
            `partition ${lease.partition}: handlers still running after ${this.#drainMs} ms; letting it go anyway`,
          );
          resolve();
        }, this.#drainMs);
        lease.idle = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    const ch = lease.ch;
    const acks = lease.acks;
    // Closed or lost meanwhile: that told its own story.
    if (!ch) return;
    this.#drop(lease);
    acks?.flush();
    // The broker returns what the channel still holds and makes the next consumer active in one step.
    await ch.close().catch(() => undefined);
    const drainedMs = Date.now() - started;
    const replicas = this.#ids().length;
    this.#log.info(
      { partition: lease.partition, drainedMs, replicas, reason, replica: this.id },
      `let partition ${lease.partition} go after ${drainedMs} ms (${replicas} replicas, ${why(reason)})`,
    );
    this.#move({
      partition: lease.partition,
      queue: lease.queue,
      direction: 'released',
      replicas,
      reason,
      drainedMs,
    });
    if (!this.#closing) {
      this.#say('beat');
      // Wanted back meanwhile (views changed again): taken up now.
      this.#reconcileSoon(this.#reason);
    }
  }

  #drop(lease: Lease): void {
    lease.ch = undefined;
    lease.inFlight = 0;
    this.#byTag.delete(lease.tag);
    if (this.#leases.get(lease.partition) === lease) this.#leases.delete(lease.partition);
    lease.idle?.();
    lease.idle = undefined;
  }

  #move(m: Omit<PartitionMove, 'replica'>): void {
    const move: PartitionMove = { ...m, replica: this.id };
    instruments()?.partitionMoves.add(1, { queue: move.queue, direction: move.direction, reason: move.reason });
    this.#told(move);
  }

  /** One delivery of a partition settled: a release waiting for it may go on. */
  #settledOne(lease: Lease): void {
    if (lease.inFlight > 0) lease.inFlight--;
    if (lease.inFlight === 0 && lease.idle) {
      // After the ack is in the batcher (it is put there right after this returns).
      const idle = lease.idle;
      lease.idle = undefined;
      queueMicrotask(idle);
    }
  }

  /** Whether a delivery came from a partition channel (settled here) or from the consumer's own. */
  owns(msg: ConsumeMessage): boolean {
    return this.#byTag.has(msg.fields.consumerTag as string);
  }

  /** Acks a partition delivery on its channel; false when that channel is gone (the broker delivers it again). */
  ack(msg: ConsumeMessage): boolean {
    const lease = this.#byTag.get(msg.fields.consumerTag as string);
    if (!lease?.acks || !lease.ch) return this.#consumer.ack(msg);
    this.#settledOne(lease);
    lease.acks.ack(msg);
    return true;
  }

  reject(msg: ConsumeMessage, requeue: boolean): boolean {
    const lease = this.#byTag.get(msg.fields.consumerTag as string);
    if (!lease?.acks || !lease.ch) return this.#consumer.reject(msg, requeue);
    this.#settledOne(lease);
    lease.acks.reject(msg, requeue);
    return true;
  }

  /** Resolves once the broker has processed every settle sent so far, on every channel. */
  async settled(): Promise<void> {
    const prefetch = this.#consumer.prefetch;
    await Promise.all([
      consumerInternals(this.#consumer).ports.settler.settled(),
      ...[...this.#leases.values()].map((l) => {
        const ch = l.ch;
        if (!ch) return undefined;
        l.acks?.flush();
        return ch.prefetch(prefetch).catch(() => undefined);
      }),
    ]);
  }

  /** The partition a delivery came from, while its channel is open. */
  queueOf(msg: ConsumeMessage): string | undefined {
    const lease = this.#byTag.get(msg.fields.consumerTag as string);
    return lease?.ch ? lease.partition : undefined;
  }

  /** Answers an RPC that came on a partition, on its channel, after its settle. */
  sendReply(msg: ConsumeMessage, content: Buffer, headers?: Record<string, unknown>): void {
    const lease = this.#byTag.get(msg.fields.consumerTag as string);
    if (!lease) {
      consumerInternals(this.#consumer).ports.replier.sendReply(msg, content, headers);
      return;
    }
    const replyTo = msg.properties.replyTo as string | undefined;
    const bad = replyTo ? badReplyTo(replyTo) : 'is missing';
    const ch = lease.ch;
    if (bad || !ch || !lease.acks) {
      if (bad) this.#log.warn({ messageId: msg.properties.messageId }, `RPC reply_to ${bad}; the reply is dropped`);
      return;
    }
    lease.acks.afterSettled(() => {
      try {
        ch.publish('', replyTo!, content, {
          correlationId: msg.properties.correlationId,
          contentType: this.#consumer.encoder.contentType,
          headers,
          timestamp: Math.floor(Date.now() / 1000),
        });
      } catch {
        // The channel closed: the request was not settled either, and is answered when it comes again.
      }
    });
  }

  /** The connection went: every partition channel with it (what they held goes back to the partitions). */
  lost(): void {
    for (const lease of [...this.#leases.values()]) this.#drop(lease);
    this.#control = undefined;
  }

  /**
   * Back on a connection: announced again, its share taken up again. Every replica answers a hello at once, so one
   * that has not answered within the join wait left while this one was away (its bye went unheard): forgotten now
   * rather than two beats and a half later.
   */
  async restored(): Promise<void> {
    if (this.#closing) return;
    if (!this.#settings.rebalance) {
      this.#reconcileSoon('reconnect');
      return;
    }
    await this.#openControl();
    const asked = Date.now();
    this.#say('hello');
    setTimeout(
      () => {
        let gone = false;
        for (const m of this.#members.values()) {
          if (m.seen >= asked) continue;
          this.#members.delete(m.id);
          gone = true;
        }
        this.#reconcileSoon(gone ? 'leave' : 'reconnect');
      },
      Math.min(500, this.#settings.heartbeatMs),
    ).unref();
  }

  /**
   * Closing: says goodbye (the others take up its partitions at once, as standbys until its channels close) and
   * hands nothing more to the processor.
   */
  leave(): void {
    if (this.#closing) return;
    this.#closing = true;
    clearInterval(this.#beat);
    clearTimeout(this.#soon);
    this.#say('bye');
    for (const lease of this.#leases.values()) lease.releasing = true;
  }

  /** After the processor's handlers finished: every partition channel closes (the rest goes back), then its own. */
  async close(): Promise<void> {
    this.leave();
    const leases = [...this.#leases.values()];
    await Promise.all(
      leases.map(async (lease) => {
        const ch = lease.ch;
        const acks = lease.acks;
        this.#drop(lease);
        if (!ch) return;
        acks?.flush();
        await ch.close().catch(() => undefined);
        this.#move({
          partition: lease.partition,
          queue: lease.queue,
          direction: 'released',
          replicas: this.#ids().length - 1,
          reason: 'close',
        });
      }),
    );
    if (leases.some((l) => l.partition)) {
      this.#log.info(
        { partitions: leases.map((l) => l.partition), replica: this.id },
        `closing: let partitions ${leases.map((l) => l.partition).join(', ')} go`,
      );
    }
    const control = this.#control;
    this.#control = undefined;
    await control?.close().catch(() => undefined);
  }

  /** What `describe` says of the partitions; with `waiting`, how many messages wait in each (asked of the broker). */
  async describe(waiting: boolean): Promise<PartitionsDescription[]> {
    const counts = waiting ? await this.#waiting() : undefined;
    const ids = this.#ids();
    const holding = new Set(this.#holding());
    const lettingGo = new Set(this.#lettingGo());
    const othersLettingGo = new Set([...this.#members.values()].flatMap((m) => m.lettingGo));
    return [...this.#queues].map(([queue, names]) => {
      const owners = this.#settings.rebalance ? assignPartitions(names, ids) : new Map<string, string>();
      const replicas = (this.#settings.rebalance ? ids : [this.id]).sort().map((id) => {
        const m = this.#members.get(id);
        return {
          id,
          pid: m ? m.pid : String(this.#fp.pid),
          host: m ? m.host : String(this.#fp.host),
          partitions: this.#settings.rebalance
            ? names.filter((p) => owners.get(p) === id)
            : names.filter((p) => holding.has(p) && this.#delivered.has(p)),
        };
      });
      return {
        queue,
        partitions: names,
        activeHere: this.#settings.rebalance
          ? names.filter((p) => holding.has(p) && !othersLettingGo.has(p))
          : names.filter((p) => this.#delivered.has(p)),
        lettingGo: names.filter((p) => lettingGo.has(p)),
        standbyHere: names.filter((p) => holding.has(p) && othersLettingGo.has(p)),
        rebalance: this.#settings.rebalance,
        replica: this.id,
        replicas,
        ...(counts ? { waiting: Object.fromEntries(names.map((p) => [p, counts.get(p) ?? 0])) } : {}),
      };
    });
  }

  async #waiting(): Promise<Map<string, number>> {
    const counts = new Map<string, number>();
    const model = this.#model();
    if (!model || this.#total === 0) return counts;
    const ch = await openChannel(model);
    ch.on('error', () => undefined);
    try {
      for (const names of this.#queues.values())
        for (const p of names) counts.set(p, (await ch.checkQueue(p)).messageCount);
    } catch (err) {
      this.#log.debug({ err: (err as Error).message }, 'could not count the messages waiting in the partitions');
    } finally {
      await ch.close().catch(() => undefined);
    }
    return counts;
  }
}

/** `orders.p3` → `orders`. */
function queueOfPartition(p: string): string {
  return p.slice(0, p.lastIndexOf('.p'));
}

function why(reason: PartitionMove['reason']): string {
  switch (reason) {
    case 'start':
      return 'starting';
    case 'join':
      return 'a replica joined';
    case 'leave':
      return 'a replica left';
    case 'expired':
      return 'a replica went silent';
    case 'reconnect':
      return 'reconnected';
    case 'close':
      return 'closing';
    case 'lost':
      return 'its channel was lost';
  }
}
