import { expect } from 'chai';
import type { ConsumerLine } from '../../lib/receive/delivery/consumer-line.js';
import { AmqpReplier } from '../../lib/receive/delivery/replier.js';
import { type Encoder, JsonEncoder } from '../../lib/envelope/encoder.js';
import { Fingerprint } from '../../lib/envelope/fingerprint.js';
import { MessageResult } from '../../lib/envelope/messages.js';
import { componentLogger } from '../../lib/log.js';

/** A replier over an encoder: encoding is all these cases use of its consumer's line. */
function replierWith(encoder: Encoder): AmqpReplier {
  const none = () => undefined;
  const line: ConsumerLine = {
    log: componentLogger('spec', 'reply-encoding'),
    encoder,
    topology: () => {
      throw new Error('not used');
    },
    model: none,
    channel: none,
    settleOn: none,
    queueOf: none,
    settled: () => Promise.resolve(),
  };
  return new AmqpReplier(line);
}

const fingerprint = new Fingerprint('reply-encoding "spec"', 'processor').asDict();
/** What a bare value's reply was before the quick way: its MessageResult, fingerprinted, through encodeReply. */
const slow = (r: AmqpReplier, v: unknown) => r.encodeReply(new MessageResult(v).setFingerprint(fingerprint));

describe('AmqpReplier#encodeValue', () => {
  it('gives the very bytes encodeReply gives a MessageResult of the same value, whatever the value', () => {
    const r = replierWith(new JsonEncoder());
    const values: unknown[] = [
      'hi',
      '',
      'ünï\u0000"\\code\u2028',
      0,
      -1.5,
      Number.NaN,
      true,
      null,
      [],
      [1, 'two', { three: [null] }],
      {},
      { a: 1, nested: { b: [true, 'x'] }, skipped: undefined },
      new Date(0),
      { toJSON: (key: string) => `key ${key}` },
    ];
    for (const v of values)
      expect(r.encodeValue(v, fingerprint)?.toString(), String(v)).to.equal(slow(r, v).toString());
  });

  it('leaves to encodeReply a value JSON drops or cannot encode, and any encoder but the plain JsonEncoder', () => {
    const r = replierWith(new JsonEncoder());
    expect(r.encodeValue(undefined, fingerprint)).to.equal(undefined);
    expect(r.encodeValue(() => 1, fingerprint)).to.equal(undefined);
    expect(r.encodeValue(10n, fingerprint)).to.equal(undefined);
    expect(() => slow(r, 10n)).to.throw(TypeError);
    const cycle: Record<string, unknown> = {};
    cycle.self = cycle;
    expect(r.encodeValue(cycle, fingerprint)).to.equal(undefined);
    class Loud extends JsonEncoder {
      override encode(data: unknown): Buffer {
        return Buffer.from(JSON.stringify(data).toUpperCase());
      }
    }
    expect(replierWith(new Loud()).encodeValue('hi', fingerprint)).to.equal(undefined);
  });

  it('encodes around each fingerprint it is given', () => {
    const r = replierWith(new JsonEncoder());
    const other = new Fingerprint('another', 'processor').asDict();
    const a = JSON.parse(String(r.encodeValue(1, fingerprint))) as { fingerprint: { name: string } };
    const b = JSON.parse(String(r.encodeValue(1, other))) as { fingerprint: { name: string } };
    expect([a.fingerprint.name, b.fingerprint.name]).to.deep.equal(['reply-encoding "spec"', 'another']);
  });
});
