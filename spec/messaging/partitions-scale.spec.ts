/**
 * Partitions spread over the replicas running, and move as replicas come and go: scale-out and scale-in are both
 * moves, and a move keeps each key's order. Against the shared broker, in the spec's own vhost.
 */
import { expect } from 'chai';
import type { ChildProcess } from 'node:child_process';
import {
  GenericProducer,
  MessageHandler,
  MessageProcessor,
  PartitionCountMismatch,
  type ExchangeObject,
  type MessageSender,
  type PartitionMove,
} from '../../lib/index.js';
import { brokerUrl } from '../support/broker.js';
import { counter, Harness } from '../support/components.js';
import { FirstHandlings, outOfOrder, sendKeyed } from '../support/ordering.js';
import { settledSpread, spawnReplica } from '../support/partitions.js';
import { until } from '../support/wait.js';
import { deleteTopology, unique } from '../support/topology.js';

const PARTITIONS = 8;

describe('partitions spread over the replicas', function () {
  this.timeout(180_000);

  it('moves partitions as replicas start and stop under keyed traffic, every key in order', async () => {
    const url = await brokerUrl();
    const exchange: ExchangeObject = { name: unique('scale-ex'), type: 'direct' };
    const queue = unique('scale-q');
    const names = Array.from({ length: PARTITIONS }, (_, i) => `${queue}.p${i}`);
    const KEYS = 40;
    const BACKLOG = 2000;
    const FLOW = 4000;
    const handled = new FirstHandlings();
    const all = counter(BACKLOG + FLOW);
    const byReplica = new Map<string, number>();
    const moves: PartitionMove[] = [];
    class Worker extends MessageProcessor {
      @MessageHandler('command', 'work')
      async work(content: { parameters: { key: string; seq: number } }) {
        if (!handled.take(content.parameters)) return;
        // A handler that waits, so that work is in flight at every move.
        await new Promise((r) => setTimeout(r, 1));
        byReplica.set(this.fingerprint.pid, (byReplica.get(this.fingerprint.pid) ?? 0) + 1);
        all.hit();
      }
    }
    let made = 0;
    const replica = () => {
      const w = new Worker({
        url,
        fingerprint: { name: 'worker', pid: `${process.pid}-${++made}` },
        concurrency: 2,
        partitions: PARTITIONS,
        handleSignals: false,
        eqk: [[exchange, [[queue, 'work']]]],
      });
      w.on('partitionMove', (m) => moves.push(m));
      return w;
    };
    const h = new Harness();
    class Sender extends GenericProducer {
      static override eks = [[exchange, 'work'] as const];
      declare message_work: MessageSender;
    }
    const sender = await Sender.create({ url });
    try {
      const a = replica();
      await a.ready();
      // A backlog for the first replica alone; the keys go on from where it ends.
      let sent = 0;
      const next = new Map<string, number>();
      const send = (n: number, batch: number) =>
        sendKeyed(
          (p, o) => {
            const { key } = p as { key: string };
            const seq = next.get(key) ?? 0;
            next.set(key, seq + 1);
            sent++;
            return sender.message_work({ key, seq }, o);
          },
          n,
          KEYS,
          batch,
        );
      await send(BACKLOG, 500);
      await h.start(a);
      expect((await settledSpread([a], PARTITIONS))[0].partitions![0].activeHere).to.have.length(PARTITIONS);
      const flowing = send(FLOW, 20);
      // How long each change takes to settle, from the change to every replica active on its share.
      const took: string[] = [];
      const timed = async (what: string, change: () => Promise<void>, after: () => MessageProcessor[]) => {
        const t0 = Date.now();
        await change();
        await settledSpread(after(), PARTITIONS, 10_000);
        took.push(`${what} ${Date.now() - t0} ms`);
      };
      // Scale out: two more.
      const b = replica();
      const c = replica();
      await timed(
        'two join',
        () => h.start(b, c),
        () => [a, b, c],
      );
      // Scale in: one stops.
      await timed(
        'one leaves',
        () => b.close(),
        () => [a, c],
      );
      // And out again.
      const d = replica();
      await timed(
        'one joins',
        () => h.start(d),
        () => [a, c, d],
      );
      console.log(`      settled: ${took.join(', ')}`);
      await flowing;
      await all.done;
      expect(sent).to.equal(BACKLOG + FLOW);
      expect(handled.seen.size).to.equal(BACKLOG + FLOW);
      expect(outOfOrder(handled.starts)).to.deep.equal([]);
      expect([...byReplica.values()].filter((n) => n > 0).length).to.be.at.least(2);
      // Every move was told: the first replica gave partitions up when the others came, and took some back.
      const aId = (await a.rpcDescribe()).partitions![0].replica;
      expect(moves.some((m) => m.replica === aId && m.direction === 'released' && m.reason === 'join')).to.equal(true);
      expect(moves.some((m) => m.replica === aId && m.direction === 'acquired' && m.reason === 'leave')).to.equal(true);
      for (const m of moves) expect(names).to.include(m.partition);
    } finally {
      await sender.close();
      await h.close();
      await deleteTopology(names, [`${queue}.partitions`, `${queue}.replicas`, exchange.name]);
    }
  });

  it('leaves the replicas past the number of partitions idle, and says so', async () => {
    const url = await brokerUrl();
    const exchange: ExchangeObject = { name: unique('idle-ex'), type: 'direct' };
    const queue = unique('idle-q');
    const h = new Harness();
    class Worker extends MessageProcessor {}
    const replicas = [1, 2, 3].map(
      (i) =>
        new Worker({
          url,
          fingerprint: { name: 'worker', pid: `${process.pid}-${i}` },
          partitions: 2,
          handleSignals: false,
          eqk: [[exchange, [[queue, 'work']]]],
        }),
    );
    try {
      await h.start(...replicas);
      const deadline = Date.now() + 15_000;
      let active: number[] = [];
      for (;;) {
        const described = await Promise.all(replicas.map((r) => r.rpcDescribe()));
        active = described.map((d) => d.partitions![0].activeHere.length);
        const seen = described[0].partitions![0].replicas;
        if (seen.length === 3 && active.sort().join() === '0,1,1') {
          expect(seen.map((r) => r.partitions.length).sort()).to.deep.equal([0, 1, 1]);
          break;
        }
        if (Date.now() > deadline) throw new Error(`no spread of 2 partitions over 3 replicas: ${active.join(', ')}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      await h.close();
      await deleteTopology([`${queue}.p0`, `${queue}.p1`], [`${queue}.partitions`, `${queue}.replicas`, exchange.name]);
    }
  });

  it('with rebalance: false, leaves every partition active on the first replica, as before', async () => {
    const url = await brokerUrl();
    const exchange: ExchangeObject = { name: unique('norebalance-ex'), type: 'direct' };
    const queue = unique('norebalance-q');
    const names = Array.from({ length: 4 }, (_, i) => `${queue}.p${i}`);
    const handledBy = new Set<string>();
    const all = counter(200);
    const h = new Harness();
    class Worker extends MessageProcessor {
      @MessageHandler('command', 'work')
      work() {
        handledBy.add(this.fingerprint.pid);
        all.hit();
      }
    }
    const replicas = [1, 2].map(
      (i) =>
        new Worker({
          url,
          fingerprint: { name: 'worker', pid: `${process.pid}-${i}` },
          partitions: 4,
          rebalance: false,
          handleSignals: false,
          eqk: [[exchange, [[queue, 'work']]]],
        }),
    );
    class Sender extends GenericProducer {
      static override eks = [[exchange, 'work'] as const];
      declare message_work: MessageSender;
    }
    const sender = await Sender.create({ url });
    try {
      await h.start(...replicas);
      await sendKeyed((p, o) => sender.message_work(p, o), 200, 20, 50);
      await all.done;
      expect([...handledBy]).to.deep.equal([`${process.pid}-1`]);
      const d = (await replicas[0].rpcDescribe()).partitions![0];
      expect(d.rebalance).to.equal(false);
      expect(d.activeHere.sort()).to.deep.equal([...names].sort());
    } finally {
      await sender.close();
      await h.close();
      await deleteTopology(names, [`${queue}.partitions`, exchange.name]);
    }
  });

  it("refuses at ready() a partition count unlike the broker's, naming both and how to change it", async () => {
    const url = await brokerUrl();
    const exchange: ExchangeObject = { name: unique('count-ex'), type: 'direct' };
    const queue = unique('count-q');
    class Worker extends MessageProcessor {}
    const make = (partitions: number) =>
      new Worker({ url, partitions, handleSignals: false, eqk: [[exchange, [[queue, 'work']]]] });
    const first = make(8);
    try {
      await first.ready();
      for (const [n, message] of [
        [4, /has 8 partitions on the broker but this processor has partitions: 4/],
        [12, /has 8 partitions on the broker but this processor has partitions: 12/],
      ] as const) {
        const other = make(n);
        const err = await other.ready().then(
          () => undefined,
          (e: unknown) => e,
        );
        await other.close();
        expect(err).to.be.instanceOf(PartitionCountMismatch);
        expect(err).to.deep.include({ queue, expected: n, found: 8 });
        expect((err as Error).message)
          .to.match(message)
          .and.contain(`delete those queues and ${queue}.partitions`);
      }
      // The same number is welcome.
      const same = make(8);
      await same.ready();
      await same.close();
    } finally {
      await first.close();
      await deleteTopology(
        Array.from({ length: 8 }, (_, i) => `${queue}.p${i}`),
        [`${queue}.partitions`, `${queue}.replicas`, exchange.name],
      );
    }
  });
});

describe('fault: a replica that goes silent', function () {
  this.timeout(120_000);

  it('has its partitions spread over the others after two beats and a half, handled once dropped', async () => {
    // The fault: a replica's process is frozen (SIGSTOP) with its partitions; its connection stays open until the
    // broker misses two heartbeats (2 s each here). What must hold: the others take its partitions over, every message
    // sent after the freeze is handled, each key's first handlings in order.
    const url = await brokerUrl();
    const exchange: ExchangeObject = { name: unique('silent-ex'), type: 'direct' };
    const queue = unique('silent-q');
    const names = Array.from({ length: PARTITIONS }, (_, i) => `${queue}.p${i}`);
    const N = 1000;
    const handled = new FirstHandlings();
    const all = counter(N);
    class Worker extends MessageProcessor {
      @MessageHandler('command', 'work')
      work(content: { parameters: { key: string; seq: number } }) {
        if (handled.take(content.parameters)) all.hit();
      }
    }
    const replicas = [1, 2].map(
      (i) =>
        new Worker({
          url,
          fingerprint: { name: 'worker', pid: `${process.pid}-${i}` },
          partitions: PARTITIONS,
          rebalance: { heartbeatMs: 1000 },
          heartbeat: 2,
          handleSignals: false,
          eqk: [[exchange, [[queue, 'work']]]],
        }),
    );
    const h = new Harness();
    let child: ChildProcess | undefined;
    class Sender extends GenericProducer {
      static override eks = [[exchange, 'work'] as const];
      declare message_work: MessageSender;
    }
    const sender = await Sender.create({ url });
    try {
      await h.start(...replicas);
      child = await spawnReplica({ url, exchange: exchange.name, queue, partitions: PARTITIONS, heartbeat: 2 });
      // The three share the partitions: the two here hold five or six of the eight between them.
      await until(
        async () => {
          const d = await Promise.all(replicas.map((r) => r.rpcDescribe()));
          const here = d.reduce((n, x) => n + x.partitions![0].activeHere.length, 0);
          return d.every((x) => x.partitions![0].replicas.length === 3) && here <= 6;
        },
        { timeout: 15_000, every: 100, message: 'the child replica given a share' },
      );
      child.kill('SIGSTOP');
      const frozen = Date.now();
      await sendKeyed((p, o) => sender.message_work(p, o), N, 50, 100);
      await settledSpread(replicas, PARTITIONS, 10_000);
      const spreadMs = Date.now() - frozen;
      await all.done;
      const handledMs = Date.now() - frozen;
      // Two beats and a half (2.5 s) to be forgotten; the broker's two missed heartbeats (4 s and up) to let go.
      expect(spreadMs, 'spread over the others').to.be.below(2 * 1000 + 10_000);
      expect(handledMs, 'all handled').to.be.below(2 * 2000 + 10_000 + 5000);
      expect(outOfOrder(handled.starts)).to.deep.equal([]);
      console.log(`      silent replica: spread over the others in ${spreadMs} ms, all handled in ${handledMs} ms`);
    } finally {
      child?.kill('SIGKILL');
      await sender.close();
      await h.close();
      await deleteTopology(names, [`${queue}.partitions`, `${queue}.replicas`, exchange.name]);
    }
  });
});
