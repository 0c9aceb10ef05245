import { createHash } from 'node:crypto';
import type { Channel, ChannelModel, ConfirmChannel, GetMessage, Options } from 'amqplib';
import { BrokerError } from '../errors.js';
import { JsonEncoder } from '../envelope/encoder.js';
import { RETRY_HEADERS } from '../receive/delivery/parts.js';
import { countIn } from '../scope/context.js';
import { withoutDelay } from '../topology/delay.js';
import { ERROR_HEADERS } from '../topology/topology.js';
import { openChannel } from '../transport/channels.js';
import { openConnection, type BrokerOptions } from '../transport/connection.js';
import { takeQueueLock } from '../transport/queue-lock.js';

/** One failed message in an error queue, as `postage errors list` shows it. */
export interface FailedMessage {
  /**
   * Its message id (kept from the original send), or where it has none `sha1:` of its bytes, headers, properties and
   * original destination (what a replay keeps: the same each time it fails again).
   */
  readonly id: string;
  /** When it failed (`x-failed-at`), or when it was first sent where that header is missing. */
  readonly failedAt: Date | undefined;
  /** The envelope's type and name (`command` / `resize`), where it decodes. */
  readonly messageType: string | undefined;
  readonly messageName: string | undefined;
  readonly originalExchange: string;
  readonly originalRoutingKey: string;
  readonly errorName: string;
  readonly errorMessage: string;
  /** Handler runs in all before it failed for good. */
  readonly attempts: number | undefined;
  /** Replays so far (`x-replayed`). */
  readonly replayed: number;
  /** Schema issues, for a message that failed validation. */
  readonly validationIssues: unknown;
  /** Every header, as the error queue holds them. */
  readonly headers: Readonly<Record<string, unknown>>;
  /** The decoded envelope, or undefined where the bytes are not JSON. */
  readonly envelope: unknown;
  readonly content: Buffer;
  /** The AMQP properties the copy carries. */
  readonly properties: Readonly<Omit<GetMessage['properties'], 'headers'>>;
}

/**
 * Which failed messages an operation takes: named ids, every one, or those of an error or message name (all given must
 * match).
 */
export interface FailedSelection {
  ids?: readonly string[];
  all?: boolean;
  /** `x-error-name`, e.g. `TypeError` or `ValidationError`. */
  errorName?: string;
  /** The envelope's name, e.g. `resize`. */
  messageName?: string;
  /**
   * Only messages whose body names no message (other systems' plain JSON and CloudEvents, bodies that could not be
   * decoded): what a group shown as `(no name)` holds.
   */
  unnamed?: boolean;
}

/** What a replay did, message by message. */
export interface ReplayReport {
  /** Sent back (confirmed by the broker) and removed from the error queue. */
  replayed: FailedMessage[];
  /** Not sent: no queue is bound for its destination (left in the error queue). */
  unroutable: FailedMessage[];
  /**
   * Not sent, and why: a destination header that is missing or not a string, an exchange that does not exist (left in
   * the error queue).
   */
  refused: Array<{ message: FailedMessage; reason: string }>;
  /**
   * How many of the messages the queue counted when the replay began it could not take, because another reader held
   * them unacked (they were not looked at).
   */
  notTaken: number;
  /** With `dryRun`: what would be sent. */
  wouldReplay: FailedMessage[];
}

/** What `ErrorQueue.inspect` read. */
export interface ErrorQueueView {
  /** Every failed message it could read, oldest first. */
  messages: FailedMessage[];
  /**
   * Another tool held the queue's lock: what that tool holds unacked is not among `messages`, so they may be only part
   * of the queue.
   */
  locked: boolean;
}

export interface ReplayOptions {
  /** Send to this exchange (and routing key, else the original one) instead of where each came from. */
  to?: { exchange: string; routingKey?: string };
  /** Only say what would be sent. */
  dryRun?: boolean;
  /**
   * Called once the broker confirmed a copy, before its original is acked from the error queue (progress; a crash here
   * leaves a duplicate, never a loss).
   */
  onConfirmed?: (m: FailedMessage) => void;
}

/**
 * Headers a replayed copy leaves behind: the failure's, and retry state that would make it start part-way (delay state
 * goes with withoutDelay).
 */
