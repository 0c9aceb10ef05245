import { expect } from 'chai';
import { EnvelopeJson, JsonEncoder } from '../../lib/envelope/encoder.js';
import { EncryptedJsonEncoder } from '../../lib/envelope/encryption.js';
import { Fingerprint } from '../../lib/envelope/fingerprint.js';
import {
  Message,
  MessageCommand,
  MessageResult,
  MessageResultError,
  MessageStatus,
  RpcCommand,
} from '../../lib/envelope/messages.js';

const fingerprint = new Fingerprint('envelope "encoding" ü', 'producer').asDict();
/** What JsonEncoder made of every body before the fingerprint's JSON was kept: JSON.stringify of the whole. */
const whole = (body: unknown) => Buffer.from(JSON.stringify(body));

/** Bodies as producers and servers make them: each one is a plain envelope, encoded the quick way. */
function envelopes(): object[] {
  const contents: unknown[] = [
    'hi',
    '',
    'ünï\u0000"\\code\u2028 \ud800 lone',
    0,
    -1.5,
    Number.NaN,
    null,
    [1, 'two', { three: [null] }],
    { a: 1, nested: { b: [true, 'x'] }, skipped: undefined, f: () => 1 },
    new Date(0),
    { toJSON: (key: string) => `key ${key}` },
  ];
  const out: object[] = [];
  for (const v of contents) {
    out.push(new RpcCommand('echo', { text: v }).setFingerprint(fingerprint).body);
    out.push(new MessageCommand('do "it"', { v }).setFingerprint(fingerprint).body);
    out.push(new Message([v, 2], { k: v }).setFingerprint(fingerprint).body);
    out.push(new MessageResult(v).setFingerprint(fingerprint).body);
  }
  out.push(new Message().setFingerprint(fingerprint).body);
  out.push(new MessageStatus('started').setFingerprint(fingerprint).body);
  out.push(new MessageResultError('why').setFingerprint(fingerprint).body);
  const reserved = new RpcCommand('echo', {}).setFingerprint(fingerprint).body;
  reserved._reserved = { trace: 'x', n: [1] };
  out.push(reserved);
  return out;
}

describe('JsonEncoder#encode of an envelope', () => {
  it('gives the very bytes JSON.stringify gives the whole envelope, and takes the quick way for each', () => {
    const encoder = new JsonEncoder();
    const quick = new EnvelopeJson();
    for (const body of envelopes()) {
      expect(quick.encode(body), JSON.stringify(body)).to.not.equal(undefined);
      expect(quick.encode(body)?.toString('hex')).to.equal(whole(body).toString('hex'));
      expect(encoder.encode(body).toString('hex')).to.equal(whole(body).toString('hex'));
    }
  });

  it('follows a fingerprint that changes between sends: other values, another key, another order', () => {
    const encoder = new JsonEncoder();
    const fp = { ...fingerprint };
    const send = () => new RpcCommand('echo', { text: 'hi' }).setFingerprint(fp).body;
    const first = send();
    expect(encoder.encode(first).equals(whole(first))).to.equal(true);
    fp.name = 'renamed';
    const renamed = send();
    fp.tenant = 't1';
    const extra = send();
    const reordered = new RpcCommand('echo', { text: 'hi' }).body;
    reordered.fingerprint = { vhost: fp.vhost, name: fp.name };
    for (const body of [renamed, extra, reordered, first]) {
      expect(encoder.encode(body).toString(), JSON.stringify(body)).to.equal(whole(body).toString());
    }
    expect(JSON.parse(encoder.encode(extra).toString()).fingerprint.tenant).to.equal('t1');
  });

  it('leaves to JSON.stringify what is not a plain envelope, with the same bytes or the same error', () => {
    const quick = new EnvelopeJson();
    const body = () =>
      new RpcCommand('echo', { text: 'hi' }).setFingerprint(fingerprint).body as unknown as Record<string, unknown>;
    const others: unknown[] = [
      'a string',
      [1, 2],
      null,
      { ...body(), extra: 1 },
      { name: 'echo', ...body() },
      Object.assign(Object.create(null) as object, body()),
      { ...body(), name: 7 },
      { ...body(), fingerprint: { ...fingerprint, pid: 12 } },
      { ...body(), fingerprint: { toJSON: () => 'fp' } },
      { ...body(), content: { toJSON: (key: string) => key } },
      { ...body(), _reserved: { toJSON: (key: string) => key } },
      { ...body(), content: new Date(0) },
    ];
    for (const other of others) {
      expect(quick.encode(other), JSON.stringify(other)).to.equal(undefined);
      expect(new JsonEncoder().encode(other).equals(whole(other))).to.equal(true);
    }
    const cycle = body();
    (cycle.content as Record<string, unknown>).self = cycle;
    const big = { ...body(), content: { n: 10n } };
    for (const bad of [cycle, big]) {
      expect(quick.encode(bad)).to.equal(undefined);
      expect(() => new JsonEncoder().encode(bad)).to.throw(TypeError);
    }
  });

  it('keeps the bytes of an encrypted envelope the same (it encodes its sealed copy the quick way)', () => {
    const key = Buffer.alloc(32, 7).toString('base64');
    const encoder = new EncryptedJsonEncoder({ keys: { k1: key } });
    const body = new RpcCommand('echo', { text: 'secret' }).setFingerprint(fingerprint).body;
    const decoded = encoder.decode(encoder.encode(body)) as typeof body;
    expect(decoded).to.deep.equal(body);
  });
});
