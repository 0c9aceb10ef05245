/**
 * Fault: the network goes silent (packets dropped, nothing closed or refused),
 * injected with a relay in front of the broker that stops passing bytes. Must
 * hold: a send waits at most its confirm timeout and rejects with
 * CONFIRM_TIMEOUT; producer and processor notice the dead connection from the
 * heartbeat within three intervals, and reconnect once the network is back.
 */
import { expect } from 'chai';
import {
  BrokerError,
  GenericProducer,
  MessageHandler,
  MessageProcessor,
  type ExchangeObject,
} from '../../lib/index.js';
import { brokerUrl } from '../support/broker.js';
import { Harness, deferred } from '../support/components.js';
import { silentNetwork, type SilentNetwork } from '../support/proxy.js';
import { unique } from '../support/topology.js';

describe('fault: the network goes silent', function () {
  this.timeout(60_000);
  let url: string;
  let h: Harness;
  let net: SilentNetwork;
  let ex: ExchangeObject;
  before(async () => {
    url = await brokerUrl();
  });
  beforeEach(async () => {
    h = new Harness();
    net = await silentNetwork(url);
    ex = { name: unique('sn-ex'), type: 'direct', durable: false };
  });
  afterEach(async () => {
    await h.close();
    await net.close();
  });

  /** Resolves with the next `event` of a component, and when it came. */
  function next(
    c: { on(e: 'connected' | 'disconnected', l: () => void): unknown },
    event: 'connected' | 'disconnected',
  ): Promise<number> {
    const d = deferred<number>();
    c.on(event, () => d.resolve(Date.now()));
    return d.promise;
  }

  it('rejects a send with CONFIRM_TIMEOUT within its bound, notices the dead connection from the heartbeat, and sends again once the network is back', async () => {
    const exchange = ex;
    class Sender extends GenericProducer {
      static override eks = [[exchange, 'k'] as const];
    }
    const p = await Sender.create({
      url: net.url,
      heartbeat: 2,
      confirmTimeoutMs: 1000,
      connectTimeoutMs: 1000,
      reconnect: { initialMs: 50, maxMs: 200 },
    });
    h.onClose(() => p.close());
    await p.message_status({}, { _mandatory: false });
    const lost = next(p, 'disconnected');
    net.silence();
    const silentAt = Date.now();
    const err = await p.message_status({}, { _mandatory: false }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(BrokerError);
    expect((err as BrokerError).code).to.equal('CONFIRM_TIMEOUT');
    expect((err as BrokerError).message)
      .to.contain('within 1 s')
      .and.contain('send it again');
    // Generous sanity bound: the sweep runs every quarter of the bound.
    expect(Date.now() - silentAt).to.be.below(3000);
    // A 2 s heartbeat notices silence after two to three intervals.
    expect((await lost) - silentAt).to.be.below(8000);
    const back = next(p, 'connected');
    net.restore();
    await back;
    await p.message_status({}, { _mandatory: false });
  });

  it('has a processor notice the dead connection from the heartbeat and consume again once the network is back', async () => {
    const queue = unique('sn-q');
    const got = deferred<number>();
    class Sink extends MessageProcessor {
      @MessageHandler('command', 'ping')
      ping(content: { parameters: { n: number } }) {
        got.resolve(content.parameters.n);
      }
    }
    const sink = new Sink({
      url: net.url,
      heartbeat: 2,
      connectTimeoutMs: 1000,
      reconnect: { initialMs: 50, maxMs: 200 },
      eqk: [[ex, [[queue, 'k']]]],
    });
    await h.start(sink);
    const lost = next(sink, 'disconnected');
    net.silence();
    const silentAt = Date.now();
    expect((await lost) - silentAt).to.be.below(8000);
    const back = next(sink, 'connected');
    net.restore();
    await back;
    const exchange = ex;
    class Sender extends GenericProducer {
      static override eks = [[exchange, 'k'] as const];
    }
    const p = await Sender.create({ url });
    h.onClose(() => p.close());
    await p.message_ping({ n: 7 });
    expect(await got.promise).to.equal(7);
  });
});
