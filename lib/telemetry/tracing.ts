import {
  ProxyTracerProvider,
  context,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Span,
  type TextMapGetter,
  type TextMapSetter,
  type Tracer,
  type TracerProvider,
} from '@opentelemetry/api';
import { telemetry } from './settings.js';

/** Attribute names of OpenTelemetry's messaging semantic conventions (and two of postage's own). */
export const ATTR = Object.freeze({
  system: 'messaging.system',
  destination: 'messaging.destination.name',
  operationType: 'messaging.operation.type',
  operationName: 'messaging.operation.name',
  messageId: 'messaging.message.id',
  conversationId: 'messaging.message.conversation_id',
  bodySize: 'messaging.message.body.size',
  routingKey: 'messaging.rabbitmq.destination.routing_key',
  deliveryTag: 'messaging.rabbitmq.message.delivery_tag',
  messageType: 'postage.message.type',
  messageName: 'postage.message.name',
  /** The fingerprint name of the component that made the span. */
  component: 'postage.component',
});

/** The API's own no-op provider, what the global proxy delegates to until an SDK registers. */
const NOOP_PROVIDER = new ProxyTracerProvider().getDelegate();

/**
 * Whether spans are recorded now: an SDK registered, and spans not turned off.
 * When not, postage-ts skips every span on its hot paths (and only passes
 * incoming trace headers on), so an application without an SDK pays nothing.
 */
export function tracingOn(): boolean {
  if (!telemetry.spans) return false;
  const p = trace.getTracerProvider();
  return !(p instanceof ProxyTracerProvider) || p.getDelegate() !== NOOP_PROVIDER;
}

let cached: { provider: TracerProvider; tracer: Tracer } | undefined;
/**
 * postage-ts's tracer: the application's SDK when it registered one, else a
 * no-op. Taken anew when the registered provider changes (`trace.disable()`
 * then another SDK, as tests do): a tracer kept from the one before would
 * still record into it, and the new SDK would see no span.
 */
function tracerOf(): Tracer {
  const provider = trace.getTracerProvider();
  if (cached?.provider !== provider) cached = { provider, tracer: provider.getTracer('postage-ts') };
  return cached.tracer;
}

const getter: TextMapGetter<Record<string, unknown>> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => {
    const v = carrier[key];
    if (typeof v === 'string') return v;
    if (Buffer.isBuffer(v)) return v.toString('utf8');
    return undefined;
  },
};
const setter: TextMapSetter<Record<string, unknown>> = {
  set: (carrier, key, value) => {
    carrier[key] = value;
  },
};

/** The trace context a message carries in its headers; a malformed one is ignored, never fatal. */
export function extractContext(headers: Record<string, unknown> | undefined): Context {
  if (!headers) return ROOT_CONTEXT;
  try {
    return propagation.extract(ROOT_CONTEXT, headers, getter);
  } catch {
    return ROOT_CONTEXT;
  }
}

/**
 * Writes the trace context of `ctx` into `headers` (W3C `traceparent` /
 * `tracestate` with the SDK's propagator). Without a registered propagator,
 * the ones the delivery being handled carried pass through unchanged, so a
 * trace survives a component that has no SDK.
 */
export function injectContext(
  ctx: Context,
  headers: Record<string, unknown>,
  incoming?: Readonly<Record<string, unknown>>,
): void {
  try {
    propagation.inject(ctx, headers, setter);
  } catch {
    // A propagator that throws costs the trace, never the message.
  }
  if (incoming && headers.traceparent === undefined && typeof incoming.traceparent === 'string') {
    headers.traceparent = incoming.traceparent;
    if (typeof incoming.tracestate === 'string') headers.tracestate = incoming.tracestate;
  }
}

/**
 * Without spans: the trace headers of the delivery being handled go on unchanged, so a trace survives a component that
 * records none.
 */
export function passTraceOn(
  props: { headers?: Record<string, unknown> },
  scope: { readonly headers: Readonly<Record<string, unknown>> | undefined },
): void {
  const incoming = scope.headers;
  if (!incoming || typeof incoming.traceparent !== 'string') return;
  const headers = (props.headers ??= {});
  headers.traceparent ??= incoming.traceparent;
  if (typeof incoming.tracestate === 'string') headers.tracestate ??= incoming.tracestate;
}

/**
 * A span of one messaging operation, named and tagged as the messaging semantic conventions say. Callers ask only when
 * {@link tracingOn}.
 */
function startSpan(
  kind: SpanKind,
  operation: 'publish' | 'process' | 'call',
  type: 'send' | 'process',
  parent: Context,
  exchange: string,
  attributes: Attributes,
): Span {
  return tracerOf().startSpan(
    `${operation} ${exchange || '(default)'}`,
    {
      kind,
      attributes: {
        [ATTR.system]: 'rabbitmq',
        [ATTR.destination]: exchange,
        [ATTR.operationType]: type,
        [ATTR.operationName]: operation,
        ...attributes,
      },
    },
    parent,
  );
}

/** A span for one publish, a child of `parent`. */
export function startPublishSpan(parent: Context, exchange: string, attributes: Attributes): Span {
  return startSpan(SpanKind.PRODUCER, 'publish', 'send', parent, exchange, attributes);
}

/** A span for handling one delivery, a child of the sender's span (from the message's headers). */
export function startProcessSpan(parent: Context, exchange: string, attributes: Attributes): Span {
  return startSpan(SpanKind.CONSUMER, 'process', 'process', parent, exchange, attributes);
}

/** A span for one RPC call, its retries included. */
export function startRpcSpan(parent: Context, exchange: string, attributes: Attributes): Span {
  return startSpan(SpanKind.CLIENT, 'call', 'send', parent, exchange, attributes);
}

/** Ends a span, as failed when `err` is given. */
export function endSpan(span: Span, err?: unknown): void {
  if (err !== undefined && span.isRecording()) {
    span.recordException(err instanceof Error ? err : new Error(String(err)));
    span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
  }
  span.end();
}

/** The context sends start from: the delivery being handled, else whatever is active. */
export function activeContext(): Context {
  return context.active();
}

export { trace };