const DROPPED_ON_REPLAY = new Set<string>([
  ERROR_HEADERS.name,
  ERROR_HEADERS.message,
  ERROR_HEADERS.originalExchange,
  ERROR_HEADERS.originalRoutingKey,
  ERROR_HEADERS.attempts,
  ERROR_HEADERS.validationIssues,
  ERROR_HEADERS.failedAt,
  'x-death',
  'x-first-death-exchange',
  'x-first-death-queue',
  'x-first-death-reason',
  'x-last-death-exchange',
  'x-last-death-queue',
  'x-last-death-reason',
  'x-delivery-count',
  ...Object.values(RETRY_HEADERS),
]);

const decoder = new JsonEncoder();

/** A header or property as a string (AMQP long strings may arrive as Buffers). @internal */
export function headerText(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (Buffer.isBuffer(v)) return v.toString('utf8');
  return undefined;
}

function describeFailed(m: GetMessage): FailedMessage {
  const headers = (m.properties.headers ?? {}) as Record<string, unknown>;
  const { headers: _h, ...properties } = m.properties;
  let envelope: unknown;
  try {
    envelope = decoder.decode(m.content);
  } catch {
    envelope = undefined;
  }
  const body = (envelope ?? {}) as EnvelopeLike;
  const failedAt = headerText(headers[ERROR_HEADERS.failedAt]);
  const issues = headerText(headers[ERROR_HEADERS.validationIssues]);
  let validationIssues: unknown = issues;
  try {
    if (issues !== undefined) validationIssues = JSON.parse(issues);
  } catch {
    // Kept as the text it was.
  }
  const attempts = Number(headers[ERROR_HEADERS.attempts]);
  return {
    id: headerText(m.properties.messageId) ?? contentId(m, headers),
    failedAt: failedAt
      ? validDate(failedAt)
      : typeof m.properties.timestamp === 'number'
        ? new Date(m.properties.timestamp * (m.properties.timestamp < 1e12 ? 1000 : 1))
        : undefined,
    messageType: bodyField(body, 'type'),
    messageName: bodyField(body, 'name'),
    originalExchange: headerText(headers[ERROR_HEADERS.originalExchange]) ?? '',
    originalRoutingKey: headerText(headers[ERROR_HEADERS.originalRoutingKey]) ?? '',
    errorName: headerText(headers[ERROR_HEADERS.name]) ?? '(none)',
    errorMessage: headerText(headers[ERROR_HEADERS.message]) ?? '',
    attempts: Number.isFinite(attempts) ? attempts : undefined,
    replayed: countIn(headers, ERROR_HEADERS.replayed),
    validationIssues,
    headers,
    envelope,
    content: m.content,
    properties,
  };
}

/**
 * The properties a replayed copy keeps besides its message id (see replayProperties), which also tell one message
 * without an id from another. Not reply_to: the caller that waited is long gone, and a reply to a dead direct
 * reply-to name costs the processor its connection.
 */
const KEPT_PROPERTIES = [
  'contentType',
  'contentEncoding',
  'correlationId',
  'type',
  'appId',
  'userId',
  'timestamp',
  'priority',
];

/**
 * The id of a message without a message id (most messages other systems send): `sha1:` of its bytes and of what a
 * replay keeps with them (its headers and properties, where it goes). Bytes alone would give two CloudEvents with the
 * same data but their own `cloudEvents_id`, or one body sent to two routing keys, one id: `show` would find the first
 * only, and `purge ID` would take both. What a failure or a replay adds (the error headers, `x-replayed`, retry and
 * delay state) is left out, so a message keeps its id each time it fails again.
 */
function contentId(m: GetMessage, headers: Record<string, unknown>): string {
  const kept = Object.entries(keptHeaders(headers))
    .filter(([k]) => k !== ERROR_HEADERS.replayed)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const props = m.properties as unknown as Record<string, unknown>;
  const identity = JSON.stringify(
    [
      headers[ERROR_HEADERS.originalExchange],
      headers[ERROR_HEADERS.originalRoutingKey],
      kept,
      KEPT_PROPERTIES.map((k) => props[k]),
    ],
    (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v),
  );
  const hash = createHash('sha1').update(m.content).update('\0').update(identity);
  return `sha1:${hash.digest('hex').slice(0, 16)}`;
}

