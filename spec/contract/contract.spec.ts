/**
 * One contract, both ends, on a real broker: a processor implements spec/contract/fixtures/pricing.contract.ts with
 * `@ContractHandler`, a `ContractProducer` of the same contract sends it messages and calls its RPCs, and the
 * producer's `validate` refuses a send the contract's schema does not take before anything goes out.
 */
import { expect } from 'chai';
import {
  ContractHandler,
  ContractProducer,
  Handler,
  MessageProcessor,
  MessageResult,
  ValidationError,
} from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import { deferred, exchangeFixture } from '../support/components.js';
import { Pricing } from './fixtures/pricing.contract.js';

const quiet = makeLogger('silent');

describe('ContractProducer and ContractHandler', function () {
  this.timeout(20_000);
  const f = exchangeFixture('contract');

  /** The pricing service, reporting what its handlers got. */
  function service() {
    const repriced: Array<{ sku: string; cents: number }> = [];
    const restocked = deferred<unknown>();
    const firstRepriced = deferred<void>();
    class PricingService extends MessageProcessor {
      @ContractHandler(Pricing, 'price')
      price({ parameters }: { parameters: { sku: string; qty: number } }) {
        return { cents: 125 * parameters.qty, currency: parameters.sku.startsWith('US') ? 'USD' : 'EUR' };
      }

      @ContractHandler(Pricing, 'stock')
      stock(_content: { parameters: { sku: string } }, reply: (r: MessageResult) => void) {
        reply(new MessageResult(7));
      }

      @ContractHandler(Pricing, 'repriced')
      repriced({ parameters }: { parameters: { sku: string; cents: number } }) {
        repriced.push(parameters);
        firstRepriced.resolve();
      }

      @ContractHandler(Pricing, 'restock')
      static Restock = class extends Handler<PricingService, { parameters: unknown }> {
        call() {
          restocked.resolve(this.data.parameters);
        }
      };
    }
    const processor = new PricingService({ url: f.url, logger: quiet, eqk: [[f.ex, [[f.queue, 'pricing']]]] });
    return { processor, repriced, restocked: restocked.promise, firstRepriced: firstRepriced.promise };
  }

  async function client(validate = false) {
    class PricingClient extends ContractProducer(Pricing, { validate }) {
      static override eks = [[f.ex, 'pricing'] as const];
    }
    const p = await PricingClient.create({ url: f.url, logger: quiet });
    f.h.onClose(() => p.close());
    return p;
  }

  it('calls an RPC of the contract and resolves to the handler’s result, typed', async () => {
    const s = service();
    await f.h.start(s.processor);
    const p = await client();
    const r = await p.rpc_price({ sku: 'US-1', qty: 4 }, { _timeout: 5 });
    expect(r.ok).to.equal(true);
    if (!r.ok) return;
    expect(r.body.content.value).to.deep.equal({ cents: 500, currency: 'USD' });
    const n = await p.rpc_stock({ sku: 'US-1' }, { _timeout: 5 });
    expect(n.ok && n.body.content.value).to.equal(7);
  });

  it('sends the contract’s messages to the handlers that implement them (a method and a Handler class)', async () => {
    const s = service();
    await f.h.start(s.processor);
    const p = await client();
    await p.message_repriced({ sku: 'A-1', cents: 250 });
    await p.message_restock({ sku: 'A-1', count: 3 });
    expect(await s.restocked).to.deep.equal({ sku: 'A-1', count: 3 });
    await s.firstRepriced;
    expect(s.repriced).to.deep.equal([{ sku: 'A-1', cents: 250 }]);
  });

  it('answers an RPC whose parameters fail the contract’s schema with a MessageResultError naming them', async () => {
    const s = service();
    await f.h.start(s.processor);
    const p = await client();
    // What another service, not compiled against the contract, might send.
    const r = await (p.rpc_price as (params: unknown, o: object) => ReturnType<typeof p.rpc_price>)(
      { sku: 'A-1', qty: 'two' },
      { _timeout: 5 },
    );
    expect(r.ok).to.equal(false);
    expect(r.body.content.message).to.contain('parameters.qty').and.to.contain('expected a number');
  });

  it('with validate, refuses a send the contract does not take (ValidationError) and sends nothing', async () => {
    const s = service();
    await f.h.start(s.processor);
    const p = await client(true);
    const bad = { sku: 'A-1', cents: 'lots' } as unknown as { sku: string; cents: number };
    const err = await p.message_repriced(bad).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(ValidationError);
    expect((err as ValidationError).issues).to.deep.equal([
      { message: 'expected a number, got string', path: ['parameters', 'cents'] },
    ]);
    const badRpc = await (p.rpc_price as (params: unknown) => Promise<unknown>)({ sku: 'A-1' }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(badRpc).to.be.instanceOf(ValidationError);
    // A good send after it is the first the service sees: the bad one never went out.
    await p.message_repriced({ sku: 'A-1', cents: 300 });
    await s.firstRepriced;
    expect(s.repriced).to.deep.equal([{ sku: 'A-1', cents: 300 }]);
    // A typeOnly entry checks nothing at run time.
    await p.message_restock({ sku: 'A-1', count: 1 });
    expect(await s.restocked).to.deep.equal({ sku: 'A-1', count: 1 });
  });

  it('refuses at once a contract that is no contract, and a name the contract does not have', () => {
    expect(() => ContractProducer({} as typeof Pricing)).to.throw(TypeError, /defineContract/);
    expect(() => ContractHandler(Pricing, 'prise' as 'price')).to.throw(TypeError, /no 'prise'.*price, repriced/);
  });
});
