import { expect } from 'chai';
import amqp from 'amqplib';
import net from 'node:net';
import { BrokerError, ConfigError, Fingerprint, GenericProducer, MessageProcessor } from '../../lib/index.js';
import { openConnection } from '../../lib/transport/connection.js';
import { brokerUrl } from '../support/broker.js';

async function failure(p: Promise<unknown>): Promise<BrokerError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, 'the connection should have failed').to.be.instanceOf(BrokerError);
  return err as BrokerError;
}

/** A TCP server on a free loopback port that runs `onSocket` for each connection. */
async function fakeServer(onSocket: (s: net.Socket) => void): Promise<{ port: number; close: () => void }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    onSocket(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

describe('openConnection', () => {
  let url: URL;
  before(async () => {
    url = new URL(await brokerUrl());
  });

  it('refuses a virtual host that does not exist with VHOST_REFUSED, naming it and the command that creates it', async () => {
    const u = new URL(url);
    u.pathname = '/spec-no-such-vhost';
    const err = await failure(openConnection({ url: u.toString() }));
    expect(err.code).to.equal('VHOST_REFUSED');
    expect(err.amqpCode).to.equal(530);
    expect(err.message)
      .to.contain("'spec-no-such-vhost'")
      .and.contain('rabbitmqctl add_vhost spec-no-such-vhost')
      .and.contain('set_permissions -p spec-no-such-vhost');
    expect(err.message).to.contain('not found');
  });

  it('refuses wrong credentials with ACCESS_REFUSED from the reply code, never quoting the password', async () => {
    const u = new URL(url);
    u.password = 'P@ss,word-nobody-has';
    const err = await failure(openConnection({ url: u.toString() }));
    expect(err.code).to.equal('ACCESS_REFUSED');
    expect(err.amqpCode).to.equal(403);
    expect(err.message).to.contain('POSTAGE_PASSWORD').and.not.contain('nobody-has');
  });

  it('reports a port where nothing listens as UNREACHABLE with the socket code', async () => {
    const free = await fakeServer(() => undefined);
    free.close();
    const u = new URL(url);
    u.hostname = '127.0.0.1';
    u.port = String(free.port);
    const err = await failure(openConnection({ url: u.toString() }));
    expect(err.code).to.equal('UNREACHABLE');
    expect(err.message).to.contain('ECONNREFUSED').and.contain('POSTAGE_PORT');
  });

  it('reports a port that accepts and never speaks as UNREACHABLE after the connect timeout, asking whether it is the AMQP port', async () => {
    const silent = await fakeServer(() => undefined);
    try {
      const started = Date.now();
      const err = await failure(
        openConnection({ url: `amqp://guest:guest@127.0.0.1:${silent.port}/`, connectTimeoutMs: 300 }),
      );
      expect(err.code).to.equal('UNREACHABLE');
      expect(err.message).to.contain('did not speak AMQP within 0.3 s');
      expect(Date.now() - started).to.be.below(5000);
    } finally {
      silent.close();
    }
  });

  it('reports a port that speaks another protocol as CONNECT_FAILED, asking whether it is the AMQP port', async () => {
    const http = await fakeServer((s) => s.end('HTTP/1.1 400 Bad Request\r\n\r\n'));
    try {
      const err = await failure(openConnection({ url: `amqp://guest:guest@127.0.0.1:${http.port}/` }));
      expect(err.code).to.equal('CONNECT_FAILED');
      expect(err.message).to.contain('AMQP port');
    } finally {
      http.close();
    }
  });

  it('gives producers and processors the same VHOST_REFUSED', async () => {
    const u = new URL(url);
    u.pathname = '/spec-no-such-vhost';
    const producerErr = await failure(GenericProducer.create({ url: u.toString() }));
    const processorErr = await failure(new MessageProcessor({ url: u.toString(), eqk: [] }).ready());
    expect(producerErr.code).to.equal('VHOST_REFUSED');
    expect(processorErr.code).to.equal('VHOST_REFUSED');
  });

  it('reports a shared connection with no channel left as a BrokerError CHANNELS_EXHAUSTED with a hint, not a plain Error', async () => {
    const u = new URL(url);
    u.searchParams.set('channelMax', '2');
    const shared = await amqp.connect(u.toString());
    try {
      const producer = await GenericProducer.create({ connection: shared });
      const processor = new MessageProcessor({
        connection: shared,
        eqk: [[{ name: 'amq.direct', type: 'direct', passive: true }, [['', 'k']]]],
      });
      const err = await failure(processor.ready());
      expect(err.code).to.equal('CHANNELS_EXHAUSTED');
      expect(err.message).to.contain('all 2 are open').and.contain('connection of their own');
      await processor.close();
      await producer.close();
    } finally {
      await shared.close();
    }
  });

  it('refuses a malformed url option with a ConfigError naming the option, never quoting the password', async () => {
    for (const bad of ['localhost:5672', 'amqp://', 'amqp://us%er:s3cret-%zz@host', 'http://guest:s3cret@host/']) {
      const err = await openConnection({ url: bad }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err, bad).to.be.instanceOf(ConfigError);
      expect((err as ConfigError).variable).to.equal('url');
      expect((err as Error).message, bad)
        .to.match(/^url: /)
        .and.contain('Fix the url option')
        .and.not.contain('s3cret');
    }
  });

  it('negotiates a 10 s heartbeat unless told otherwise, so a silent connection is noticed within 30 s', async () => {
    const quiet = await openConnection({ url: url.toString() });
    const chosen = await openConnection({ url: url.toString(), heartbeat: 3 });
    try {
      const heartbeatOf = (m: amqp.ChannelModel) => (m.connection as unknown as { heartbeat: number }).heartbeat;
      expect(heartbeatOf(quiet)).to.equal(10);
      expect(heartbeatOf(chosen)).to.equal(3);
    } finally {
      await quiet.close();
      await chosen.close();
    }
  });
});

describe('configuration', () => {
  it('is read when a component is created, not frozen when the library was first used', async () => {
    const names = ['POSTAGE_VHOST', 'POSTAGE_URL', 'POSTAGE_HOST', 'POSTAGE_PORT'] as const;
    const saved = names.map((k) => [k, process.env[k]] as const);
    const base = new URL(await brokerUrl());
    try {
      delete process.env.POSTAGE_URL;
      process.env.POSTAGE_VHOST = 'spec-set-after-import';
      expect(new Fingerprint('late', 'test').vhost).to.equal('spec-set-after-import');
      process.env.POSTAGE_HOST = base.hostname;
      process.env.POSTAGE_PORT = base.port || '5672';
      const err = await GenericProducer.create().then(
        (p) => p.close(),
        (e: unknown) => e,
      );
      expect((err as { code?: string }).code).to.equal('VHOST_REFUSED');
      expect((err as Error).message).to.contain("'spec-set-after-import'");
    } finally {
      for (const [k, v] of saved) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });
});
