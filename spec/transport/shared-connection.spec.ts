/**
 * One managed connection shared by many components (`connect()`): it
 * reconnects, sets every component on it up again, reports where it stands,
 * and closes what is on it. And a component whose first step fails leaves
 * nothing open.
 */
import { expect } from 'chai';
import amqp from 'amqplib';
import { spawn } from 'node:child_process';
import net from 'node:net';
import {
  connect,
  GenericProducer,
  MessageHandler,
  MessageProcessor,
  MicroScheduler,
  type Connection,
  type ConnectionStatus,
  type MessageSender,
} from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import { brokerUrl, closeConnectionsNamed } from '../support/broker.js';
import { openChannelCount } from '../../lib/transport/amqplib-adapter.js';
import { deferred } from '../support/components.js';
import { deleteTopology, unique } from '../support/topology.js';
import { within } from '../support/wait.js';

const quiet = makeLogger('silent');

/** Collects a connection's statuses from now on. */
function follow(conn: Connection): ConnectionStatus['state'][] {
  const seen: ConnectionStatus['state'][] = [];
  void (async () => {
    for await (const s of conn.statusChanges()) seen.push(s.state);
  })();
  return seen;
}

/** Resolves once `conn` reports `state`; rejects after 30 s. */
function reaches(conn: Connection, state: ConnectionStatus['state']): Promise<void> {
  const reported = (async () => {
    if (conn.status.state === state) return;
    for await (const s of conn.statusChanges()) if (s.state === state) return;
  })();
  return within(reported, { timeout: 30_000, message: `the connection reporting ${state}` });
}

