/**
 * TLS against a private RabbitMQ node with a TLS listener that asks for a
 * client certificate, every certificate made here with openssl: a CA, the
 * broker's (naming `localhost` only), a client's (its key under a
 * passphrase), and a CA nobody trusts.
 */
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BrokerError,
  ConfigError,
  GenericProducer,
  MessageHandler,
  MessageProcessor,
  MicroScheduler,
  type MessageSender,
} from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import { deferred } from '../support/components.js';
import { PrivateBroker } from '../support/private-broker.js';

const quiet = makeLogger('silent');

/** A CA, and certificates it signs, in a temp folder (removed by `remove`). */
function makeCertificates() {
  const dir = mkdtempSync(join(tmpdir(), 'postage-tls-'));
  const at = (f: string) => join(dir, f);
  const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1'];
  const ca = (name: string) =>
    ssl(
      'req',
      '-x509',
      ...ec,
      '-nodes',
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.pem`,
      '-days',
      '2',
      '-subj',
      `/CN=postage spec ${name}`,
    );
  const signed = (name: string, cn: string, ext: string, keyArgs: string[]) => {
    ssl('req', ...ec, ...keyArgs, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`);
    writeFileSync(at(`${name}.ext`), ext);
    ssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      `${name}.pem`,
      '-days',
      '2',
      '-extfile',
      `${name}.ext`,
    );
  };
  ca('ca');
  ca('stranger');
  signed('server', 'localhost', 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n', ['-nodes']);
  signed('client', 'postage-spec-client', 'extendedKeyUsage=clientAuth\n', ['-passout', 'pass:s3cret-phrase']);
  return {
    dir,
    at,
    read: (f: string) => readFileSync(at(f)),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

describe('TLS (amqps://)', function () {
  this.timeout(120_000);
  let broker: PrivateBroker;
  let certs: ReturnType<typeof makeCertificates>;
  let tlsPort: number;

  before(async () => {
    certs = makeCertificates();
    const port = 6000 + Math.floor(Math.random() * 90);
    tlsPort = port + 100;
    broker = await PrivateBroker.start(port, {
      files: {
        'ca.pem': certs.read('ca.pem'),
        'server.pem': certs.read('server.pem'),
        'server.key': certs.read('server.key'),
      },
      config: (dir) =>
        [
          `listeners.ssl.1 = 127.0.0.1:${tlsPort}`,
          `ssl_options.cacertfile = ${dir}/ca.pem`,
          `ssl_options.certfile = ${dir}/server.pem`,
          `ssl_options.keyfile = ${dir}/server.key`,
          'ssl_options.verify = verify_peer',
          'ssl_options.fail_if_no_peer_cert = true',
          '',
        ].join('\n'),
    });
  });
  after(async () => {
    await broker?.destroy();
    certs?.remove();
  });

  const url = () => `amqps://guest:guest@localhost:${tlsPort}/%2F`;
  const client = () => ({
    ca: certs.at('ca.pem'),
    cert: certs.at('client.pem'),
    key: certs.at('client.key'),
    passphrase: 's3cret-phrase',
  });

  class Sender extends GenericProducer {
    static override eks = [[{ name: 'tls-ex', type: 'direct' }, 'k'] as const];
    declare message_job: MessageSender;
  }

  async function refusal(tls: Parameters<typeof Sender.create>[0]): Promise<BrokerError> {
    const err = await Sender.create({ logger: quiet, waitForBrokerMs: 0, ...tls }).then(
      async (p) => {
        await p.close();
        return undefined;
      },
      (e: unknown) => e,
    );
    expect(err, 'a refusal').to.be.instanceOf(BrokerError);
    return err as BrokerError;
  }

  it('connects with the right CA and a client certificate, and messages go both ways', async () => {
    const got = deferred<number>();
    class Worker extends MessageProcessor {
      @MessageHandler('command', 'job')
      job(c: { parameters: { n: number } }) {
        got.resolve(c.parameters.n);
      }
    }
    const w = new Worker({
      url: url(),
      tls: client(),
      logger: quiet,
      handleSignals: false,
      eqk: [[{ name: 'tls-ex', type: 'direct' }, [['tls-q', 'k']]]],
    });
    await w.ready();
    const s = new MicroScheduler();
    s.addMicrothread(w);
    const running = s.run();
    const p = await Sender.create({ url: url(), tls: client(), logger: quiet });
    try {
      await p.message_job({ n: 42 });
      expect(await got.promise).to.equal(42);
    } finally {
      await p.close();
      s.stop();
      await running;
    }
  });

  it('refuses a broker whose certificate a CA it does not trust signed, with a TLS error naming POSTAGE_TLS_CA', async () => {
    const err = await refusal({ url: url(), tls: { ...client(), ca: certs.at('stranger.pem') } });
    expect(err.code).to.equal('TLS');
    expect(err.message).to.match(/not trusted .*POSTAGE_TLS_CA/);
  });

  it('checks the name: a certificate for localhost does not do for 127.0.0.1', async () => {
    const err = await refusal({ url: `amqps://guest:guest@127.0.0.1:${tlsPort}/%2F`, tls: client() });
    expect(err.code).to.equal('TLS');
    expect(err.message).to.match(/does not name the host .*POSTAGE_TLS_SERVERNAME/);
  });

  it('is refused without a client certificate where the node asks for one, with a TLS error naming POSTAGE_TLS_CERT', async () => {
    const err = await refusal({ url: url(), tls: { ca: certs.at('ca.pem') } });
    expect(err.code).to.equal('TLS');
    expect(err.message).to.match(/client certificate.*POSTAGE_TLS_CERT/);
  });

  it('says when the client key cannot be decrypted', async () => {
    const err = await refusal({ url: url(), tls: { ...client(), passphrase: 'wrong' } });
    expect(err.code).to.equal('TLS');
    expect(err.message).to.match(/POSTAGE_TLS_PASSPHRASE/);
    expect(err.message).to.not.contain('wrong');
  });

  it('takes everything from POSTAGE_TLS and POSTAGE_TLS_* variables', async () => {
    const saved = { ...process.env };
    Object.assign(process.env, {
      POSTAGE_TLS: 'true',
      POSTAGE_HOST: 'localhost',
      POSTAGE_PORT: String(tlsPort),
      POSTAGE_VHOST: '/',
      POSTAGE_USER: 'guest',
      POSTAGE_PASSWORD: 'guest',
      POSTAGE_TLS_CA: certs.at('ca.pem'),
      POSTAGE_TLS_CERT: certs.at('client.pem'),
      POSTAGE_TLS_KEY: certs.at('client.key'),
      POSTAGE_TLS_PASSPHRASE: 's3cret-phrase',
    });
    delete process.env.POSTAGE_URL;
    try {
      const p = await Sender.create({ logger: quiet });
      await p.close();
      process.env.POSTAGE_TLS_CA = join(certs.dir, 'missing.pem');
      const err = await Sender.create({ logger: quiet, waitForBrokerMs: 0 }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).to.be.instanceOf(ConfigError);
      expect((err as ConfigError).variable).to.equal('POSTAGE_TLS_CA');
    } finally {
      for (const k of Object.keys(process.env)) if (k.startsWith('POSTAGE_')) delete process.env[k];
      Object.assign(process.env, saved);
    }
  });

  it('refuses tls options with an amqp:// URL', async () => {
    const err = await Sender.create({
      url: `amqp://guest:guest@localhost:${broker.port}/%2F`,
      tls: client(),
      logger: quiet,
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(ConfigError);
    expect((err as Error).message).to.match(/tls option needs amqps:\/\//);
  });
});
