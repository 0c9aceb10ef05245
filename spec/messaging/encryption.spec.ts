import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import {
  ConfigError,
  EncryptedJsonEncoder,
  GenericProducer,
  MessageHandler,
  MessageProcessor,
  RpcHandler,
  type MessageSender,
  type RpcSender,
} from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import { defaultEncoder } from '../../lib/envelope/encryption.js';
import { capture } from '../support/log.js';
import { deferred, exchangeFixture } from '../support/components.js';
import { deleteTopology, getOne, publishRaw, unique } from '../support/topology.js';

const quiet = makeLogger('silent');
const k1 = randomBytes(32);
const k2 = randomBytes(32);

describe('EncryptedJsonEncoder', function () {
  this.timeout(20_000);
  const f = exchangeFixture('crypt');

  async function sender(encoder: EncryptedJsonEncoder) {
    const exchange = f.ex;
    class Secret extends GenericProducer {
      static override eks = [[exchange, 'k'] as const];
      declare message_pay: MessageSender;
      declare rpc_balance: RpcSender;
    }
    const p = await Secret.create({ url: f.url, encoder });
    f.h.onClose(() => p.close());
    return p;
  }

  it('hands the receiver with the key the content the sender sealed', async () => {
    const got = deferred<unknown>();
    class Payments extends MessageProcessor {
      @MessageHandler('command', 'pay')
      pay(content: unknown) {
        got.resolve(content);
      }
    }
    const enc = new EncryptedJsonEncoder({ keys: { k1 } });
    await f.h.start(new Payments({ url: f.url, logger: quiet, encoder: enc, eqk: [[f.ex, [[f.queue, 'k']]]] }));
    const p = await sender(new EncryptedJsonEncoder({ keys: { k1 } }));
    await p.message_pay({ card: '4111 1111 1111 1111' });
    expect(await got.promise).to.deep.equal({ parameters: { card: '4111 1111 1111 1111' } });
  });

  it('shows the broker nothing of the content, only the envelope', async () => {
    const tap = unique('crypt-tap');
    f.h.onClose(() => deleteTopology([tap]));
    // A queue on the same key, never consumed: what the broker holds, byte for byte.
    class Tap extends MessageProcessor {}
    const t = new Tap({ url: f.url, logger: quiet, handleSignals: false, eqk: [[f.ex, [[tap, 'k']]]] });
    await t.consumer.ready();
    f.h.onClose(() => t.close());
    const p = await sender(new EncryptedJsonEncoder({ keys: { k1 } }));
    await p.message_pay({ card: '4111 1111 1111 1111' });
    const raw = await getOne(tap);
    const text = raw ? raw.content.toString() : '';
    expect(text).to.not.contain('4111');
    const env = JSON.parse(text) as {
      type: string;
      name: string;
      fingerprint: { name: string };
      content: { $encrypted: { alg: string; kid: string } };
    };
    expect(env).to.include({ type: 'command', name: 'pay' });
    expect(env.fingerprint.name).to.equal('Secret');
    expect(env.content.$encrypted).to.include({ alg: 'A256GCM', kid: 'k1' });
  });

  it('answers an RPC in kind, and reads messages under any of its keys (rotation)', async () => {
    class Bank extends MessageProcessor {
      @RpcHandler('command', 'balance')
      balance() {
        return 1234;
      }
    }
    await f.h.start(
      new Bank({
        url: f.url,
        logger: quiet,
        encoder: new EncryptedJsonEncoder({ keys: { k1, k2 } }),
        eqk: [[f.ex, [[f.queue, 'k']]]],
      }),
    );
    // The sender has moved to k2; the bank still knows k1 and already knows k2.
    const p = await sender(new EncryptedJsonEncoder({ keys: { k2, k1 } }));
    const r = await p.rpc_balance({}, { _timeout: 10, _max_retry: 0 });
    expect(r.body.content.value).to.equal(1234);
  });

  for (const [what, send, reason] of [
    [
      'a key it does not have',
      async (p: Awaited<ReturnType<typeof sender>>) => p.message_pay({}),
      /encrypted with key 'k2', which this component does not have/,
    ],
    [
      'a tampered content',
      async () => {
        const enc = new EncryptedJsonEncoder({ keys: { k1 } });
        const env = JSON.parse(
          enc
            .encode({
              type: 'command',
              name: 'pay',
              category: 'message',
              version: '2',
              fingerprint: {},
              content: { parameters: { amount: 10 } },
              _reserved: {},
            })
            .toString(),
        );
        // The same sealed content, moved to an envelope of another name.
        env.name = 'refund';
        await publishRaw(f.ex.name, 'k', Buffer.from(JSON.stringify(env)));
      },
      /fails authentication under key 'k1'/,
    ],
    [
      'an unencrypted message',
      async () =>
        publishRaw(
          f.ex.name,
          'k',
          Buffer.from(
            JSON.stringify({
              type: 'command',
              name: 'pay',
              category: 'message',
              version: '2',
              fingerprint: {},
              content: {},
              _reserved: {},
            }),
          ),
        ),
      /not encrypted/,
    ],
  ] as const) {
    it(`rejects ${what} without handling it, and says why`, async () => {
      let handled = 0;
      class Payments extends MessageProcessor {
        @MessageHandler('command', 'pay')
        pay() {
          handled++;
        }
        @MessageHandler('command', 'refund')
        refund() {
          handled++;
        }
      }
      const log = capture();
      await f.h.start(
        new Payments({
          url: f.url,
          logger: log.logger,
          encoder: new EncryptedJsonEncoder({ keys: { k1 } }),
          eqk: [[f.ex, [[f.queue, 'k']]]],
        }),
      );
      await send(await sender(new EncryptedJsonEncoder({ keys: { k2 } })));
      const line = JSON.parse(await log.when(/malformed message rejected/)) as { reason: string };
      expect(line.reason).to.match(reason);
      expect(handled).to.equal(0);
    });
  }

  it('is refused by a component without keys: its plain decoder rejects the sealed content as malformed, and no handler takes it for the content', async () => {
    let handled = 0;
    class Keyless extends MessageProcessor {
      @MessageHandler('command', 'pay')
      pay() {
        handled++;
      }
    }
    const log = capture();
    const p = new Keyless({ url: f.url, logger: log.logger, eqk: [[f.ex, [[f.queue, 'k']]]] });
    const ended = deferred<string>();
    p.observe((e) => ended.resolve(e.outcome));
    await f.h.start(p);
    await (await sender(new EncryptedJsonEncoder({ keys: { k1 } }))).message_pay({ amount: 10 });
    const line = JSON.parse(await log.when(/malformed message rejected/)) as { reason: string };
    expect(line.reason).to.match(/encrypted \(\$encrypted\), and this component has no keys/);
    expect(await ended.promise).to.equal('rejected');
    expect(handled).to.equal(0);
  });

  it('takes a key only as 32 bytes: a Buffer, 64 hex characters or canonical base64, never text that merely decodes to 32 bytes', () => {
    expect(() => new EncryptedJsonEncoder({ keys: { a: k1.toString('base64') } })).to.not.throw();
    expect(() => new EncryptedJsonEncoder({ keys: { a: k1.toString('hex') } })).to.not.throw();
    for (const [what, key] of [
      ['trailing junk', `${k1.toString('base64')}!!`],
      ['a space after it', `${k1.toString('base64')} `],
      ['base64url', k1.toString('base64url')],
      ['a 31-byte Buffer', k1.subarray(1)],
      ['a passphrase that decodes', 'correct horse battery staple, then more!!!!'],
    ] as const) {
      expect(() => new EncryptedJsonEncoder({ keys: { a: key } }), what).to.throw(ConfigError, /key 'a'/);
    }
  });

  it('refuses a key id given twice in POSTAGE_ENCRYPTION_KEYS, naming the id and not the keys', () => {
    const saved = process.env.POSTAGE_ENCRYPTION_KEYS;
    try {
      process.env.POSTAGE_ENCRYPTION_KEYS = `k=${k1.toString('base64')},k=${k2.toString('base64')}`;
      expect(() => defaultEncoder())
        .to.throw(ConfigError, /key id 'k' is given twice/)
        .that.satisfies(
          (e: Error) => !e.message.includes(k1.toString('base64')) && !e.message.includes(k2.toString('base64')),
        );
    } finally {
      if (saved === undefined) delete process.env.POSTAGE_ENCRYPTION_KEYS;
      else process.env.POSTAGE_ENCRYPTION_KEYS = saved;
    }
  });

  it('is what components use when POSTAGE_ENCRYPTION_KEYS holds keys, and a bad key is a ConfigError that never quotes it', () => {
    const saved = process.env.POSTAGE_ENCRYPTION_KEYS;
    try {
      process.env.POSTAGE_ENCRYPTION_KEYS = `new=${k2.toString('base64')},old=${k1.toString('hex')}`;
      const enc = defaultEncoder();
      expect(enc).to.be.instanceOf(EncryptedJsonEncoder);
      const sealed = JSON.parse(
        enc.encode({ type: 'command', name: 'x', category: 'message', content: { a: 1 } }).toString(),
      );
      expect(sealed.content.$encrypted.kid).to.equal('new');
      process.env.POSTAGE_ENCRYPTION_KEYS = 'short=c2VjcmV0';
      expect(() => defaultEncoder())
        .to.throw(ConfigError, /key 'short' is not 32 bytes/)
        .that.satisfies((e: Error) => !e.message.includes('c2VjcmV0'));
    } finally {
      if (saved === undefined) delete process.env.POSTAGE_ENCRYPTION_KEYS;
      else process.env.POSTAGE_ENCRYPTION_KEYS = saved;
    }
  });
});
