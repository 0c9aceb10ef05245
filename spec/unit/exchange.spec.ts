import { expect } from 'chai';
import { Exchange, TopologyError, type ExchangeObject } from '../../lib/index.js';
import { resolveExchange } from '../../lib/topology/exchange.js';

class CustomExchange extends Exchange {
  static override name = 'custom_exchange';
  static override type = 'fanout';
  static override passive = true;
  static override durable = false;
  static override autoDelete = true;
}

describe('Exchange', () => {
  it('returns its parameters from its class attributes', () => {
    expect(CustomExchange.parameters).to.deep.equal({
      exchange: 'custom_exchange',
      type: 'fanout',
      passive: true,
      durable: false,
      autoDelete: true,
    });
  });

  it('defaults to a durable direct exchange named after its class', () => {
    class Plain extends Exchange {}
    expect(Plain.parameters).to.deep.equal({
      exchange: 'Plain',
      type: 'direct',
      passive: false,
      durable: true,
      autoDelete: false,
    });
  });

  it("takes Python Postage's exchange_type and auto_delete as type and autoDelete, for code ported word for word", () => {
    class Ported extends Exchange {
      static override name = 'ported';
      static exchange_type = 'topic';
      static auto_delete = true;
    }
    expect(Ported.parameters).to.deep.include({ type: 'topic', autoDelete: true });
    expect(
      resolveExchange({ name: 'p', exchange_type: 'fanout', auto_delete: true } as unknown as ExchangeObject),
    ).to.deep.include({ type: 'fanout', autoDelete: true });
  });

  it('refuses both spellings at odds, naming the TypeScript one', () => {
    class Confused extends Exchange {
      static override name = 'confused';
      static override type = 'direct';
      static exchange_type = 'fanout';
    }
    expect(() => Confused.parameters).to.throw(TopologyError, /keep type, the TypeScript spelling/);
  });

  it('is interchangeable with a plain object', () => {
    expect(
      resolveExchange({ name: 'custom_exchange', type: 'fanout', passive: true, durable: false, autoDelete: true }),
    ).to.deep.equal(resolveExchange(CustomExchange));
  });
});
