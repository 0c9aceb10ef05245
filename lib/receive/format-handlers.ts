/**
 * Handler decorators for messages other systems send: plain JSON by routing key, CloudEvents by event type. They tag
 * through the one tagging core the envelope decorators use, so they work as TC39 decorators, under
 * `experimentalDecorators`, and as plain `(prototype, 'method')` calls.
 */
import type { StandardSchemaV1 } from '@standard-schema/spec';
import type { DeliveryInfo } from '../scope/context.js';
import { handlerTag, withOptions, type ContentOf, type HandlerDecorator, type HandlerOptions } from './handlers.js';

/** What `@JsonHandler` may say besides its binding key. */
export interface JsonHandlerOptions<S extends StandardSchemaV1 | undefined = StandardSchemaV1 | undefined>
  extends Omit<HandlerOptions<S>, 'stream'> {
  /**
   * The key a message is deduplicated by (the processor's `deduplicate`) when its publisher set no `message_id`:
   * given the parsed body (before its schema) and the delivery. Undefined (or a throw, logged) handles it
   * without deduplication.
   * @example { idempotencyKey: (body) => (body as { orderId?: string }).orderId }
   */
  idempotencyKey?: (body: unknown, delivery: DeliveryInfo) => string | undefined;
}

/** What `@CloudEventHandler` may say besides its event type. */
export type CloudEventHandlerOptions<S extends StandardSchemaV1 | undefined = StandardSchemaV1 | undefined> = Omit<
  HandlerOptions<S>,
  'stream'
>;

function keyText(what: string, v: unknown): string {
  if (typeof v !== 'string' || v === '') throw new TypeError(`${what} must be a non-empty string, not ${String(v)}`);
  return v;
}

/**
 * Runs the method for every delivery whose routing key matches `bindingKey` (exactly, or as a topic pattern with
 * `*` for one word and `#` for any number) and whose body is JSON but no Postage envelope. The method gets the
 * parsed body (its schema's output, where it has a schema) and the delivery (`DeliveryInfo`, headers included);
 * every matching JSON handler runs. The processor's `eqk` still binds its queue: this only picks the deliveries.
 * A request with `reply_to` is answered with the value the handler returns, as plain JSON.
 *
 * @example
 * @JsonHandler('orders.*.placed', { schema: Order })
 * placed(order: Order, delivery: DeliveryInfo) { … }
 */
export function JsonHandler<S extends StandardSchemaV1 | undefined = undefined>(
  bindingKey: string,
  options?: JsonHandlerOptions<S>,
): HandlerDecorator<ContentOf<S>> {
  const tag = withOptions(
    { category: 'message', type: 'json', name: keyText('bindingKey', bindingKey), pass: 'content', format: 'json' },
    options,
  );
  const key = options?.idempotencyKey;
  if (key !== undefined) {
    if (typeof key !== 'function') throw new TypeError('idempotencyKey must be a function (body, delivery) => string');
    tag.idempotencyKey = key;
  }
  return handlerTag(tag);
}

/**
 * Runs the method for every CloudEvent of this type (exactly, or a topic pattern over its dots, e.g.
 * `com.example.order.*`), in binary mode (`cloudEvents_` / `cloudEvents:` headers) or structured mode
 * (`application/cloudevents+json`). The method gets the event's `data` (its schema's output, where it has a
 * schema) and its attributes (`CloudEventAttributes`: specversion, id, source, type, and the rest).
 *
 * @example
 * @CloudEventHandler('com.example.order.placed')
 * placed(data: unknown, event: CloudEventAttributes) { … }
 */
export function CloudEventHandler<S extends StandardSchemaV1 | undefined = undefined>(
  type: string,
  options?: CloudEventHandlerOptions<S>,
): HandlerDecorator<ContentOf<S>> {
  return handlerTag(
    withOptions(
      { category: 'message', type: 'cloudevent', name: keyText('type', type), pass: 'content', format: 'cloudevent' },
      options,
    ),
  );
}
