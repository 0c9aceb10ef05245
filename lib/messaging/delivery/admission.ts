import { DeliveryLimitExceeded } from '../../errors.js';
import { DELIVERIES_HEADER, deliveriesBefore, queueCounts } from '../deliveries.js';
import { Message, MessageResultException, type MessageBody } from '../messages.js';
import { encodeResult, replyOf } from './reply.js';
import type { Outcome } from './outcome.js';
import { handlersFor } from './registry.js';
import type { DeliveryState } from './state.js';
import { UNREAD } from '../../formats/cloudevents.js';
import { admitForeign } from '../../formats/foreign.js';

/**
 * Guard: the envelope, decoded (once, unless its ordering key needed it already), and its handlers; a delivery that
 * holds none is rejected as malformed.
 */
export function decode(d: DeliveryState): Outcome | undefined {
  const { parts, decoded } = d;
  let body: MessageBody<object>;
  let parsed: unknown = UNREAD;
  try {
    if (decoded && 'err' in decoded) throw decoded.err;
    if (decoded) body = decoded.body as MessageBody<object>;
    else {
      parsed = parts.inbox.decode(d.msg.content);
      body = Message.fromBody(parsed).body as MessageBody<object>;
    }
  } catch (err) {
    // No envelope: foreign JSON or a CloudEvent that one of the processor's handlers takes is read as such.
    const unreadable = admitForeign(d, parsed, err);
    if (unreadable === undefined) return undefined;
    return { kind: 'reject', why: 'malformed', err: unreadable };
  }
  d.body = body;
  d.handlers = handlersFor(parts.registry, body);
  return undefined;
}

/** A delivery's envelope, decoded; throws for a delivery that does not hold one. */
export function decodeBody(d: {
  parts: { inbox: { decode(content: Buffer): unknown } };
  msg: { content: Buffer };
}): MessageBody<object> {
  return Message.fromBody(d.parts.inbox.decode(d.msg.content)).body as MessageBody<object>;
}

/**
 * Guard: a delivery that came back too often reaches no handler (it goes to
 * the error exchange, or is rejected, and an RPC caller is told); on a queue
 * that counts nothing, with `redeliveryCount: 'header'`, a redelivery is
 * counted in a header of a copy instead.
 */
export function deliveryLimit(d: DeliveryState): Outcome | undefined {
  const { msg, parts } = d;
  const redelivered = msg.fields.redelivered;
  const n = Math.max(
    redelivered ? parts.settle.deliveries.count(msg) : 1,
    deliveriesBefore(msg) + (redelivered ? 2 : 1),
  );
  if (n > parts.maxDeliveries) {
    const err = new DeliveryLimitExceeded(n, parts.maxDeliveries);
    const ctx = parts.dispatch;
    const reply =
      d.body!.category === 'rpc'
        ? replyOf(d.scope!, encodeResult(ctx, new MessageResultException(err.name, err.message)))
        : undefined;
    return ctx.errorExchange
      ? { kind: 'deadLetter', err, attempts: err.deliveries, reply }
      : { kind: 'reject', why: 'limit', err, reply };
  }
  if (redelivered && parts.countInHeader && !queueCounts(msg)) {
    // A classic queue forgets how often it delivered a message; a process that crashed on it forgot too.
    // The count goes in a header of a copy, back in the queue at once; the copy is handled instead.
    return {
      kind: 'defer',
      ms: 0,
      reason: `redelivered (delivery ${n}): counted in a header`,
      headers: { [DELIVERIES_HEADER]: n - 1 },
      quiet: true,
    };
  }
  const log = parts.log;
  if (log.isLevelEnabled('debug')) {
    const body = d.body!;
    log.debug(
      {
        exchange: msg.fields.exchange,
        routingKey: msg.fields.routingKey,
        category: body.category,
        messageType: body.type,
        messageName: body.name,
        messageId: d.scope!.messageId,
        conversationId: d.scope!.conversationId,
      },
      'delivery',
    );
  }
  return undefined;
}
