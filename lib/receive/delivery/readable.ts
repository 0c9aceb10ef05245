import { MalformedMessage } from '../../errors.js';
import { Message, type MessageBody } from '../../envelope/messages.js';

/**
 * Why a delivery cannot be read, as a short stable name: what an operator groups a flood by (one log line per cause
 * and minute), where the reason itself names the detail (a JSON parser's position, a key id).
 */
export type UnreadableCause =
  | 'empty body'
  | 'too large'
  | 'not JSON'
  | 'encryption'
  | 'unsupported version'
  | 'not an envelope'
  | 'undecodable';

/** A delivery no handler can be given: why (its cause and the reason), as the error that goes with it. */
export interface Unreadable {
  readonly cause: UnreadableCause;
  /** What is wrong, in words (`x-error-message` of its copy in the error queue carries it). */
  readonly reason: string;
  readonly err: MalformedMessage;
}

/** What reading a delivery gave: its envelope, or why there is none. */
export type Read =
  | { readonly body: MessageBody<object> }
  | {
      readonly err: Unreadable;
      /** The body as the decoder gave it, where it decoded (JSON that is no envelope: foreign handlers may take it). */
      readonly parsed?: unknown;
    };

/**
 * The one place that decides whether a delivery can be read, and if not, why. Every path that needs a delivery's
 * envelope (the decode stage, the ordering key) asks here, so a new kind of readable body (foreign JSON a handler
 * takes by routing key) is taught here once: it turns one of the causes below into a read.
 */
export function read(decoder: { decode(content: Buffer): unknown }, content: Buffer): Read {
  if (content.length === 0) return { err: unreadable('empty body', new MalformedMessage('the body is empty')) };
  let decoded: unknown;
  try {
    decoded = decoder.decode(content);
  } catch (err) {
    return { err: undecodable(err) };
  }
  try {
    return { body: Message.fromBody(decoded).body as MessageBody<object> };
  } catch (err) {
    const versioned = typeof decoded === 'object' && decoded !== null && 'version' in decoded;
    const versionOf = versioned ? (decoded as { version: unknown }).version : undefined;
    return {
      err: unreadable(versioned && versionOf !== '2' ? 'unsupported version' : 'not an envelope', malformed(err)),
      parsed: decoded,
    };
  }
}

/** Why the decoder refused the bytes: the size limit, the JSON itself, or the encryption around the content. */
function undecodable(err: unknown): Unreadable {
  if (!(err instanceof MalformedMessage)) return unreadable('undecodable', malformed(err));
  if (err.cause instanceof SyntaxError) return unreadable('not JSON', err);
  // The JSON decoders refuse for these three reasons only; the size is the one said before parsing.
  if (/over the limit/.test(err.reason)) return unreadable('too large', err);
  return unreadable('encryption', err);
}

/** A body no foreign handler takes either (`err` says so, naming its routing key). */
export function notAnEnvelope(err: unknown): Unreadable {
  return unreadable('not an envelope', malformed(err));
}

function unreadable(cause: UnreadableCause, err: MalformedMessage): Unreadable {
  return { cause, reason: err.reason, err };
}

/** A custom decoder's own error, kept as the cause of a `MalformedMessage`. */
function malformed(err: unknown): MalformedMessage {
  if (err instanceof MalformedMessage) return err;
  return new MalformedMessage(err instanceof Error ? err.message : String(err), { cause: err });
}
