import { DeliveryLimitExceeded } from '../../errors.js';
import { DELIVERIES_HEADER, deliveriesBefore, queueCounts } from './deliveries.js';
import { MessageResultException } from '../../envelope/messages.js';
import { notAnEnvelope, read } from './readable.js';
import { encodeResult, replyOf } from './reply.js';
import type { Outcome } from './outcome.js';
import { handlersFor } from './registry.js';
import { isDecoded, type Decoded, type RawDelivery, type Scoped } from './state.js';
import { UNREAD } from '../../formats/cloudevents.js';
import { admitForeign } from './foreign.js';

/**
 * Connector (raw to decoded): the envelope, read (once, unless its ordering key needed it already), and its
 * handlers. A delivery that cannot be read goes to the error exchange whole, where the processor has one (replayed
 * once its cause is mended), and is rejected otherwise.
 */
export function decode(d: RawDelivery): Outcome | Decoded {
  const { parts, decoded } = d;
  const got = decoded ?? read(parts.source, d.msg.content);
  if ('err' in got) {
    // No envelope: foreign JSON or a CloudEvent that one of the processor's handlers takes is read as such.
    const refused = admitForeign(d, got.parsed ?? UNREAD, got.err.err);
    if (refused === undefined && isDecoded(d)) return d;
    const unreadable = refused === undefined || refused === got.err.err ? got.err : notAnEnvelope(refused);
    const exchange = parts.settle.errorExchange;
    return exchange
      ? { kind: 'deadLetter', exchange, err: unreadable.err, attempts: 0, unreadable }
      : { kind: 'reject', why: 'malformed', err: unreadable.err, unreadable };
  }
  const body = got.body;
  // Set in place, not with Object.assign, which makes and copies an object per delivery.
  d.body = body;
  d.handlers = handlersFor(parts.registry, body);
  return d as Decoded;
}

/**
 * Guard: a delivery that came back too often reaches no handler (it goes to
 * the error exchange, or is rejected, and an RPC caller is told); on a queue
 * that counts nothing, with `redeliveryCount: 'header'`, a redelivery is
 * counted in a header of a copy instead.
 */
export function deliveryLimit(d: Scoped): Outcome | undefined {
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
      d.body.category === 'rpc'
        ? replyOf(d.scope, encodeResult(ctx, new MessageResultException(err.name, err.message)))
        : undefined;
    return ctx.errorExchange
      ? { kind: 'deadLetter', exchange: ctx.errorExchange, err, attempts: err.deliveries, reply }
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
    const body = d.body;
    log.debug(
      {
        exchange: msg.fields.exchange,
        routingKey: msg.fields.routingKey,
        category: body.category,
        messageType: body.type,
        messageName: body.name,
        messageId: d.scope.messageId,
        conversationId: d.scope.conversationId,
      },
      'delivery',
    );
  }
  return undefined;
}
