import { injectContext, passTraceOn } from '../../telemetry/tracing.js';
import { HEADERS, type DeliveryScope } from '../../scope/context.js';
import type { Message } from '../../envelope/messages.js';
import type { Reply } from './outcome.js';
import type { DispatchContext } from './parts.js';

/**
 * A reply carries its request's correlation id (always), the handler's trace
 * context, and, when the request belongs to a conversation that began
 * elsewhere, that conversation with the request as its cause. A plain call
 * gets a reply without headers: encoding them costs every round trip.
 */
export function replyOf(scope: DeliveryScope, content: Buffer): Reply {
  const reply: Reply = { content };
  const incoming = scope.headers;
  if (incoming?.[HEADERS.conversationId] !== undefined) {
    const headers = (reply.headers ??= {});
    headers[HEADERS.conversationId] = scope.conversationId;
    if (scope.messageId !== undefined) headers[HEADERS.causationId] = scope.messageId;
  }
  if (scope.trace) injectContext(scope.trace, (reply.headers ??= {}));
  else passTraceOn(reply, scope);
  return reply;
}

/**
 * A result as this processor sends it: with its fingerprint (replies carry the answering component's), encoded; throws
 * when it cannot be encoded.
 */
export function encodeResult(ctx: DispatchContext, result: Message<object>): Buffer {
  return ctx.encodeReply(result.setFingerprint(ctx.fingerprint));
}