type EnvelopeLike = { type?: unknown; name?: unknown; content?: { type?: unknown; name?: unknown } };

/** The envelope's message type or name where it is a string, or else its content's. */
function bodyField(body: EnvelopeLike, field: 'type' | 'name'): string | undefined {
  const v = typeof body[field] === 'string' ? body[field] : body.content?.[field];
  return typeof v === 'string' ? v : undefined;
}

/** A header's date, or undefined where it is not one (the header itself still shows what it says). */
function validDate(v: string): Date | undefined {
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? undefined : d;
}

/**
 * Where a replay sends a message: `to`, else its `x-original-exchange` and `x-original-routing-key`, which must be
 * strings (a number there would go to the default exchange, as '' does). A reason where it cannot tell.
 */
function destination(
  m: FailedMessage,
  to: ReplayOptions['to'],
): { exchange: string; routingKey: string } | { reason: string } {
  const shown = (v: unknown) => (typeof v === 'object' ? JSON.stringify(v) : String(v));
  const exchange = to?.exchange ?? m.headers[ERROR_HEADERS.originalExchange];
  const routingKey = to?.routingKey ?? m.headers[ERROR_HEADERS.originalRoutingKey] ?? '';
  if (exchange === undefined)
    return { reason: 'it has no x-original-exchange header: say where it goes with --to EXCHANGE [KEY]' };
  if (headerText(exchange) === undefined)
    return {
      reason:
        `its x-original-exchange is ${shown(exchange)} (${typeof exchange}), not an exchange name: ` +
        'say where it goes with --to EXCHANGE [KEY]',
    };
  if (headerText(routingKey) === undefined)
    return {
      reason:
        `its x-original-routing-key is ${shown(routingKey)} (${typeof routingKey}), not a routing key: ` +
        'say where it goes with --to EXCHANGE KEY',
    };
  return { exchange: headerText(exchange)!, routingKey: headerText(routingKey)! };
}

/** Failed messages of one error name and message name, counted. */
export interface FailedGroup {
  errorName: string;
  /** The message name, or `(no name)` for messages whose body names none (then `unnamed` is true). */
  messageName: string;
  count: number;
  /** Its messages name no message: select them with `{ errorName, unnamed: true }`, not by `messageName`. */
  unnamed?: boolean;
}

/** Counts failed messages by error name and message name, most first (ties by error name). */
export function groupFailed(messages: readonly FailedMessage[]): FailedGroup[] {
  const counts = new Map<string, FailedGroup>();
  for (const m of messages) {
    const key = `${m.errorName}\u0000${m.messageName === undefined ? '' : `=${m.messageName}`}`;
    // A body that names no message (plain JSON, a CloudEvent's data, one that could not be decoded): a label, and a
    // mark that says so, since no message is named that.
    const c =
      counts.get(key) ??
      (m.messageName === undefined
        ? { errorName: m.errorName, messageName: '(no name)', count: 0, unnamed: true }
        : { errorName: m.errorName, messageName: m.messageName, count: 0 });
    c.count++;
    counts.set(key, c);
  }
  return [...counts.values()].sort((a, b) => b.count - a.count || a.errorName.localeCompare(b.errorName));
}

/** Headers as JSON can show them: a Buffer (how AMQP long strings arrive) as its text. */
export function printableHeaders(headers: Readonly<Record<string, unknown>>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, Buffer.isBuffer(v) ? v.toString('utf8') : v]));
}

/** Whether a selection takes a failed message. */
export function selects(sel: FailedSelection, m: FailedMessage): boolean {
  if (sel.ids && sel.ids.length > 0 && !sel.ids.includes(m.id)) return false;
  if (sel.errorName !== undefined && m.errorName !== sel.errorName) return false;
  if (sel.messageName !== undefined && m.messageName !== sel.messageName) return false;
  if (sel.unnamed === true && m.messageName !== undefined) return false;
  return true;
}

function checkSelection(sel: FailedSelection): void {
  const named =
    (sel.ids?.length ?? 0) > 0 || sel.errorName !== undefined || sel.messageName !== undefined || sel.unnamed === true;
  if (!named && !sel.all) throw new TypeError('say which failed messages: ids, all, errorName or messageName');
}

