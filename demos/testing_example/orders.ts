/**
 * A component as a user writes one: an order processor that prices an order
 * through another component's RPC and tells the mailer, with its own tests
 * beside it (orders.spec.ts) written with postage-ts/testing. main.ts is
 * what ships:   npx postage run demos/testing_example/main.ts
 */
import {
  GenericProducer,
  MessageCommand,
  MessageHandler,
  MessageProcessor,
  RejectMessage,
  RpcCommand,
  type Producer,
  type ProcessorOptions,
  type StandardSchemaV1,
} from '../../lib/index.js';

export const OrdersExchange = { name: 'example-orders', type: 'direct', durable: true } as const;

/** Talks to the pricing component and the mailer. */
export class Outbound extends GenericProducer {
  static override eks = [[OrdersExchange, 'pricing'] as const];
  build_rpc_price(item: string, quantity: number) {
    return new RpcCommand('price', { item, quantity });
  }
  build_message_mail(to: string, text: string) {
    return new MessageCommand('mail', { to, text });
  }
}

type Order = { parameters: { customer: string; item: string; quantity: number } };

/** What an order must look like (a hand-written Standard Schema; zod or valibot would do the same). */
export const OrderSchema: StandardSchemaV1<Order> = {
  '~standard': {
    version: 1,
    vendor: 'example',
    validate: (v) => {
      const p = (v as Partial<Order> | null)?.parameters;
      if (
        !p ||
        typeof p.customer !== 'string' ||
        typeof p.item !== 'string' ||
        !Number.isInteger(p.quantity) ||
        p.quantity < 1
      ) {
        return {
          issues: [
            { message: 'an order needs a customer, an item and a whole quantity of at least 1', path: ['parameters'] },
          ],
        };
      }
      return { value: v as Order };
    },
  },
};

export class OrderProcessor extends MessageProcessor {
  constructor(
    private readonly outbound: Producer<Outbound>,
    options: ProcessorOptions = {},
  ) {
    super({
      fingerprint: { name: 'orders' },
      eqk: [[OrdersExchange, [['example-orders', 'order']]]],
      errorExchange: 'example-orders-errors',
      ...options,
    });
  }

  @MessageHandler('command', 'order', { schema: OrderSchema, description: 'prices an order and mails the customer' })
  async order(content: Order): Promise<void> {
    const { customer, item, quantity } = content.parameters;
    const priced = await this.outbound.rpc_price(item, quantity);
    if (!priced.ok) throw new RejectMessage(`cannot price ${item}: ${priced.body.content.message}`);
    await this.outbound.message_mail(customer, `${quantity} x ${item}: ${String(priced.body.content.value)} EUR`, {
      _key: 'mail',
    });
  }
}
