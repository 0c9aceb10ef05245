/**
 * Type-level spec of the contract form, checked by `npm run typecheck` (standard decorators) and by
 * spec/contract/types.spec.ts (also under experimentalDecorators, and with the markers removed, to read the errors):
 * every `@ts-expect-error` line must fail to compile, or the check fails.
 */
import {
  ContractHandler,
  ContractProducer,
  Exchange,
  Handler,
  MessageProcessor,
  MessageResult,
  type AnyResult,
  type ContractResult,
  type MessageResultError,
  type MessageResultException,
} from '../../lib/index.js';
import { Pricing } from '../contract/fixtures/pricing.contract.js';

class PricingExchange extends Exchange {
  static override name = 'pricing-exchange';
}

export class PricingService extends MessageProcessor {
  @ContractHandler(Pricing, 'price')
  price(content: { parameters: { sku: string; qty: number } }): { cents: number; currency: string } {
    return { cents: 100 * content.parameters.qty, currency: 'EUR' };
  }

  @ContractHandler(Pricing, 'repriced')
  async repriced({ parameters }: { parameters: { sku: string; cents: number } }): Promise<void> {
    void parameters.cents;
  }

  // An RPC handler may answer through reply() and return nothing.
  @ContractHandler(Pricing, 'stock')
  stock(_content: { parameters: { sku: string } }, reply: (r: MessageResult) => void): void {
    reply(new MessageResult(3));
  }

  @ContractHandler(Pricing, 'restock')
  static Restock = class extends Handler<PricingService> {
    call(): void {}
  };

  // @ts-expect-error: a handler of a name the contract does not have
  @ContractHandler(Pricing, 'prise')
  prise(): void {}

  // @ts-expect-error: a handler that does not take the contract's parameters (qty is a number)
  @ContractHandler(Pricing, 'price')
  priceWrongArgs(content: { parameters: { sku: string; qty: string } }): { cents: number; currency: string } {
    return { cents: Number(content.parameters.qty), currency: 'EUR' };
  }

  // @ts-expect-error: an RPC handler that returns something else than the contract's result
  @ContractHandler(Pricing, 'price')
  priceWrongResult(_content: { parameters: { sku: string; qty: number } }): string {
    return 'free';
  }

  plainPrice(content: { parameters: { sku: string; qty: number } }): { cents: number; currency: string } {
    return { cents: content.parameters.qty, currency: 'EUR' };
  }
  plainWrong(content: { parameters: { sku: number } }): number {
    return content.parameters.sku;
  }
}

// The plain form, without decorators: the method named must take what the contract says.
ContractHandler(Pricing, 'price')(PricingService.prototype, 'plainPrice');
// @ts-expect-error: the plain form refuses a method of the wrong shape
ContractHandler(Pricing, 'price')(PricingService.prototype, 'plainWrong');
// @ts-expect-error: and a name the contract does not have
ContractHandler(Pricing, 'prices');

export class PricingClient extends ContractProducer(Pricing) {
  static override eks = [[PricingExchange, 'pricing'] as const];
}

export async function typedFromTheContract(): Promise<void> {
  const p = await PricingClient.create({ fingerprint: { name: 'types' } });

  const r = await p.rpc_price({ sku: 'A-1', qty: 2 }, { _timeout: 5 });
  // It resolves to the three results of contract section 4, never rejecting for a remote failure.
  const asResults: MessageResult<{ cents: number; currency: string }> | MessageResultError | MessageResultException = r;
  const asAny: AnyResult = r;
  const same: ContractResult<{ cents: number; currency: string }> = r;
  if (r.ok) {
    // The handler's result type, once r.ok says it succeeded.
    const cents: number = r.body.content.value.cents;
    const currency: string = r.body.content.value.currency;
    void [cents, currency];
  } else {
    const why: string = r.body.content.message;
    void why;
  }
  const q: string = await p.rpc_price({ sku: 'A-1', qty: 2 }, { _queue_only: true });
  const n = await p.rpc_stock({ sku: 'A-1' });
  if (n.ok) {
    const count: number = n.body.content.value;
    void count;
  }
  await p.message_repriced({ sku: 'A-1', cents: 250 });
  await p.message_restock({ sku: 'A-1', count: 3 }, { _key: 'stock' });
  void [asResults, asAny, same, q];

  // @ts-expect-error: a misspelled name does not compile
  await p.rpc_prise({ sku: 'A-1', qty: 2 });
  // @ts-expect-error: nor a message sent as an RPC
  await p.rpc_repriced({ sku: 'A-1', cents: 1 });
  // @ts-expect-error: a wrong argument type (qty is a number)
  await p.rpc_price({ sku: 'A-1', qty: 'two' });
  // @ts-expect-error: a missing parameter
  await p.message_restock({ sku: 'A-1' });
  // @ts-expect-error: the parameters are not optional
  await p.rpc_price();
  // @ts-expect-error: the value is no string
  const wrong: string = (await p.rpc_stock({ sku: 'A-1' })).body.content.value;
  // @ts-expect-error: and not known before r.ok said the call succeeded
  const early: number = r.body.content.value.cents;
  void [wrong, early];

  // Today's forms go on as they were: builders and declared senders beside the contract's names.
  class Both extends ContractProducer(Pricing) {
    build_message_audit(who: string) {
      return { who } as never;
    }
  }
  const b = await Both.create();
  await b.message_audit('me');
  await b.message_repriced({ sku: 'A-1', cents: 1 });
  // @ts-expect-error: the builder's argument is a string
  await b.message_audit(1);
}