/** How many messages a replay or purge takes before it settles them and takes more. */
const BATCH = 100;

/**
 * The error queues an `ErrorQueue` of this process is working on, per connection: the broker's lock is per connection,
 * so two tools sharing one (the dashboard's requests) would both get it.
 */
const workingHere = new WeakMap<ChannelModel, Set<string>>();

/** The name of the queue whose exclusive declaration is the lock on `queue`. @internal */
export function lockQueueName(queue: string): string {
  return `${queue}.lock`;
}

/** The error a tool gets when another holds the lock on `queue`. */
function lockedError(queue: string, cause?: unknown): BrokerError {
  return new BrokerError(
    `another tool (postage errors or a dashboard, on another connection) is working on queue '${queue}': ` +
      `try again once it is done (its lock is the exclusive queue '${lockQueueName(queue)}')`,
    'RESOURCE_LOCKED',
    { cause, amqpCode: 405 },
  );
}

interface Held {
  raw: GetMessage;
  failed: FailedMessage;
}

/**
 * An error queue (where a processor's `errorExchange` puts what failed for
 * good), read and worked on without losing or reordering anything.
 *
 * Each operation first takes the queue's lock: an exclusive queue named
 * `<queue>.lock`, which the broker keeps for the connection that declared it
 * (and deletes when that connection goes, however it goes). A second tool is
 * refused (`BrokerError` with code `RESOURCE_LOCKED`) instead of reading a
 * queue the first holds part of unacked and taking it for the whole.
 *
 * Reading takes every message with `basic.get`, unacked, and gives back the
 * ones it does not remove by closing its channel: the broker puts them back
 * where they were, in their order. postage-ts declares error queues as
 * classic queues, which count no delivery attempts, so reading does not bring
 * a message nearer to any limit. Replay and purge go through the queue in
 * batches of 100, settling each batch's messages before taking the next; they
 * stop at the count the queue had when they began, so what fails while they
 * work waits for the next run. A replay publishes each copy with a confirm
 * and only then acks the original: a crash in between leaves a duplicate,
 * never a loss.
 */
export class ErrorQueue {
  readonly #conn: ChannelModel;
  readonly #owned: boolean;
  readonly queue: string;

  private constructor(conn: ChannelModel, owned: boolean, queue: string) {
    this.#conn = conn;
    this.#owned = owned;
    this.queue = queue;
  }

