import { ENVELOPE_KEYS } from '../support/envelopes.js';
import { expect } from 'chai';
import {
  Encoder,
  Fingerprint,
  JsonEncoder,
  MalformedMessage,
  Message,
  MessageCommand,
  MessageResult,
  MessageResultError,
  MessageResultException,
  MessageStatus,
  RpcCommand,
} from '../../lib/index.js';

const fpKwds = {
  name: 'test_name',
  type: 'test_type',
  pid: '1234',
  host: 'test_host',
  user: 'test_user',
  vhost: 'test_vhost',
};
const testFingerprint = () =>
  new Fingerprint(fpKwds.name, fpKwds.type, { pid: 1234, host: 'test_host', user: 'test_user', vhost: 'test_vhost' });

describe('Fingerprint', () => {
  it('gives its dictionary representation', () => {
    expect(testFingerprint().asDict()).to.deep.equal(fpKwds);
  });

  it('gives its tuple representation', () => {
    expect(testFingerprint().asTuple()).to.deep.equal([
      'test_name',
      'test_type',
      '1234',
      'test_host',
      'test_user',
      'test_vhost',
    ]);
  });

  it('fills pid, host, user and vhost from the OS and configuration', () => {
    const d = new Fingerprint('echo_receive', 'controller').asDict();
    expect(d.pid).to.equal(String(process.pid));
    expect(d.host).to.be.a('string').and.not.empty;
    expect(d.user).to.be.a('string').and.not.empty;
    expect(d.vhost).to.equal(process.env.POSTAGE_VHOST ?? '/');
  });
});

describe('Encoder', () => {
  it('returns the same data after encoding and decoding', () => {
    const s = { string: 'a simple test dictionary', number: 4 };
    const e = new Encoder();
    expect(e.decode(e.encode(s))).to.deep.equal(s);
  });
});

describe('JsonEncoder', () => {
  const e = new JsonEncoder();

  it('returns the same data after encoding and decoding', () => {
    const s = { string: 'a simple test dictionary', number: 4 };
    expect(e.encode(s)).to.be.instanceOf(Buffer);
    expect(e.decode(e.encode(s))).to.deep.equal(s);
  });

  it("has content type 'application/json'", () => {
    expect(e.contentType).to.equal('application/json');
  });

  it('refuses a body over the size limit, naming both sizes', () => {
    const small = new JsonEncoder({ maxBytes: 10 });
    expect(() => small.decode(Buffer.from('{"a":"0123456789"}'))).to.throw(
      MalformedMessage,
      /18 bytes, over the limit of 10/,
    );
  });

  it('refuses non-JSON with MalformedMessage', () => {
    expect(() => e.decode(Buffer.from('not json'))).to.throw(MalformedMessage, /not valid JSON/);
  });

  it('drops __proto__, constructor and prototype keys however they are spelled, JSON escapes included', () => {
    const text =
      '{"a":{"\\u005f_proto__":{"polluted":true}},"b":{"constr\\u0075ctor":{"x":1}},' +
      '"c":{"prot\\u006ftype":{"y":2}},"ok":"caf\\u00e9"}';
    const decoded = e.decode(Buffer.from(text)) as Record<string, Record<string, unknown>>;
    for (const k of ['a', 'b', 'c']) expect(Object.keys(decoded[k]), k).to.deep.equal([]);
    expect(Object.hasOwn(decoded.a, '__proto__')).to.equal(false);
    expect(decoded.ok).to.equal('café');
    // A naive merge of what was decoded pollutes nothing.
    const target: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(decoded.a)) target[k] = v;
    Object.assign({}, decoded.a);
    expect(({} as Record<string, unknown>).polluted).to.equal(undefined);
  });

  it('never lets __proto__ or constructor keys reach a prototype', () => {
    const decoded = e.decode(
      Buffer.from('{"a":{"__proto__":{"polluted":true}},"constructor":{"prototype":{"polluted":true}}}'),
    ) as Record<string, object>;
    const merged = Object.assign({}, decoded.a);
    expect((merged as Record<string, unknown>).polluted).to.equal(undefined);
    expect(({} as Record<string, unknown>).polluted).to.equal(undefined);
    expect(Object.keys(decoded)).to.deep.equal(['a']);
    expect(Object.getPrototypeOf(decoded.a)).to.equal(Object.prototype);
  });
});

