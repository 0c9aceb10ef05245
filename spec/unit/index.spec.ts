import { expect } from 'chai';
import * as postage from '../../lib/index.js';

/** Every runtime name CONTRACT.md promises from `import { … } from 'postage-ts'`. */
const CONTRACT = [
  // §1 microthreads
  'MicroThread',
  'MicroScheduler',
  'STOP',
  'StopThread',
  'ExitScheduler',
  'sleep',
  // §2 envelopes
  'Fingerprint',
  'Encoder',
  'JsonEncoder',
  'Message',
  'MessageCommand',
  'RpcCommand',
  'MessageStatus',
  'MessageResult',
  'MessageResultError',
  'MessageResultException',
  'MalformedMessage',
  // §3 topology
  'Exchange',
  // §4–6 messaging
  'GenericProducer',
  'GenericConsumer',
  'MessageProcessor',
  'MessageHandler',
  'RpcHandler',
  'MessageHandlerFullBody',
  'MessageFilter',
  'Handler',
  'FilterError',
  'RejectMessage',
  'AckAndRestart',
  // §7 components
  'GenericApplication',
  'GenericApplicationExchange',
  'PresenceExchange',
];

describe("postage-ts (the package's entry point)", () => {
  it('exports every name of the contract', () => {
    const missing = CONTRACT.filter((n) => !(n in postage));
    expect(missing).to.deep.equal([]);
  });

  it('exports its control signals from one place: thrown like errors, with a code, but not failures', () => {
    for (const E of [
      postage.StopThread,
      postage.ExitScheduler,
      postage.RejectMessage,
      postage.RequeueMessage,
      postage.AckAndRestart,
      postage.FilterError,
    ]) {
      const e = new E();
      expect(e).to.be.instanceOf(postage.ControlSignal).and.instanceOf(Error).and.not.instanceOf(postage.PostageError);
      expect(e.code).to.be.a('string');
      expect(e.name).to.equal(E.name);
    }
  });

  it('exports its failures from one place, all PostageErrors with a code', () => {
    const failures = [
      new postage.ConfigError('POSTAGE_PORT', 'bad'),
      new postage.MalformedMessage('why'),
      new postage.BrokerError('down', 'UNREACHABLE'),
      new postage.TopologyError('shape'),
      new postage.DeliveryLimitExceeded(6, 5),
    ];
    for (const e of failures) {
      expect(e).to.be.instanceOf(postage.PostageError).and.not.instanceOf(postage.ControlSignal);
      expect(e.code).to.match(/^[A-Z_]+$/);
    }
  });
});