  /** Opens an error queue on the `POSTAGE_*` broker (or the options'); refuses one that does not exist. */
  static async open(queue: string, options: BrokerOptions & { connection?: ChannelModel } = {}): Promise<ErrorQueue> {
    const conn =
      options.connection ?? (await openConnection({ connectionName: `postage errors ${queue}`, ...options }));
    const q = new ErrorQueue(conn, options.connection === undefined, queue);
    try {
      await q.#withChannel(async (ch) => {
        await ch.checkQueue(queue);
      });
    } catch (err) {
      await q.close();
      if (/NOT_FOUND|404/.test(String((err as Error).message)))
        throw new BrokerError(`queue '${queue}' does not exist on this broker`, 'NOT_FOUND');
      throw err;
    }
    return q;
  }

  async close(): Promise<void> {
    if (this.#owned) await this.#conn.close().catch(() => undefined);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Every failed message, oldest first; the queue is left as it was. Refused while another tool holds the lock. */
  async list(): Promise<FailedMessage[]> {
    return this.#locked(() => this.#holding(async (held) => held.map((h) => h.failed)));
  }

  /**
   * Every failed message it can read, oldest first, and whether another tool held the lock: then it reads anyway, and
   * what that tool holds is missing (what `postage errors list` shows, saying so).
   */
  async inspect(): Promise<ErrorQueueView> {
    const read = () => this.#holding(async (held) => held.map((h) => h.failed));
    return this.#locked<ErrorQueueView>(
      async () => ({ messages: await read(), locked: false }),
      async () => ({ messages: await read(), locked: true }),
    );
  }

  /** How many failed with each error name and message name, most first. */
  async group(): Promise<FailedGroup[]> {
    return groupFailed(await this.list());
  }

  /** One failed message whole, or undefined. */
  async show(id: string): Promise<FailedMessage | undefined> {
    return (await this.list()).find((m) => m.id === id);
  }

  /**
   * Sends the selected messages back where they came from (or `to`), each
   * confirmed by the broker before its original leaves the error queue. A copy
   * keeps its message id, conversation headers and properties, counts
   * `x-replayed`, and drops the failure's headers and any retry state. One no
   * queue takes (its destination is gone) stays in the error queue, as does
   * one whose destination headers are not strings or whose exchange is gone
   * (`refused`, with the reason).
   */
  async replay(selection: FailedSelection, options: ReplayOptions = {}): Promise<ReplayReport> {
    checkSelection(selection);
    const report: ReplayReport = { replayed: [], unroutable: [], refused: [], notTaken: 0, wouldReplay: [] };
    let out: ConfirmChannel | undefined;
    let returned = false;
    let closedBy: Error | undefined;
    const exchanges = new Map<string, boolean>();
    try {
      const { counted, taken } = await this.#locked(() =>
        this.#inBatches(async (batch, ch) => {
          for (const h of batch) {
            const m = h.failed;
            if (!selects(selection, m)) continue;
            const target = destination(m, options.to);
            if ('reason' in target) {
              report.refused.push({ message: m, reason: target.reason });
              continue;
            }
            if (options.dryRun) {
              report.wouldReplay.push(m);
              continue;
            }
            const { exchange, routingKey } = target;
            if (!(await this.#exchangeExists(exchange, exchanges))) {
              report.refused.push({
                message: m,
                reason:
                  `exchange '${exchange}' does not exist: declare it again (start its component), ` +
                  'or replay elsewhere with --to EXCHANGE [KEY]',
              });
              continue;
            }
            if (!out) {
              out = await openChannel(this.#conn, true);
              out.on('return', () => (returned = true));
              out.on('error', (e: Error) => (closedBy = e));
            }
            returned = false;
            await publishConfirmed(out, exchange, routingKey, m.content, replayProperties(m)).catch((err: unknown) => {
              // The exchange went after it was checked: the broker closes the channel on such a publish.
              if (/NOT_FOUND/.test(String(closedBy?.message)))
                throw new BrokerError(
                  `exchange '${exchange}' does not exist: declare it again (start its component), ` +
                    'or replay elsewhere with --to EXCHANGE [KEY]',
                  'NOT_FOUND',
                  { cause: closedBy },
                );
              throw err;
            });
            if (returned) {
              report.unroutable.push(m);
              continue;
            }
            options.onConfirmed?.(m);
            ch.ack(h.raw);
            report.replayed.push(m);
          }
        }),
      );
      report.notTaken = Math.max(0, counted - taken);
    } finally {
      if (out && !closedBy) await out.close().catch(() => undefined);
    }
    return report;
  }

  /** Removes the selected messages for good; returns them. */
  async purge(selection: FailedSelection): Promise<FailedMessage[]> {
    checkSelection(selection);
    const gone: FailedMessage[] = [];
    await this.#locked(() =>
      this.#inBatches(async (batch, ch) => {
        for (const h of batch)
          if (selects(selection, h.failed)) {
            ch.ack(h.raw);
            gone.push(h.failed);
          }
      }),
    );
    return gone;
  }

  /**
   * Runs `work` holding the queue's lock; where another tool holds it, runs `otherwise`, or refuses with a
   * `BrokerError` (`RESOURCE_LOCKED`).
   */
  async #locked<T>(work: () => Promise<T>, otherwise?: () => Promise<T>): Promise<T> {
    let here = workingHere.get(this.#conn);
    if (!here) workingHere.set(this.#conn, (here = new Set()));
    const lock = lockQueueName(this.queue);
    let mine = !here.has(this.queue);
    if (mine) {
      // Marked before the declare, which yields: a second operation on this connection sees it at once.
      here.add(this.queue);
      let took = false;
      try {
        took = await this.#withChannel((ch) => takeQueueLock(ch, lock));
      } finally {
        if (!took) here.delete(this.queue);
      }
      mine = took;
    }
    if (!mine) {
      if (otherwise) return otherwise();
      throw lockedError(this.queue);
    }
    try {
      return await work();
    } finally {
      here.delete(this.queue);
      // A connection of its own takes the lock with it as it closes; a shared one keeps it until it is deleted.
      await this.#withChannel((ch) => ch.deleteQueue(lock)).catch(() => undefined);
    }
  }

  /**
   * Takes the messages the queue counts now, `BATCH` at a time, and hands each batch to `act`, which settles what it
   * acts on before the next is taken. What `act` leaves unacked goes back in its place when the channel closes.
   * `counted` less `taken` is what another reader held.
   */
  async #inBatches(act: (batch: Held[], ch: Channel) => Promise<void>): Promise<{ counted: number; taken: number }> {
    return this.#withChannel(async (ch) => {
      const { messageCount: counted } = await ch.checkQueue(this.queue);
      let taken = 0;
      while (taken < counted) {
        const batch: Held[] = [];
        while (batch.length < BATCH && taken + batch.length < counted) {
          const m = await ch.get(this.queue, { noAck: false });
          if (m === false) break;
          batch.push({ raw: m, failed: describeFailed(m) });
        }
        if (batch.length === 0) break;
        taken += batch.length;
        await act(batch, ch);
      }
      return { counted, taken };
    });
  }

  /** Whether an exchange exists (asked once per replay; the default exchange always does). */
  async #exchangeExists(name: string, known: Map<string, boolean>): Promise<boolean> {
    if (name === '') return true;
    let exists = known.get(name);
    if (exists === undefined) {
      // A passive declare of a missing exchange closes its channel: a channel of its own.
      exists = await this.#withChannel((ch) => ch.checkExchange(name)).then(
        () => true,
        () => false,
      );
      known.set(name, exists);
    }
    return exists;
  }

  /**
   * Runs `work` with every message of the queue held unacked; what it did not ack goes back, in order, when the channel
   * closes.
   */
  async #holding<T>(work: (held: Held[], ch: Channel) => Promise<T>): Promise<T> {
    return this.#withChannel(async (ch) => {
      const held: Held[] = [];
      for (;;) {
        const m = await ch.get(this.queue, { noAck: false });
        if (m === false) break;
        held.push({ raw: m, failed: describeFailed(m) });
      }
      return work(held, ch);
    });
  }

  async #withChannel<T>(work: (ch: Channel) => Promise<T>): Promise<T> {
    const ch = await openChannel(this.#conn);
    let failed: Error | undefined;
    ch.on('error', (e: Error) => (failed = e));
    try {
      return await work(ch);
    } finally {
      // Closing is what returns every unacked message to its place; a channel the broker closed has returned them
      // already.
      if (!failed) await ch.close().catch(() => undefined);
    }
  }
}

