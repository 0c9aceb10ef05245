import type { ChannelModel, ConfirmChannel, ConsumeMessage, Options } from 'amqplib';
import { BrokerError } from '../errors.js';
import type { Logger } from '../log.js';
import { openChannel } from '../transport/channels.js';
import { Deadlines, type Wait } from '../transport/deadlines.js';
import { amqpCodeOf, brokerSaid, declareExchange, exchangeDeclaration, type EksEntry } from '../topology/topology.js';
import { registryOf, type TopologyRegistry } from '../transport/topology-registry.js';
import { DELAY_DOOR, delayHeaders, sendDelayed } from '../topology/delay.js';

/**
 * A header that tells a publish's return from another's with the same message
 * id, exchange and key in flight (delayed copies keep their original's id). @internal
 */
export const RETURN_MARK = 'postage-delay-copy';

/** One error for every target of a send that no queue took. @internal */
export function unroutableError(missed: readonly EksEntry[]): BrokerError {
  const unroutable = missed.map(([e, key]) => ({ exchange: e.name, key }));
  const list = unroutable.map((t) => `exchange '${t.exchange}' with key '${t.key}'`).join(', ');
  return new BrokerError(
    `no queue is bound to ${list}: the broker returned the message${missed.length > 1 ? ' for each of these' : ''}. ` +
      'Start the component that consumes it (if it is started, await its ready() before sending: until then its ' +
      'queue may not be bound), or check the exchange and key.',
    'UNROUTABLE',
    { unroutable },
  );
}

/**
 * Publishes persistent messages on a confirm channel of its own and settles
 * each send from what the broker says: confirmed, returned (no queue took it),
 * nacked, or nothing within the confirm timeout. Owns that channel's life
 * inside a connection: it opens it (declaring the producer's exchanges), and
 * after a nack moves to a fresh one. A channel it did not retire itself
 * closing is reported to `onLost`.
 * @internal
 */
export class Publisher {
  #channel: ConfirmChannel | undefined;
  /** Why the broker last closed the channel, for the sends it took down. */
  #channelError: Error | undefined;
  /** `messageId|exchange|key` of messages the broker returned, until their confirm arrives. */
  readonly #returned = new Set<string>();
  readonly #confirms: Deadlines;
  #renewing = false;
  #renewedAt = 0;
  #model: ChannelModel | undefined;
  #exchanges: readonly EksEntry[] = [];
  /** The connection's topology: exchanges are declared there once, however many producers send to them. */
  #topology: TopologyRegistry | undefined;

  constructor(
    private readonly log: Logger,
    confirmTimeoutMs: number,
    private readonly onLost: () => void,
  ) {
    this.#confirms = new Deadlines(confirmTimeoutMs);
  }

  get isOpen(): boolean {
    return this.#channel !== undefined;
  }

  /**
   * Opens the confirm channel on `model` and declares `exchanges` (the producer's eks) through the connection's
   * `topology`.
   */
  async open(model: ChannelModel, exchanges: readonly EksEntry[], topology?: TopologyRegistry): Promise<void> {
    // Opened again on the same connection: its channel was closed by the broker (an exchange deleted under us?):
    // declare anew.
    const again = model === this.#model;
    this.#model = model;
    this.#exchanges = exchanges;
    this.#topology = topology;
    this.#channel = await this.#openChannel(model, again);
    this.#channelError = undefined;
  }