type Case = {
  label: string;
  make: () => Message<object>;
  type: string;
  category: string;
  ok: boolean;
  content?: object;
  name?: string;
};
const cases: Case[] = [
  { label: 'Message', make: () => new Message(), type: 'none', category: 'message', ok: true, content: {} },
  {
    label: 'MessageCommand',
    make: () => new MessageCommand('test_command'),
    type: 'command',
    category: 'message',
    ok: true,
    content: { parameters: {} },
    name: 'test_command',
  },
  {
    label: 'RpcCommand',
    make: () => new RpcCommand('test_command'),
    type: 'command',
    category: 'rpc',
    ok: true,
    content: { parameters: {} },
    name: 'test_command',
  },
  {
    label: 'MessageStatus',
    make: () => new MessageStatus('test_status'),
    type: 'status',
    category: 'message',
    ok: true,
    content: {},
    name: 'test_status',
  },
  {
    label: 'MessageResult',
    make: () => new MessageResult('test_value', 'test_message'),
    type: 'result',
    category: 'message',
    ok: true,
    content: { type: 'success', value: 'test_value', message: 'test_message' },
  },
  {
    label: 'MessageResultError',
    make: () => new MessageResultError('test_message'),
    type: 'result',
    category: 'message',
    ok: false,
    content: { type: 'error', value: null, message: 'test_message' },
  },
  {
    label: 'MessageResultException',
    make: () => new MessageResultException('test_name', 'test_message'),
    type: 'result',
    category: 'message',
    ok: false,
    content: { type: 'exception', value: 'test_name', message: 'test_message' },
  },
];

for (const c of cases) {
  describe(c.label, () => {
    it(`has type '${c.type}' and category '${c.category}'`, () => {
      const m = c.make();
      expect(m.type).to.equal(c.type);
      expect(m.category).to.equal(c.category);
      expect(m.body.type).to.equal(c.type);
      expect(m.body.category).to.equal(c.category);
    });

    it(`is ${c.ok ? 'ok' : 'not ok'} (Postage's boolean value)`, () => {
      expect(c.make().ok).to.equal(c.ok);
    });

    it('has the content Postage gives it', () => {
      expect(c.make().body.content).to.deep.equal(c.content);
      if (c.name) expect(c.make().body.name).to.equal(c.name);
    });

    it("has exactly Postage's body keys, in Postage's order, with version '2'", () => {
      const b = c.make().body;
      expect(Object.keys(b)).to.deep.equal(ENVELOPE_KEYS);
      expect(b.version).to.equal('2');
    });

    it('comes back as the same class, equal, from its body', () => {
      const m = c.make();
      const back = Message.fromBody(JSON.parse(JSON.stringify(m.body)));
      expect(back.constructor).to.equal(m.constructor);
      expect(back.equals(m)).to.equal(true);
      expect(back.ok).to.equal(c.ok);
    });
  });
}

describe('Message', () => {
  it('is equal to another message with the same body', () => {
    const a = new Message([1, 2, 3]);
    const b = new Message([1, 2, 3]);
    expect(a).to.not.equal(b);
    expect(a.equals(b)).to.equal(true);
    expect(a.equals(new Message([1, 2]))).to.equal(false);
  });

  it('carries args and kwds in its content', () => {
    expect(new Message([1, 2, 'str'], { name: 'a_name' }).body.content).to.deep.equal({
      args: [1, 2, 'str'],
      kwds: { name: 'a_name' },
    });
  });

  it('merges setFingerprint() into body.fingerprint', () => {
    const m = new MessageCommand('x');
    m.setFingerprint({ name: 'a' });
    m.setFingerprint({ host: 'h' });
    expect(m.body.fingerprint).to.deep.equal({ name: 'a', host: 'h' });
  });

  describe('fromBody', () => {
    const good = () => JSON.parse(JSON.stringify(new MessageCommand('x', { a: 1 }).body));
    const bad: Array<[string, unknown, RegExp]> = [
      ['a string', 'hello', /a string, not an object/],
      ['an array', [1], /an array/],
      ['null', null, /null/],
      ['no version', { ...good(), version: undefined }, /version/],
      ['version 1', { ...good(), version: '1' }, /version "1" is not supported/],
      ['a numeric version', { ...good(), version: 2 }, /version 2 is not supported/],
      ['no type', { ...good(), type: undefined }, /"type" is missing/],
      ['a numeric name', { ...good(), name: 3 }, /"name" is not a string/],
      ['a bad category', { ...good(), category: 'email' }, /"category" is "email"/],
      ['no content', { ...good(), content: undefined }, /"content" is missing/],
      ['a list fingerprint', { ...good(), fingerprint: [] }, /"fingerprint" is not an object/],
      [
        'an unknown result type',
        { ...new MessageResult(1).body, content: { type: 'maybe', value: 1, message: '' } },
        /result content type "maybe"/,
      ],
    ];
    for (const [what, body, reason] of bad) {
      it(`throws MalformedMessage naming the reason for ${what}`, () => {
        let err: unknown;
        try {
          Message.fromBody(JSON.parse(JSON.stringify(body ?? null)) ?? body);
        } catch (e) {
          err = e;
        }
        expect(err).to.be.instanceOf(MalformedMessage);
        expect((err as MalformedMessage).reason).to.match(reason);
      });
    }

    it('keeps an unknown message type as a plain Message with its body', () => {
      const body = { ...good(), type: 'logging', name: 'line' };
      const m = Message.fromBody(body);
      expect(m.constructor).to.equal(Message);
      expect(m.type).to.equal('logging');
    });
  });
});
