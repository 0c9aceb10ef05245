import { randomBytes } from 'node:crypto';
import type { Channel, ConsumeMessage } from 'amqplib';
import { BrokerError } from '../../errors.js';
import { JsonEncoder } from '../../envelope/encoder.js';
import type { FingerprintDict } from '../../envelope/fingerprint.js';
import { MessageResult, type Message } from '../../envelope/messages.js';
import { REPLY_TO } from '../../topology/topology.js';
import type { ConsumerLine } from './consumer-line.js';
import type { Replier } from './ports.js';

/**
 * Answers on the consumer's channel: RPC replies, each sent after the request's settle, and an RPC stream's messages
 * with the channel's direct reply-to as the address its caller answers to (credit, cancel, keepalive).
 */
export class AmqpReplier implements Replier {
  readonly #line: ConsumerLine;
  /** The channel whose direct reply-to is consumed for stream control (see streamControl). */
  #controlOn: Channel | undefined;
  readonly #streamWatchers = new Map<string, (headers: Record<string, unknown> | undefined) => void>();
  /** A bare value's result envelope, encoded around where its value goes (see encodeValue). */
  #around: Around | undefined;

  constructor(line: ConsumerLine) {
    this.#line = line;
  }

  /** Encodes an RPC result (a bare value is wrapped in `MessageResult`); throws when it cannot be encoded. */
  encodeReply(result: Message<object> | unknown): Buffer {
    const body = isMessage(result) ? result.body : new MessageResult(result).body;
    return this.#line.encoder.encode(body) as Buffer;
  }

