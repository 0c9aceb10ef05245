import { createHash } from 'node:crypto';
import type { Channel, ChannelModel, ConfirmChannel, GetMessage, Options } from 'amqplib';
import { BrokerError } from '../errors.js';
import { JsonEncoder } from '../messaging/encoder.js';
import { RETRY_HEADERS } from '../messaging/delivery/parts.js';
import { countIn } from '../messaging/delivery/context.js';
import { withoutDelay } from '../messaging/delay.js';
import { openConnection, type ConnectOptions } from '../transport/connection.js';

/** One failed message in an error queue, as `postage errors list` shows it. */
export interface FailedMessage {
  /** Its message id (kept from the original send), or `sha1:` of its bytes where it has none. */
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
}

/** What a replay did, message by message. */
export interface ReplayReport {
  /** Sent back (confirmed by the broker) and removed from the error queue. */
  replayed: FailedMessage[];
  /** Not sent: no queue is bound for its destination (left in the error queue). */
  unroutable: FailedMessage[];
  /** With `dryRun`: what would be sent. */
  wouldReplay: FailedMessage[];
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
  'x-error-name',
  'x-error-message',
  'x-original-exchange',
  'x-original-routing-key',
  'x-attempts',
  'x-validation-issues',
  'x-failed-at',
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
export function text(v: unknown): string | undefined {
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
  const body = (envelope ?? {}) as { type?: unknown; name?: unknown; content?: { type?: unknown; name?: unknown } };
  const failedAt = text(headers['x-failed-at']);
  const issues = text(headers['x-validation-issues']);
  let validationIssues: unknown = issues;
  try {
    if (issues !== undefined) validationIssues = JSON.parse(issues);
  } catch {
    // Kept as the text it was.
  }
  const attempts = Number(headers['x-attempts']);
  return {
    id: text(m.properties.messageId) ?? `sha1:${createHash('sha1').update(m.content).digest('hex').slice(0, 16)}`,
    failedAt: failedAt
      ? new Date(failedAt)
      : typeof m.properties.timestamp === 'number'
        ? new Date(m.properties.timestamp * (m.properties.timestamp < 1e12 ? 1000 : 1))
        : undefined,
    messageType:
      typeof body.type === 'string'
        ? body.type
        : typeof body.content?.type === 'string'
          ? body.content.type
          : undefined,
    messageName:
      typeof body.name === 'string'
        ? body.name
        : typeof body.content?.name === 'string'
          ? body.content.name
          : undefined,
    originalExchange: text(headers['x-original-exchange']) ?? '',
    originalRoutingKey: text(headers['x-original-routing-key']) ?? '',
    errorName: text(headers['x-error-name']) ?? '(none)',
    errorMessage: text(headers['x-error-message']) ?? '',
    attempts: Number.isFinite(attempts) ? attempts : undefined,
    replayed: countIn(headers, 'x-replayed'),
    validationIssues,
    headers,
    envelope,
    content: m.content,
    properties,
  };
}

/** Failed messages of one error name and message name, counted. */
export interface FailedGroup {
  errorName: string;
  messageName: string;
  count: number;
}

/** Counts failed messages by error name and message name, most first (ties by error name). */
export function groupFailed(messages: readonly FailedMessage[]): FailedGroup[] {
  const counts = new Map<string, FailedGroup>();
  for (const m of messages) {
    const key = `${m.errorName}\u0000${m.messageName ?? ''}`;
    const c = counts.get(key) ?? { errorName: m.errorName, messageName: m.messageName ?? '(undecodable)', count: 0 };
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
  return true;
}

function checkSelection(sel: FailedSelection): void {
  const named = (sel.ids?.length ?? 0) > 0 || sel.errorName !== undefined || sel.messageName !== undefined;
  if (!named && !sel.all) throw new TypeError('say which failed messages: ids, all, errorName or messageName');
}

/**
 * An error queue (where a processor's `errorExchange` puts what failed for
 * good), read and worked on without losing or reordering anything.
 *
 * Reading takes every message with `basic.get`, unacked, and gives back the
 * ones it does not remove by closing its channel: the broker puts them back
 * where they were, in their order. postage-ts declares error queues as
 * classic queues, which count no delivery attempts, so reading does not bring
 * a message nearer to any limit. A replay publishes each copy with a confirm
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
  static async open(queue: string, options: ConnectOptions & { connection?: ChannelModel } = {}): Promise<ErrorQueue> {
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

  /** Every failed message, oldest first; the queue is left as it was. */
  async list(): Promise<FailedMessage[]> {
    return this.#holding(async (held) => held.map((h) => h.failed));
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
   * queue takes (its destination is gone) stays in the error queue.
   */
  async replay(selection: FailedSelection, options: ReplayOptions = {}): Promise<ReplayReport> {
    checkSelection(selection);
    const report: ReplayReport = { replayed: [], unroutable: [], wouldReplay: [] };
    await this.#holding(async (held, ch) => {
      const chosen = held.filter((h) => selects(selection, h.failed));
      if (options.dryRun) {
        report.wouldReplay = chosen.map((h) => h.failed);
        return;
      }
      if (chosen.length === 0) return;
      const out = await this.#conn.createConfirmChannel();
      let returned = false;
      let closedBy: Error | undefined;
      out.on('return', () => (returned = true));
      out.on('error', (e: Error) => (closedBy = e));
      try {
        for (const h of chosen) {
          const m = h.failed;
          const exchange = options.to?.exchange ?? m.originalExchange;
          const routingKey = options.to?.routingKey ?? m.originalRoutingKey;
          returned = false;
          await publishConfirmed(out, exchange, routingKey, m.content, replayProperties(m)).catch((err: unknown) => {
            // The broker closes the channel on a publish to an exchange that is gone: say which, and what to do.
            if (/NOT_FOUND/.test(String(closedBy?.message)))
              throw new BrokerError(
                `exchange '${exchange}' does not exist: declare it again (start its component), or replay elsewhere with --to EXCHANGE [KEY]`,
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
      } finally {
        if (!closedBy) await out.close().catch(() => undefined);
      }
    });
    return report;
  }

  /** Removes the selected messages for good; returns them. */
  async purge(selection: FailedSelection): Promise<FailedMessage[]> {
    checkSelection(selection);
    return this.#holding(async (held, ch) => {
      const chosen = held.filter((h) => selects(selection, h.failed));
      for (const h of chosen) ch.ack(h.raw);
      return chosen.map((h) => h.failed);
    });
  }

  /**
   * Runs `work` with every message of the queue held unacked; what it did not ack goes back, in order, when the channel
   * closes.
   */
  async #holding<T>(
    work: (held: Array<{ raw: GetMessage; failed: FailedMessage }>, ch: Channel) => Promise<T>,
  ): Promise<T> {
    return this.#withChannel(async (ch) => {
      const held: Array<{ raw: GetMessage; failed: FailedMessage }> = [];
      for (;;) {
        const m = await ch.get(this.queue, { noAck: false });
        if (m === false) break;
        held.push({ raw: m, failed: describeFailed(m) });
      }
      return work(held, ch);
    });
  }

  async #withChannel<T>(work: (ch: Channel) => Promise<T>): Promise<T> {
    const ch = await this.#conn.createChannel();
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

function replayProperties(m: FailedMessage): Options.Publish {
  const headers: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(withoutDelay(m.headers as Record<string, unknown>)))
    if (!DROPPED_ON_REPLAY.has(k)) headers[k] = v;
  headers['x-replayed'] = m.replayed + 1;
  const p = m.properties;
  const out: Options.Publish = { headers, mandatory: true, persistent: true };
  if (p.contentType) out.contentType = p.contentType as string;
  if (p.contentEncoding) out.contentEncoding = p.contentEncoding as string;
  if (p.messageId) out.messageId = p.messageId as string;
  if (p.correlationId) out.correlationId = p.correlationId as string;
  // No reply_to: the caller that waited is long gone, and a reply to a dead direct reply-to name costs the processor
  // its connection.
  if (p.type) out.type = p.type as string;
  if (p.appId) out.appId = p.appId as string;
  if (p.userId) out.userId = p.userId as string;
  if (p.timestamp !== undefined) out.timestamp = p.timestamp as number;
  if (p.priority !== undefined) out.priority = p.priority as number;
  return out;
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