/** A failed message's headers as a replay keeps them: without the failure's, the retries' and the delay's. */
function keptHeaders(headers: Record<string, unknown>): Record<string, unknown> {
  const kept: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(withoutDelay(headers))) if (!DROPPED_ON_REPLAY.has(k)) kept[k] = v;
  return kept;
}

function replayProperties(m: FailedMessage): Options.Publish {
  const headers = keptHeaders(m.headers as Record<string, unknown>);
  headers[ERROR_HEADERS.replayed] = m.replayed + 1;
  const p = m.properties as Record<string, unknown>;
  const out: Record<string, unknown> = { headers, mandatory: true, persistent: true };
  if (p.messageId) out.messageId = p.messageId;
  // Those it has: an empty string is none, a number (a priority of 0) is kept.
  for (const k of KEPT_PROPERTIES) {
    const v = p[k];
    if (v !== undefined && v !== null && v !== '') out[k] = v;
  }
  return out as Options.Publish;
}

function publishConfirmed(
  ch: ConfirmChannel,
  exchange: string,
  routingKey: string,
  content: Buffer,
  options: Options.Publish,
): Promise<void> {
  return new Promise((resolve, reject) => {
    ch.publish(exchange, routingKey, content, options, (err: unknown) =>
      err
        ? reject(new BrokerError(`the broker did not take the replayed message to '${exchange}'`, 'NACK'))
        : resolve(),
    );
  });
}
