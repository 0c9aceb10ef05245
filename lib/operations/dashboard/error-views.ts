/**
 * The error queues as the page sees them: a queue's failures grouped and listed, one message whole, and replay and
 * purge of a selection. Only queues a running component reports are opened.
 */
import type { ChannelModel } from 'amqplib';
import {
  ErrorQueue,
  type FailedMessage,
  type FailedSelection,
  groupFailed,
  printableHeaders,
  headerText as text,
} from '../error-queue.js';
import { HttpError } from './http.js';

/** One failed message as a row of the list. */
function summary(m: FailedMessage) {
  return {
    id: m.id,
    // A header that is not a date is shown as it is.
    failedAt: m.failedAt ?? text(m.headers['x-failed-at']),
    message: `${m.messageType ?? '?'}/${m.messageName ?? '?'}`,
    origin: `${m.originalExchange || '(default)'}/${m.originalRoutingKey}`,
    errorName: m.errorName,
    errorMessage: m.errorMessage,
    attempts: m.attempts,
    replayed: m.replayed,
  };
}

/** Which messages a replay or purge request names. */
function selectionOf(b: Record<string, unknown>): FailedSelection {
  const sel: FailedSelection = { all: b.all === true };
  if (Array.isArray(b.ids)) sel.ids = b.ids.map(String);
  if (typeof b.errorName === 'string') sel.errorName = b.errorName;
  if (typeof b.messageName === 'string') sel.messageName = b.messageName;
  if (b.unnamed === true) sel.unnamed = true;
  return sel;
}

export class ErrorViews {
  constructor(
    private readonly conn: ChannelModel,
    /** The error queues the running components report now. */
    private readonly reported: () => readonly string[],
  ) {}

  async #with<T>(name: string, work: (q: ErrorQueue) => Promise<T>): Promise<T> {
    if (!this.reported().includes(name))
      throw new HttpError(404, `'${name}' is not an error queue a running component reports`);
    return work(await ErrorQueue.open(name, { connection: this.conn }));
  }

  /** `GET /api/errors?queue=`: the failures grouped and listed; `locked` when another tool holds some. */
  async list(queue: string) {
    const { messages, locked } = await this.#with(queue, (q) => q.inspect());
    return { queue, locked, count: messages.length, groups: groupFailed(messages), messages: messages.map(summary) };
  }

  /** `GET /api/errors/message?queue=&id=`: one message whole, or undefined. */
  async message(queue: string, id: string) {
    const m = (await this.#with(queue, (q) => q.inspect())).messages.find((x) => x.id === id);
    return m
      ? {
          ...summary(m),
          headers: printableHeaders(m.headers),
          validationIssues: m.validationIssues,
          envelope: m.envelope,
        }
      : undefined;
  }

  /** `POST /api/errors/replay` and `/purge`: what the body selects, sent back where it came from or removed. */
  async act(action: 'replay' | 'purge', body: Record<string, unknown>) {
    const sel = selectionOf(body);
    if (
      !sel.all &&
      !sel.ids?.length &&
      sel.errorName === undefined &&
      sel.messageName === undefined &&
      sel.unnamed !== true
    )
      throw new HttpError(400, 'say which messages: ids, all, errorName or messageName');
    const name = String(body.queue ?? '');
    if (action === 'purge') return { purged: (await this.#with(name, (q) => q.purge(sel))).map((m) => m.id) };
    const r = await this.#with(name, (q) => q.replay(sel));
    return {
      replayed: r.replayed.map((m) => m.id),
      unroutable: r.unroutable.map((m) => m.id),
      refused: r.refused.map(({ message, reason }) => ({ id: message.id, reason })),
      notTaken: r.notTaken,
    };
  }
}
