/**
 * Fault: a three-node cluster loses the node that leads a quorum queue, mid-stream.
 * Injected by SIGKILL of that node's Erlang VM (a crash: nothing is handed
 * over first), on a private cluster of three nodes, never the shared broker.
 * Must hold: producer and processor fail over to a surviving node by
 * themselves, the queue elects a new leader, and every message the cluster
 * confirmed is consumed at least once.
 */
import { expect } from 'chai';
import { GenericProducer, MessageHandler, MessageProcessor, MicroScheduler, type ExchangeObject } from '../../lib/index.js';
import { PrivateBroker } from '../support/private-broker.js';

const N = 600;

describe('fault: a cluster loses the leader of a quorum queue', function () {
  this.timeout(240_000);
  let nodes: PrivateBroker[] = [];

  before(async () => {
    nodes = await PrivateBroker.startCluster(3, 6100 + 3 * Math.floor(Math.random() * 60));
  });
  after(async () => {
    await Promise.all(nodes.map((n) => n.destroy()));
  });

  async function leaderOf(queue: string, ask: PrivateBroker): Promise<string> {
    const out = await ask.ctl('list_queues', '-q', '--no-table-headers', 'name', 'leader');
    const line = out.split('\n').find((l) => l.startsWith(`${queue}\t`));
    return line?.split('\t')[1]?.trim() ?? '';
  }

  it('fails over to a surviving node and consumes every confirmed message', async () => {
    const queue = 'fault-quorum-q';
    const ex: ExchangeObject = { name: 'fault-quorum', type: 'direct' };
    // Every node, the first one first: both components start on it, so it leads the queue they declare.
    const url = nodes.map((n) => n.url).join(',');
    const received = new Set<number>();
    const events: string[] = [];
    let wake: (() => void) | undefined;
    class Sink extends MessageProcessor {
      @MessageHandler('command', 'item')
      item(content: { parameters: { id: number } }) {
        received.add(content.parameters.id);
        wake?.();
      }
    }
    class Source extends GenericProducer {
      static override eks = [[ex, 'item'] as const];
    }
    const reconnect = { initialMs: 50, maxMs: 500 };
    const flags = { arguments: { 'x-queue-type': 'quorum' } };
    const sink = new Sink({ url, reconnect, prefetch: 50, eqk: [[ex, [[{ name: queue, flags }, 'item']]]] });
    sink.on('disconnected', () => events.push('sink disconnected')).on('connected', () => events.push('sink connected'));
    await sink.ready();
    const s = new MicroScheduler();
    s.addMicrothread(sink);
    const running = s.run();
    const p = await Source.create({ url, reconnect });
    p.on('disconnected', () => events.push('producer disconnected')).on('connected', () => events.push('producer connected'));

    const leader = await leaderOf(queue, nodes[1]);
    const victim = nodes.find((n) => n.node === leader);
    expect(victim, `the leader ${leader} is one of the cluster's nodes`).to.not.equal(undefined);
    const survivor = nodes.find((n) => n !== victim)!;

    const confirmed = new Set<number>();
    let crash: Promise<void> | undefined;
    let resent = 0;
    for (let id = 0; id < N; id++) {
      // The crash lands while sends are in flight: it is not awaited here.
      if (id === N / 3) crash = victim!.kill();
      // A send that fails (connection lost before the confirm, no connection yet) is sent again: at-least-once.
      const giveUp = Date.now() + 60_000;
      for (;;) {
        try {
          await p.message_item({ id });
          confirmed.add(id);
          break;
        } catch (err) {
          resent++;
          if (Date.now() > giveUp) throw new Error(`message ${id} still fails after 60 s: ${(err as Error).message}`);
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    }
    await crash;

    const deadline = Date.now() + 90_000;
    while ([...confirmed].some((id) => !received.has(id)) && Date.now() < deadline) {
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, 200);
      });
    }
    const newLeader = await leaderOf(queue, survivor);
    s.stop();
    await running;
    await sink.close();
    await p.close();

    expect(confirmed.size).to.equal(N);
    expect([...confirmed].filter((id) => !received.has(id))).to.deep.equal([]);
    expect(newLeader).to.not.equal('').and.not.equal(leader);
    expect(events).to.include.members(['producer disconnected', 'producer connected', 'sink disconnected', 'sink connected']);
    // Resends are expected around the crash, and only there.
    expect(resent).to.be.lessThan(N);
  });
});
