/**
 * Fault: a three-node cluster loses the node that leads a quorum queue, mid-stream.
 * Injected by SIGKILL of that node's Erlang VM (a crash: nothing is handed
 * over first), on a private cluster of three nodes, never the shared broker.
 * Must hold: producer and processor fail over to a surviving node by
 * themselves, the queue elects a new leader, and every message the cluster
 * confirmed is consumed at least once.
 */
import { expect } from 'chai';
import amqp from 'amqplib';
import { PrivateBroker } from '../support/private-broker.js';
import { streamThroughFault } from '../support/stream.js';

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
    const flags = { arguments: { 'x-queue-type': 'quorum' } };
    // Declared first on the first node, which then leads it, so the leader is known before the stream starts.
    const conn = await amqp.connect(nodes[0].url);
    await (await conn.createChannel()).assertQueue(queue, { durable: true, ...flags });
    await conn.close();
    const leader = await leaderOf(queue, nodes[1]);
    const victim = nodes.find((n) => n.node === leader);
    expect(victim, `the leader ${leader} is one of the cluster's nodes`).to.not.equal(undefined);
    const r = await streamThroughFault({
      // Every node: each connection starts at another one (spread over the cluster), and falls back to the rest.
      url: nodes.map((n) => n.url).join(','),
      exchange: { name: 'fault-quorum', type: 'direct' },
      queue: { name: queue, flags },
      n: N,
      prefetch: 50,
      fault: () => victim!.kill(),
      // The crash lands while sends are in flight.
      awaitFault: false,
    });
    const newLeader = await leaderOf(queue, nodes.find((n) => n !== victim)!);
    expect(r.confirmed.size).to.equal(N);
    expect([...r.confirmed].filter((id) => !r.received.has(id))).to.deep.equal([]);
    expect(newLeader).to.not.equal('').and.not.equal(leader);
    // Connections start at different nodes (spread over the cluster): each component that was on the killed node came
    // back on another.
    for (const who of ['producer', 'sink'])
      if (r.events.includes(`${who} disconnected`)) expect(r.events).to.include(`${who} connected`);
    // Resends are expected around the crash, and only there.
    expect(r.resent).to.be.lessThan(N);
  });
});