  async #openChannel(model: ChannelModel, force = false): Promise<ConfirmChannel> {
    const ch = await openChannel(model, true);
    ch.on('error', (err: Error) => {
      this.#channelError = err;
      this.log.warn({ err: err.message }, 'producer channel error');
    });
    ch.on('close', () => {
      // A channel retired on purpose (see #renewAfterNack) takes nothing down with it.
      if (ch === this.#channel) this.onLost();
    });
    ch.on('return', (msg: ConsumeMessage) => {
      const id = msg.properties.messageId as string | undefined;
      if (id)
        this.#returned.add(
          returnKey(
            id,
            msg.fields.exchange,
            msg.fields.routingKey,
            msg.properties.headers as Record<string, unknown> | undefined,
          ),
        );
    });
    const topology = this.#topology;
    for (const [exchange] of this.#exchanges) {
      if (topology) await topology.ensure(model, ch, exchangeDeclaration(exchange), force);
      else await declareExchange(ch, exchange);
    }
    return ch;
  }

  /**
   * The connection or a channel went away: sends in flight were failed by amqplib, new ones fail until open() again.
   */
  lost(): void {
    const ch = this.#channel;
    this.#channel = undefined;
    // When only the other channel died, this one is closed too: open() makes a fresh pair.
    void ch?.close().catch(() => undefined);
  }

  /** No confirm comes while the broker blocks publishing: that wait is the alarm's, not a fault. */
  pause(): void {
    this.#confirms.pause();
  }

  resume(): void {
    this.#confirms.resume();
  }

  /**
   * Publishes `content` persistently to every target; resolves once the broker
   * confirmed it on all, rejects with `UNROUTABLE` (naming every target no
   * queue took, when `mandatory`), `NACK`, `CHANNEL_CLOSED` or `CONFIRM_TIMEOUT`.
   * Throws `NOT_CONNECTED` at once without a channel (`notConnected` says why).
   */
  publish(
    targets: readonly EksEntry[],
    props: Options.Publish & { messageId: string; mandatory: boolean },
    content: Buffer,
    notConnected: () => BrokerError,
  ): Promise<void> {
    const ch = this.#channel;
    if (!ch) return Promise.reject(notConnected());
    // One id per message, whatever its targets: consumers log it, and returns are matched by it.
    const full = props;
    full.persistent = true;
    // One target (the usual case) needs one promise, not one per target plus Promise.all.
    if (targets.length === 1)
      return new Promise<void>((resolve, reject) =>
        this.#publishOne(ch, targets[0], content, full, resolve as () => void, reject, true),
      );
    return Promise.all(
      targets.map(
        (t) => new Promise<boolean>((resolve, reject) => this.#publishOne(ch, t, content, full, resolve, reject)),
      ),
    ).then((routed) => {
      const missed = targets.filter((_, i) => !routed[i]);
      if (missed.length > 0) throw unroutableError(missed);
    });
  }

  /**
   * Publishes `content` to every target through the delay levels: the broker
   * holds it for `ms` and then routes it to the target's exchange with its
   * routing key. Resolves once the broker confirmed it into the levels (from
   * then on it survives the sender, and a broker restart). Whether a queue
   * takes it is known only when it is due, so it is never `UNROUTABLE`.
   */
  async publishDelayed(
    targets: readonly EksEntry[],
    props: Options.Publish & { messageId: string },
    content: Buffer,
    ms: number,
    notConnected: () => BrokerError,
  ): Promise<void> {
    const ch = this.#channel;
    if (!ch) throw notConnected();
    for (const [exchange] of targets) {
      if (exchange.name === '')
        throw new TypeError(
          "_delay needs a named exchange to deliver to: the default exchange ('') cannot be bound to",
        );
    }
    await Promise.all(
      targets.map(([exchange, key]) => {
        const to = { exchange: exchange.name };
        const delayed = {
          ...props,
          persistent: true,
          mandatory: true,
          headers: { ...props.headers, ...delayHeaders(ms, to) },
        };
        const place = { topology: this.#topology ?? registryOf(this.#model!), model: this.#model!, ch };
        return sendDelayed(
          place,
          to,
          ms,
          this.log,
          () =>
            new Promise<boolean>((resolve, reject) =>
              this.#publishOne(ch, [{ name: DELAY_DOOR }, key], content, delayed, resolve, reject),
            ),
        );
      }),
    );
  }

  /**
   * Publishes to one target; `done(false)` when the broker returned it (no
   * queue took it), or, `single`, rejects with UNROUTABLE naming it. One
   * object per publish carries its wait and its settling (no closure per step).
   */
  #publishOne(
    ch: ConfirmChannel,
    target: readonly [{ readonly name: string }, string],
    content: Buffer,
    props: Options.Publish & { messageId: string },
    done: (routed: boolean) => void,
    reject: (err: Error) => void,
    single = false,
  ): void {
    const p = new PendingPublish(this, ch, target, props, done, reject, single);
    this.#confirms.start(p);
    ch.publish(p.exchange, p.key, content, props, (err) => p.confirmed(err));
  }

  /** How a pending publish learns what the broker said. @internal */
  complete(p: PendingPublish, err: unknown): void {
    this.#confirms.end(p);
    const { exchange: exName, key } = p;
    if (err) {
      const closed = this.#channelError;
      if (closed) {
        p.reject(
          new BrokerError(
            `the broker closed the channel before confirming a message to ${exName}/${key}: ${brokerSaid(closed)}`,
            'CHANNEL_CLOSED',
            { cause: closed, amqpCode: amqpCodeOf(closed) },
          ),
        );
      } else if (!isNack(err)) {
        // The channel went away with the confirm still due (the connection dropped): nobody knows whether the broker
        // has it.
        p.reject(
          new BrokerError(
            `the connection went away before the broker confirmed a message to ${exName}/${key}: it may or may not ` +
              'have arrived. Send it again (receivers drop duplicates by message id), or use whileDisconnected: ' +
              `'buffer', which does`,
            'UNCONFIRMED',
            { cause: err },
          ),
        );
      } else {
        p.reject(
          new BrokerError(`the broker refused a message to ${exName}/${key} (nack): send it again`, 'NACK', {
            cause: err,
          }),
        );
        this.#renewAfterNack(p.ch);
      }
      return;
    }
    const returned =
      this.#returned.size > 0 &&
      this.#returned.delete(
        returnKey(p.props.messageId, exName, key, p.props.headers as Record<string, unknown> | undefined),
      );
    p.routed(!returned);
  }

  /** The bound on a confirm, as a message a user can act on. @internal */
  timeoutError(p: PendingPublish): BrokerError {
    return new BrokerError(
      `no confirm from the broker for a message to ${p.exchange}/${p.key} within ${this.#confirms.ms / 1000} s: the ` +
        'connection may be dead (its heartbeat will tell). The message may or may not have arrived: send it again ' +
        '(or raise confirmTimeoutMs)',
      'CONFIRM_TIMEOUT',
    );
  }

  /**
   * After a nack, publishing goes on on a fresh confirm channel. A broker
   * channel can stay wedged after a quorum queue's leader dies (RabbitMQ 3.10
   * nacked every later publish on it for minutes while the queue, under its
   * new leader, took publishes from any new channel); a nack for a legitimate
   * reason (a full queue with reject-publish) costs one channel at most once a second.
   */
  #renewAfterNack(old: ConfirmChannel): void {
    const model = this.#model;
    if (old !== this.#channel || this.#renewing || !model || Date.now() - this.#renewedAt < 1000) return;
    this.#renewing = true;
    this.#renewedAt = Date.now();
    this.#openChannel(model).then(
      (ch) => {
        this.#renewing = false;
        if (this.#channel !== old) {
          void ch.close().catch(() => undefined);
          return;
        }
        this.#channel = ch;
        this.log.warn('the broker nacked a message; publishing goes on on a new channel');
        // Confirms still due on the old channel arrive before its close-ok.
        void old.close().catch(() => undefined);
      },
      (err) => {
        this.#renewing = false;
        this.log.warn(
          { err: (err as Error).message },
          'could not open a new channel after a nack; keeping the old one',
        );
      },
    );
  }

  /** The channel now, for what is declared alongside its publishes (delay levels, error exchanges). @internal */
  get channel(): ConfirmChannel | undefined {
    return this.#channel;
  }

  async close(): Promise<void> {
    const ch = this.#channel;
    this.#channel = undefined;
    await ch?.close().catch(() => undefined);
  }
}