  /**
   * What {@link encodeReply} makes of a bare value with `fingerprint`, where the encoder is the plain
   * {@link JsonEncoder}: the envelope around the value is encoded once per fingerprint, and only the value each time
   * (JSON of the fingerprint and the envelope was the better part of encoding a small result). Undefined where the
   * encoder is another, or where the value is not one JSON keeps (undefined, a function) or cannot encode (a BigInt,
   * a cycle): `encodeReply` then gives the envelope it makes, or the error.
   */
  encodeValue(value: unknown, fingerprint: FingerprintDict): Buffer | undefined {
    if (Object.getPrototypeOf(this.#line.encoder) !== JsonEncoder.prototype) return undefined;
    let around = this.#around;
    if (around?.fingerprint !== fingerprint) around = this.#around = envelopeAround(fingerprint);
    let json: string;
    try {
      // In an object, as the envelope has it: a toJSON(key) is given 'value', and a value JSON drops is seen.
      json = JSON.stringify({ value });
    } catch {
      return undefined;
    }
    if (json.length <= 2) return undefined;
    return Buffer.from(around.head + json.slice(VALUE_KEY.length, -1) + around.tail);
  }

  /**
   * Sends an encoded reply to the caller of `msg`, after every settle made so far on its channel (the request's own
   * included when it was settled first): a reply the broker cannot take then costs the connection at most, never a
   * request redelivered forever. A reply whose delivery's channel is gone is dropped: the request was not settled
   * either, so the broker delivers it again and it is answered then.
   */
  sendReply(msg: ConsumeMessage, content: Buffer, headers?: Record<string, unknown>): void {
    const log = this.#line.log;
    const replyTo = msg.properties.replyTo as string | undefined;
    if (!replyTo) {
      log.warn(replyIds(msg), 'RPC has no reply_to; the reply is dropped');
      return;
    }
    const bad = badReplyTo(replyTo);
    if (bad) {
      log.warn({ ...replyIds(msg), replyTo: replyTo.slice(0, 300) }, `RPC reply_to ${bad}; the reply is dropped`);
      return;
    }
    const acks = this.#line.settleOn(msg);
    const ch = acks && this.#line.channel();
    if (!ch) return;
    const contentType = this.#line.encoder.contentType;
    acks.afterSettled(() => {
      try {
        ch.publish('', replyTo, content, {
          correlationId: msg.properties.correlationId,
          contentType,
          headers,
          timestamp: Math.floor(Date.now() / 1000),
        });
      } catch (err) {
        log.debug(
          { err: (err as Error).message, deliveryTag: msg.fields.deliveryTag },
          'reply not sent (the channel closed)',
        );
      }
    });
  }

  /**
   * Makes the current channel ready to serve RPC streams: its direct reply-to is consumed, so that the stream messages
   * it sends carry an address their callers answer to. Once per channel.
   */
  async streamControl(): Promise<void> {
    const ch = this.#line.channel();
    if (!ch) throw notOpen();
    if (this.#controlOn === ch) return;
    this.#controlOn = ch;
    try {
      await ch.consume(
        REPLY_TO,
        (msg) => {
          const id = msg?.properties.correlationId as string | undefined;
          if (msg && id !== undefined)
            this.#streamWatchers.get(id)?.(msg.properties.headers as Record<string, unknown> | undefined);
        },
        { noAck: true },
      );
    } catch (err) {
      this.#controlOn = undefined;
      throw err;
    }
  }

  /** Listens for a stream's control messages (by its correlation id); returns how to stop. */
  watchStream(correlationId: string, listener: (headers: Record<string, unknown> | undefined) => void): () => void {
    this.#streamWatchers.set(correlationId, listener);
    return () => this.#streamWatchers.delete(correlationId);
  }

  /**
   * Sends one stream message to the caller of `msg`, with this channel's direct reply-to as the address to answer;
   * false when the channel it must go on (the request's) is gone.
   */
  streamSend(msg: ConsumeMessage, content: Buffer, headers: Record<string, unknown>): boolean {
    const ch = this.#line.channel();
    if (!ch || this.#controlOn !== ch) return false;
    try {
      ch.publish('', msg.properties.replyTo as string, content, {
        correlationId: msg.properties.correlationId,
        replyTo: REPLY_TO,
        contentType: this.#line.encoder.contentType,
        headers,
      });
      return true;
    } catch {
      return false;
    }
  }
}

/** The JSON of a result envelope with one fingerprint, before and after its value. */
interface Around {
  readonly fingerprint: FingerprintDict;
  readonly head: string;
  readonly tail: string;
}

/** How `JSON.stringify({ value })` begins. */
const VALUE_KEY = '{"value":';

function envelopeAround(fingerprint: FingerprintDict): Around {
  const mark = `\u0000${randomBytes(8).toString('hex')}`;
  const json = JSON.stringify(new MessageResult(mark).setFingerprint(fingerprint).body);
  const at = json.indexOf(JSON.stringify(mark));
  return { fingerprint, head: json.slice(0, at), tail: json.slice(at + JSON.stringify(mark).length) };
}

/** What a log line about a reply that cannot be sent names. */
function replyIds(msg: ConsumeMessage) {
  return {
    messageId: msg.properties.messageId,
    correlationId: msg.properties.correlationId,
    deliveryTag: msg.fields.deliveryTag,
  };
}

function notOpen(): BrokerError {
  return new BrokerError(
    'consumer has no channel: await consumer.ready() first (or it is reconnecting)',
    'NOT_CONNECTED',
  );
}

function isMessage(v: unknown): v is Message<object> {
  return typeof v === 'object' && v !== null && 'body' in v && typeof (v as Message<object>).equals === 'function';
}

const DIRECT_REPLY_TO = `${REPLY_TO}.`;
/** Base64 segments, as RabbitMQ encodes a direct reply-to address (one or two, depending on its version). */
const BASE64 = '(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?';
const DIRECT_REPLY_SUFFIX = new RegExp(`^${BASE64}(?:\\.${BASE64})?$`);

/**
 * Why a reply_to cannot be answered, if it cannot. RabbitMQ closes the whole connection (541) on a publish to a
 * direct reply-to name it cannot decode, so names that are not what it hands out are refused here; a queue name
 * longer than AMQP allows could not be sent either.
 */
export function badReplyTo(replyTo: string): string | undefined {
  // A caller sends every call from one channel, so one address recurs: checked once, not per reply.
  if (replyTo === lastGoodReplyTo) return undefined;
  if (Buffer.byteLength(replyTo) > 255) return 'is longer than the 255 bytes AMQP allows';
  if (replyTo.startsWith(DIRECT_REPLY_TO)) {
    const suffix = replyTo.slice(DIRECT_REPLY_TO.length);
    // The pattern allows one dot at most: an empty segment is one at either end.
    if (suffix === '' || !DIRECT_REPLY_SUFFIX.test(suffix) || suffix.startsWith('.') || suffix.endsWith('.'))
      return 'is not a direct reply-to address RabbitMQ hands out';
  }
  lastGoodReplyTo = replyTo;
  return undefined;
}
let lastGoodReplyTo: string | undefined;
