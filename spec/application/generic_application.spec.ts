import { expect } from 'chai';
import {
  GenericApplication,
  GenericApplicationExchange,
  GenericProducer,
  MessageHandler,
  MessageResult,
  PresenceExchange,
  type FingerprintDict,
  type Producer,
} from '../../lib/index.js';
import { brokerUrl } from '../support/broker.js';
import { Harness } from '../support/components.js';
import { unique } from '../support/topology.js';
import { until } from '../support/wait.js';

/**
 * Three components in one process, told apart by their fingerprints:
 * alpha (pid 101 on h1), alpha (pid 102 on h2), beta (pid 103 on h1).
 */
describe('GenericApplication', function () {
  this.timeout(30_000);
  let url: string;
  let h: Harness;
  let alpha: string;
  let beta: string;
  let h1: string;
  let h2: string;
  let a1: Recorder;
  let a2: Recorder;
  let b: Recorder;
  let hits: string[];
  let producer: Producer<Sender>;

  class Sender extends GenericProducer {
    static override eks = [[GenericApplicationExchange, 'none'] as const, [PresenceExchange, 'presence'] as const];
  }

  class Recorder extends GenericApplication {
    @MessageHandler('command', 'hit')
    hit(content: { parameters: { tag: string } }) {
      hits.push(`${content.parameters.tag}:${this.fingerprint.pid}`);
    }
  }

  /**
   * Sends a hit to `key`, then a fence the same way, and returns which components got the hit once `expected` of
   * each arrived. A stray copy of the hit in any queue comes before that queue's fence, so it is counted by then
   * (no fixed grace period: the fence is the event).
   */
  async function deliveredTo(key: string, expected: number, exchange: 'app' | 'presence' = 'app'): Promise<string[]> {
    const tag = unique('t');
    const fence = unique('fence');
    const eks = [[exchange === 'app' ? GenericApplicationExchange : PresenceExchange, key] as const];
    await producer.message_hit({ tag }, { _eks: eks });
    await producer.message_hit({ tag: fence }, { _eks: eks });
    const of = (t: string) => hits.filter((x) => x.startsWith(`${t}:`));
    await until(() => of(tag).length >= expected && of(fence).length >= expected, {
      timeout: 10_000,
      message: () => `${expected} deliveries of a hit to ${key} and of its fence (got ${of(tag)}; ${of(fence)})`,
    });
    return of(tag)
      .map((x) => x.split(':')[1])
      .sort();
  }

  before(async () => {
    url = await brokerUrl();
  });

  beforeEach(async () => {
    hits = [];
    h = new Harness();
    alpha = unique('alpha');
    beta = unique('beta');
    h1 = unique('h1');
    h2 = unique('h2');
    const fp = (name: string, pid: string, host: string): Partial<FingerprintDict> => ({
      name,
      type: 'spec',
      pid,
      host,
    });
    a1 = new Recorder({ url, fingerprint: fp(alpha, '101', h1) });
    a2 = new Recorder({ url, fingerprint: fp(alpha, '102', h2) });
    b = new Recorder({ url, fingerprint: fp(beta, '103', h1) });
    await h.start(a1, a2, b);
    producer = await Sender.create({ url });
    h.onClose(() => producer.close());
  });

  afterEach(async () => {
    // Every queue of these components is exclusive or auto-delete: closing them cleans up.
    await h.close();
  });

  it("reaches every component named N through 'N', and exactly one through 'N/rr'", async () => {
    expect(await deliveredTo(alpha, 2)).to.deep.equal(['101', '102']);
    const rr = await deliveredTo(`${alpha}/rr`, 1);
    expect(rr).to.have.length(1);
    expect(['101', '102']).to.include(rr[0]);
  });

  it("reaches every component on host H through '@H'", async () => {
    expect(await deliveredTo(`@${h1}`, 2)).to.deep.equal(['101', '103']);
  });

  it("reaches the components named N on H through 'N@H' and 'N@H/rr'", async () => {
    expect(await deliveredTo(`${alpha}@${h1}`, 1)).to.deep.equal(['101']);
    expect(await deliveredTo(`${alpha}@${h2}/rr`, 1)).to.deep.equal(['102']);
  });

  it("reaches exactly one component through 'P@H'", async () => {
    expect(await deliveredTo(`102@${h2}`, 1)).to.deep.equal(['102']);
  });

  it("reaches everyone through 'presence' and the components on H through 'presence@H'", async () => {
    const all = await deliveredTo('presence', 3, 'presence');
    expect(all).to.include.members(['101', '102', '103']);
    expect(await deliveredTo(`presence@${h2}`, 1, 'presence')).to.deep.equal(['102']);
  });

  it('answers ping with its fingerprint, alone by P@H or all together through a broadcast', async () => {
    const one = await producer.rpc_ping({}, { _key: `103@${h1}`, _timeout: 5 });
    expect(one).to.be.instanceOf(MessageResult);
    expect((one.body.content.value as FingerprintDict).name).to.equal(beta);
    const queue = await producer.rpc_ping({}, { _key: alpha, _queue_only: true });
    const replies = await producer.consumeRpc(queue, { resultLen: 2, timeout: 5 });
    expect(replies.map((r) => (r.body.content.value as FingerprintDict).pid).sort()).to.deep.equal(['101', '102']);
  });

  it("joins and leaves groups at run time: 'N#G' fans out to members, 'N#G/rr' round-robins over them", async () => {
    const group = 'g';
    // A ping on the same (ordered) queue answers only after the join is done.
    const command = async (pidAtHost: string, name: 'join_group' | 'leave_group') => {
      if (name === 'join_group') await producer.message_join_group({ group_name: group }, { _key: pidAtHost });
      else await producer.message_leave_group({ group_name: group }, { _key: pidAtHost });
      await producer.rpc_ping({}, { _key: pidAtHost, _timeout: 5 });
    };
    await command(`101@${h1}`, 'join_group');
    expect(await deliveredTo(`${alpha}#${group}`, 1)).to.deep.equal(['101']);
    expect(await deliveredTo(`${alpha}#${group}/rr`, 1)).to.deep.equal(['101']);

    await command(`102@${h2}`, 'join_group');
    expect(await deliveredTo(`${alpha}#${group}`, 2)).to.deep.equal(['101', '102']);
    expect(await deliveredTo(`${alpha}#${group}/rr`, 1)).to.have.length(1);

    // Postage unbound the shared round-robin queue here, cutting off every member.
    await command(`101@${h1}`, 'leave_group');
    expect(await deliveredTo(`${alpha}#${group}`, 1)).to.deep.equal(['102']);
    for (let i = 0; i < 3; i++) expect(await deliveredTo(`${alpha}#${group}/rr`, 1)).to.deep.equal(['102']);
    expect(a1.groups).to.deep.equal([]);
    expect(a2.groups).to.deep.equal([group]);
  });
});