describe('connect() (a shared, managed connection)', function () {
  this.timeout(120_000);
  let url: string;
  before(async () => {
    url = await brokerUrl();
  });

  it('keeps 50 processors and 2 producers serving across two connection losses: every confirmed message is handled, and its status goes ready → reconnecting → ready', async () => {
    const name = unique('shared-conn');
    const conn = await connect({ url, connectionName: name, logger: quiet, reconnect: { initialMs: 50, maxMs: 500 } });
    const statuses = follow(conn);
    const ex = { name: unique('shared-ex'), type: 'direct', durable: false } as const;
    const PROCESSORS = 50;
    const N = 5000;
    const handled = new Set<number>();
    const byProcessor = new Map<number, number>();
    const all = deferred();
    class Worker extends MessageProcessor {
      constructor(readonly index: number) {
        super({
          connection: conn,
          logger: quiet,
          handleSignals: false,
          eqk: [[ex, [[`${ex.name}-q${index}`, `k${index}`]]]],
        });
      }
      @MessageHandler('command', 'job')
      job(c: { parameters: { n: number } }) {
        handled.add(c.parameters.n);
        byProcessor.set(this.index, (byProcessor.get(this.index) ?? 0) + 1);
        if (handled.size === N) all.resolve();
      }
    }
    const scheduler = new MicroScheduler({ name: 'shared' });
    const workers = Array.from({ length: PROCESSORS }, (_, i) => new Worker(i));
    for (const w of workers) {
      await w.ready();
      scheduler.addMicrothread(w);
    }
    const running = scheduler.run();
    class Jobs extends GenericProducer {
      static override eks = [[ex, 'k0'] as const];
      declare message_job: MessageSender;
    }
    const producers = [
      await Jobs.create({ connection: conn, logger: quiet, whileDisconnected: 'buffer' }),
      await Jobs.create({ connection: conn, logger: quiet, whileDisconnected: 'buffer' }),
    ];
    try {
      const confirmed = new Set<number>();
      const sends: Array<Promise<void>> = [];
      for (let n = 0; n < N; n++) {
        const p = producers[n % 2];
        sends.push(
          p.message_job({ n }, { _key: `k${n % PROCESSORS}` }).then(
            () => void confirmed.add(n),
            () => undefined,
          ),
        );
        if (n === 1500 || n === 3500) {
          // The broker closes the shared connection (an operator, a node going away) while sends are in flight.
          expect(await closeConnectionsNamed(name)).to.equal(1);
          await reaches(conn, 'reconnecting');
        }
        if (n % 250 === 0) await Promise.all(sends.splice(0));
      }
      await Promise.all(sends);
      await reaches(conn, 'ready');
      // Buffered sends are published again on the new connection: every one of them is confirmed.
      expect(confirmed.size).to.equal(N);
      await all.promise;
      expect([...confirmed].filter((n) => !handled.has(n))).to.deep.equal([]);
      // Every processor still serves: one more message each, handled.
      const again = new Set<number>();
      const served = deferred();
      for (const w of workers)
        w.observe(() => {
          again.add(w.index);
          if (again.size === PROCESSORS) served.resolve();
        });
      for (let i = 0; i < PROCESSORS; i++) await producers[0].message_job({ n: N + i }, { _key: `k${i}` });
      await served.promise;
      expect(statuses.filter((s, i) => s !== statuses[i - 1])).to.include.ordered.members([
        'reconnecting',
        'ready',
        'reconnecting',
        'ready',
      ]);
      expect(conn.status.state).to.equal('ready');
      expect(workers.every((w) => w.status.state === 'ready')).to.equal(true);
    } finally {
      // Closing the connection closes what is on it: the processors (drained) and the producers.
      await conn.close();
      expect(conn.status.state).to.equal('closed');
      expect(workers.every((w) => w.status.state === 'closed')).to.equal(true);
      scheduler.stop();
      await running;
      await deleteTopology(
        workers.map((w) => `${ex.name}-q${w.index}`),
        [ex.name],
      ).catch(() => undefined);
    }
  });

  it('reports a component it cannot set up again as restoreFailed, tries again with backoff, and serves once the cause is gone', async () => {
    const name = unique('shared-restore');
    const conn = await connect({ url, connectionName: name, logger: quiet, reconnect: { initialMs: 50, maxMs: 200 } });
    const ex = { name: unique('restore-ex'), type: 'direct', durable: false } as const;
    const queue = unique('restore-q');
    const got = deferred();
    class Sink extends MessageProcessor {
      @MessageHandler('command', 'job')
      job() {
        got.resolve();
      }
    }
    const sink = new Sink({ connection: conn, logger: quiet, handleSignals: false, eqk: [[ex, [[queue, 'k']]]] });
    const scheduler = new MicroScheduler({ name: 'restore' });
    await sink.ready();
    scheduler.addMicrothread(sink);
    const running = scheduler.run();
    const failures: Error[] = [];
    const failed = deferred();
    conn.on('restoreFailed', (err) => {
      failures.push(err);
      failed.resolve();
    });
    const admin = await amqp.connect(url);
    try {
      // An operator redeclares the exchange with another type, then the connection drops: setting the sink up again
      // is refused. (Redeclared before the drop: after it, the reconnection could declare it first.)
      const ch = await admin.createChannel();
      await ch.deleteExchange(ex.name);
      await ch.assertExchange(ex.name, 'fanout', { durable: false });
      await closeConnectionsNamed(name);
      await failed.promise;
      expect(failures[0].message).to.match(/PRECONDITION|inequivalent|type/i);
      expect(conn.status.state).to.not.equal('ready');
      // The operator undoes it: the next try sets the sink up, and it serves.
      await ch.deleteExchange(ex.name);
      await reaches(conn, 'ready');
      class Jobs extends GenericProducer {
        static override eks = [[ex, 'k'] as const];
        declare message_job: MessageSender;
      }
      const p = await Jobs.create({ connection: conn, logger: quiet });
      await p.message_job({});
      await got.promise;
    } finally {
      await conn.close();
      await admin.close();
      scheduler.stop();
      await running;
      await deleteTopology([queue], [ex.name]).catch(() => undefined);
    }
  });

  it('holds the topology in one place: an exchange 20 processors and a producer use is one declaration, and an error exchange one more', async () => {
    const conn = await connect({ url, logger: quiet });
    const ex = { name: unique('topo-ex'), type: 'direct', durable: false } as const;
    const errors = unique('topo-errors');
    class Quiet extends MessageProcessor {}
    const procs = Array.from(
      { length: 20 },
      (_, i) =>
        new Quiet({
          connection: conn,
          logger: quiet,
          handleSignals: false,
          errorExchange: errors,
          eqk: [[ex, [[`${ex.name}-q${i}`, `k${i}`]]]],
        }),
    );
    try {
      for (const p of procs) await p.ready();
      class Jobs extends GenericProducer {
        static override eks = [[ex, 'k0'] as const];
      }
      await Jobs.create({ connection: conn, logger: quiet });
      // The exchange (the same declaration from 21 components), the error exchange, and the two exchanges every
      // processor answers presence on (presence-exchange, generic-application-exchange): four, not 81.
      expect((conn as unknown as { topology: { size: number } }).topology.size).to.equal(4);
    } finally {
      await conn.close();
      await deleteTopology([...procs.map((_, i) => `${ex.name}-q${i}`), errors], [ex.name, errors]).catch(
        () => undefined,
      );
    }
  });

  it('leaves no channel of a processor refused at ready() on the connection it shares', async () => {
    const conn = await connect({ url, logger: quiet });
    const taken = unique('shared-taken');
    const ex = unique('shared-taken-ex');
    const admin = await amqp.connect(url);
    try {
      await (await admin.createChannel()).assertQueue(taken, { durable: true });
      const before = openChannelCount(conn.model!);
      class Quiet extends MessageProcessor {}
      const p = new Quiet({
        connection: conn,
        logger: quiet,
        handleSignals: false,
        eqk: [[{ name: ex, type: 'direct', durable: false }, [[{ name: taken, flags: { durable: false } }, 'k']]]],
      });
      const err = await p.ready().then(
        () => undefined,
        (e: unknown) => e as { code?: string },
      );
      expect(err?.code).to.equal('PRECONDITION_FAILED');
      expect(openChannelCount(conn.model!)).to.equal(before);
      expect(conn.status.state).to.equal('ready');
    } finally {
      await conn.close();
      await admin.close();
      await deleteTopology([taken], [ex]).catch(() => undefined);
    }
  });

  it('works with `await using`, and refuses a component once it is closed', async () => {
    let outer: Connection | undefined;
    {
      await using conn = await connect({ url, logger: quiet });
      outer = conn;
      expect(conn.status.state).to.equal('ready');
    }
    expect(outer.status.state).to.equal('closed');
    const err = await GenericProducer.create({ connection: outer, logger: quiet }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((err as { code?: string }).code).to.be.oneOf(['NOT_CONNECTED', 'CLOSED']);
  });
});

describe('a first step that fails', function () {
  this.timeout(60_000);
  let url: string;
  before(async () => {
    url = await brokerUrl();
  });

  /** Runs the fixture; resolves with what it printed once it exited by itself (fails when it does not within 15 s). */
  function run(which: string, target: string, name: string): Promise<{ code: number | null; out: string }> {
    return new Promise((resolve, reject) => {
      const child = spawn(
        process.execPath,
        ['--import', 'tsx', 'spec/fixtures/fails-cleanly.ts', which, target, name],
        { env: { ...process.env, POSTAGE_LOG_LEVEL: 'silent' } },
      );
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (out += d.toString()));
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(
          new Error(`the process did not exit by itself within 15 s (something was left open); it printed: ${out}`),
        );
      }, 15_000);
      child.on('exit', (code) => {
        clearTimeout(timer);
        resolve({ code, out });
      });
    });
  }

  it('leaves nothing open when create() is refused with PRECONDITION_FAILED: the process exits by itself', async () => {
    const name = unique('clean-create');
    const admin = await amqp.connect(url);
    try {
      const ch = await admin.createChannel();
      await ch.assertExchange(name, 'fanout', { durable: false });
      const r = await run('create', url, name);
      expect(r.out).to.contain('refused: PRECONDITION_FAILED');
      expect(r.code).to.equal(0);
      const shared = await run('shared-create', url, name);
      expect(shared.out).to.contain('refused: PRECONDITION_FAILED');
      expect(shared.code).to.equal(0);
    } finally {
      await admin.close();
      await deleteTopology([], [name]).catch(() => undefined);
    }
  });

  it('leaves nothing open when connect() finds no broker within waitForBrokerMs: the process exits by itself', async () => {
    // A port where nothing answers.
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    await new Promise<void>((r) => server.close(() => r()));
    const r = await run('connect', `amqp://guest:guest@127.0.0.1:${port}`, '-');
    expect(r.out).to.contain('refused: UNREACHABLE');
    expect(r.code).to.equal(0);
  });

  it('leaves nothing open when ready() is refused, and the processor does not reopen: the process exits by itself', async () => {
    const name = unique('clean-ready');
    const admin = await amqp.connect(url);
    try {
      const ch = await admin.createChannel();
      await ch.assertQueue(name, { durable: true });
      const r = await run('ready', url, name);
      expect(r.out).to.contain('refused: PRECONDITION_FAILED');
      expect(r.code).to.equal(0);
    } finally {
      await admin.close();
      await deleteTopology([name], [`${name}-ex`]).catch(() => undefined);
    }
  });
});