/** How a return is matched with its publish: message id, exchange, key, and the mark of a copy. */
function returnKey(id: string, exchange: string, key: string, headers: Record<string, unknown> | undefined): string {
  const mark = headers?.[RETURN_MARK];
  return mark === undefined ? `${id}|${exchange}|${key}` : `${id}|${exchange}|${key}|${String(mark)}`;
}

/**
 * amqplib calls a confirm callback with 'message nacked' for a broker nack, and 'channel closed' for a confirm lost
 * with its channel.
 */
function isNack(err: unknown): boolean {
  return (err as Error)?.message === 'message nacked';
}

/** One publish waiting for its confirm: its own wait on the confirm bound, and how it completes. */
class PendingPublish implements Wait {
  since = 0;
  #timedOut = false;
  readonly exchange: string;
  readonly key: string;

  constructor(
    readonly publisher: Publisher,
    readonly ch: ConfirmChannel,
    readonly target: readonly [{ readonly name: string }, string],
    readonly props: Options.Publish & { messageId: string },
    readonly done: (routed: boolean) => void,
    readonly reject: (err: Error) => void,
    readonly single: boolean,
  ) {
    // An Exchange class and a plain exchange object both carry their name in `name`.
    this.exchange = target[0].name;
    this.key = target[1];
  }

  expire(): void {
    this.#timedOut = true;
    this.reject(this.publisher.timeoutError(this));
  }

  confirmed(err: unknown): void {
    if (this.#timedOut) return;
    this.publisher.complete(this, err);
  }

  routed(ok: boolean): void {
    if (!this.single) this.done(ok);
    // A single target's promise is the send's own: it resolves to nothing.
    else if (ok) (this.done as () => void)();
    else this.reject(unroutableError([this.target as EksEntry]));
  }
}
