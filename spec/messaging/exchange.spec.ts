import { expect } from 'chai';
import { Exchange } from '../../lib/index.js';
import { resolveExchange } from '../../lib/messaging/exchange.js';

class CustomExchange extends Exchange {
  static override name = 'custom_exchange';
  static override type = 'fanout';
  static override passive = true;
  static override durable = false;
  static override autoDelete = true;
}

describe('Exchange', () => {
  it('returns its parameters from its class attributes', () => {
    expect(CustomExchange.parameters).to.deep.equal({ exchange: 'custom_exchange', type: 'fanout', passive: true, durable: false, autoDelete: true });
  });

  it('defaults to a durable direct exchange named after its class', () => {
    class Plain extends Exchange {}
    expect(Plain.parameters).to.deep.equal({ exchange: 'Plain', type: 'direct', passive: false, durable: true, autoDelete: false });
  });

  it('is interchangeable with a plain object', () => {
    expect(resolveExchange({ name: 'custom_exchange', type: 'fanout', passive: true, durable: false, autoDelete: true })).to.deep.equal(
      resolveExchange(CustomExchange),
    );
  });
});
