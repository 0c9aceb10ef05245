/**
 * Two running components as an operator meets them: GenericApplications on a spec vhost, one with an error queue and a
 * handler that fails until fixed.
 */
import {
  GenericApplication,
  GenericApplicationExchange,
  GenericProducer,
  MessageHandler,
  type MessageSender,
  RpcHandler,
  type RpcSender,
} from '../../lib/index.js';
import { counter, Harness } from './components.js';
import { deleteTopology, unique } from './topology.js';

export interface Fleet {
  readonly errorQueue: string;
  /** Orders fail with TypeError while this is true. */
  broken: boolean;
  /** Orders handled since the last `expect(n)`. */
  expect(n: number): Promise<void>;
  order(n: number): Promise<void>;
  /** Calls the invoices component's `quote` RPC, which answers 42. */
  quote(): Promise<unknown>;
  /** Closes the invoices component, as a crash or a deploy would take it away. */
  stopInvoices(): Promise<void>;
  close(): Promise<void>;
}

export async function startFleet(url: string): Promise<Fleet> {
  const h = new Harness();
  const errorQueue = unique('fleet-errors');
  let took = counter(0);
  const fleet = {
    errorQueue,
    broken: true,
    expect(n: number) {
      took = counter(n);
      return took.done;
    },
    async order(n: number) {
      for (let i = 0; i < n; i++) await client.message_order({ i });
    },
    async quote() {
      return (await client.rpc_quote({}, { _key: 'invoices', _timeout: 10, _max_retry: 0 })).body.content.value;
    },
    async stopInvoices() {
      await invoices.close();
    },
    async close() {
      await client.close();
      await h.close();
      await deleteTopology([errorQueue], [errorQueue]);
    },
  };
  class Orders extends GenericApplication {
    @MessageHandler('command', 'order')
    order(): void {
      if (fleet.broken) throw new TypeError('price must be a number');
      took.hit();
    }
  }
  class Invoices extends GenericApplication {
    @MessageHandler('command', 'invoice')
    invoice(): void {}
    @RpcHandler('command', 'quote')
    quote(): number {
      return 42;
    }
  }
  const invoices = new Invoices({ url, fingerprint: { name: 'invoices', pid: `${process.pid}2` } });
  await h.start(
    new Orders({ url, fingerprint: { name: 'orders', pid: `${process.pid}1` }, errorExchange: errorQueue }),
    invoices,
  );
  class Shop extends GenericProducer {
    static override eks = [[GenericApplicationExchange, 'orders'] as const];
    declare message_order: MessageSender;
    declare rpc_quote: RpcSender;
  }
  const client = await Shop.create({ url, fingerprint: { name: 'shop' } });
  return fleet;
}
