/**
 * Hostile: partitioned replicas killed with SIGKILL in a loop (and one stopped with SIGTERM while the others
 * rebalance) under keyed traffic. Nothing may be lost and nothing wedged: every message is handled by some replica
 * within a generous deadline.
 */
import { expect } from 'chai';
import type { ChildProcess } from 'node:child_process';
import {
  GenericProducer,
  MessageHandler,
  MessageProcessor,
  type ExchangeObject,
  type MessageSender,
} from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import { brokerUrl } from '../support/broker.js';
import { Harness } from '../support/components.js';
import { sendKeyed } from '../support/ordering.js';
import { spawnReplica } from '../support/partitions.js';
import { deleteTopology, unique } from '../support/topology.js';
import { until } from '../support/wait.js';

const PARTITIONS = 6;

describe('Hostile: partitioned replicas killed in a loop', function () {
  this.timeout(180_000);

  for (const signal of ['SIGKILL', 'SIGTERM'] as const) {
    it(`loses nothing and wedges nothing when child replicas get ${signal} again and again`, async () => {
      const url = await brokerUrl();
      const exchange: ExchangeObject = { name: unique('hk-ex'), type: 'direct' };
      const queue = unique('hk-q');
      const names = Array.from({ length: PARTITIONS }, (_, i) => `${queue}.p${i}`);
      const seen = new Set<string>();
      let dupes = 0;
      const take = (key: string, seq: number) => {
        const id = `${key}/${seq}`;
        if (seen.has(id)) dupes++;
        seen.add(id);
      };
      class Worker extends MessageProcessor {
        @MessageHandler('command', 'work')
        work(content: { parameters: { key: string; seq: number } }) {
          take(content.parameters.key, content.parameters.seq);
        }
      }
      const local = new Worker({
        url,
        logger: makeLogger('silent'),
        fingerprint: { name: 'worker', pid: `${process.pid}-local` },
        partitions: PARTITIONS,
        rebalance: { heartbeatMs: 1000 },
        handleSignals: false,
        eqk: [[exchange, [[queue, 'work']]]],
      });
      const h = new Harness();
      class Sender extends GenericProducer {
        static override eks = [[exchange, 'work'] as const];
        declare message_work: MessageSender;
      }
      const sender = await Sender.create({ url });
      const children: ChildProcess[] = [];
      const child = async () => {
        const c = await spawnReplica({
          url,
          exchange: exchange.name,
          queue,
          partitions: PARTITIONS,
          signals: signal === 'SIGTERM',
          handled: take,
        });
        children.push(c);
        return c;
      };
      const N = 3000;
      try {
        await h.start(local);
        const flowing = sendKeyed((p, o) => sender.message_work(p, o), N, 30, 25);
        for (let round = 0; round < 4; round++) {
          const c = await child();
          // Let it take a share and handle some of it, then kill it mid-rebalance or mid-work.
          await until(async () => (await local.rpcDescribe()).partitions![0].replicas.length >= 2, {
            timeout: 15_000,
            message: `round ${round}: the child replica joined`,
          });
          await new Promise((r) => setTimeout(r, 300 + round * 200));
          const gone = new Promise((r) => c.once('exit', r));
          c.kill(signal);
          await gone;
        }
        await flowing;
        await until(() => seen.size >= N, {
          timeout: 60_000,
          message: () => `every message handled: ${seen.size} of ${N} (status ${local.status.state})`,
          every: 100,
        });
        console.log(`      ${signal}: ${seen.size} handled, ${dupes} handled twice`);
        expect(seen.size).to.equal(N);
      } finally {
        for (const c of children) c.kill('SIGKILL');
        await sender.close();
        await h.close();
        await deleteTopology(names, [`${queue}.partitions`, `${queue}.replicas`, exchange.name]);
      }
    });
  }
});
