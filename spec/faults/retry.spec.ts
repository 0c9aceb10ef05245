/**
 * Recoverability: a failing handler is run again with backoff, then its
 * message goes to the error exchange with the error in its headers; a
 * RejectMessage goes there at once. Shared broker. Must hold: nothing failed
 * is dropped, and what succeeds on a later attempt is handled once.
 */
import { expect } from 'chai';
import type amqp from 'amqplib';
import {
  GenericProducer,
  MessageHandler,
  MessageProcessor,
  RejectMessage,
  type ExchangeObject,
} from '../../lib/index.js';
import { brokerUrl } from '../support/broker.js';
import { Harness, deferred } from '../support/components.js';
import { deleteTopology, getOne, unique } from '../support/topology.js';
import { within } from '../support/wait.js';

describe('MessageProcessor retry and error exchange', function () {
  this.timeout(30_000);
  let url: string;
  let ex: ExchangeObject;
  let queue: string;
  let errors: string;
  let h: Harness;
  beforeEach(async () => {
    url = await brokerUrl();
    ex = { name: unique('retry'), type: 'direct', durable: false };
    queue = unique('retryq');
    errors = unique('errors');
    h = new Harness();
  });
  afterEach(async () => {
    await h.close();
    await deleteTopology([queue, errors], [ex.name, errors]);
  });

  it('runs a failing handler again with backoff, then sends the message to the error exchange with the error in its headers', async () => {
    const runs: Record<string, number> = {};
    const flakyDone = deferred<number>();
    class Sink extends MessageProcessor {
      @MessageHandler('command', 'flaky')
      flaky(content: { parameters: { n: number } }) {
        runs.flaky = (runs.flaky ?? 0) + 1;
        content.parameters.n += 1; // mutating its copy must not leak into the next run
        if (runs.flaky < 3) throw new Error(`flaky ${runs.flaky}`);
        flakyDone.resolve(content.parameters.n);
      }
      @MessageHandler('command', 'broken')
      broken() {
        runs.broken = (runs.broken ?? 0) + 1;
        throw new TypeError('always broken');
      }
      @MessageHandler('command', 'refused')
      refused() {
        runs.refused = (runs.refused ?? 0) + 1;
        throw new RejectMessage('not for me');
      }
    }
    await h.start(
      new Sink({ url, eqk: [[ex, [[queue, 'k']]]], retry: { attempts: 3, backoffMs: 10 }, errorExchange: errors }),
    );
    const exchange = ex;
    class P extends GenericProducer {
      static override eks = [[exchange, 'k'] as const];
    }
    const p = await P.create({ url });
    h.onClose(() => p.close());

    await p.message_flaky({ n: 1 });
    const lastN = await within(flakyDone.promise, { timeout: 20_000, message: 'the flaky message handled' });
    expect(runs.flaky).to.equal(3);
    expect(lastN, 'the third run saw the content as sent, not as an earlier run left it').to.equal(2);

    await p.message_broken();
    const dead = (await getOne(errors)) as amqp.GetMessage;
    expect(dead, 'the broken message in the error queue').to.not.equal(false);
    expect(JSON.parse(dead.content.toString()).name).to.equal('broken');
    expect(dead.properties.headers).to.include({
      'x-error-name': 'TypeError',
      'x-error-message': 'always broken',
      'x-original-exchange': ex.name,
      'x-original-routing-key': 'k',
      'x-attempts': 3,
    });
    expect(runs.broken).to.equal(3);

    await p.message_refused();
    const refused = (await getOne(errors)) as amqp.GetMessage;
    expect(JSON.parse(refused.content.toString()).name).to.equal('refused');
    expect(refused.properties.headers).to.include({ 'x-error-name': 'RejectMessage', 'x-attempts': 1 });
    expect(runs.refused).to.equal(1);
  });
});
