/**
 * Hostile: an operator deletes one partition queue (`rabbitmqctl delete_queue orders.p1`) under a running
 * partitioned processor. The broker cancels that partition's consumer; the processor must notice, declare the
 * partition again (bound to the hash exchange) and consume it, as a plain queue's consumer does. Left alone, the
 * partition stays gone: its keys hash onto the other partitions, `describe` still says it is active here, and the
 * next replica (or this one, restarted) is refused at ready() with a PartitionCountMismatch naming a wrong number.
 */
import { expect } from 'chai';
import { MessageHandler, MessageProcessor } from '../../lib/index.js';
import { queueCounts } from '../support/broker.js';
import { Harness } from '../support/components.js';
import { partitionedFixture, settledSpread } from '../support/partitions.js';
import { asOperator } from '../support/topology.js';
import { until, within } from '../support/wait.js';

describe('Hostile: an operator deletes a partition queue', function () {
  this.timeout(60_000);

  it('declares the partition again and consumes it, saying so; its keys go back to it and a new replica starts', async () => {
    const f = await partitionedFixture('pdel', 2, 1000);
    const names = f.names;
    // Which replica handled each key.
    const handled = new Map<string, string>();
    class Worker extends MessageProcessor {
      @MessageHandler('command', 'work')
      work(content: { parameters: { key: string } }) {
        handled.set(content.parameters.key, String(this.fingerprint.pid));
      }
    }
    const a = new Worker(f.options(1));
    const h = new Harness();
    const sender = await f.sender();
    try {
      await h.start(a);
      await f.activeOnAll(a);
      const cancelled = new Promise<string>((resolve) => a.on('consumerCancelled', resolve));
      await asOperator((ch) => ch.deleteQueue(names[1]));
      expect(await within(cancelled, { message: 'consumerCancelled for the deleted partition' })).to.equal(names[1]);
      await until(async () => (await queueCounts(names[1]))?.consumers === 1, {
        timeout: 15_000,
        message: `${names[1]} declared and consumed again`,
      });

      // A replica started now finds the broker's partitions as they were (not one fewer), and takes one of them.
      const b = new Worker(f.options(2));
      await h.start(b);
      await settledSpread([a, b], 2);
      // Keys hash to both partitions again: each replica handles some of the 40.
      for (let i = 0; i < 40; i++) await sender.message_work({ key: `k${i}` }, { _partition_key: `k${i}` });
      await until(() => handled.size === 40, { timeout: 15_000, message: () => `40 handled, not ${handled.size}` });
      expect(new Set(handled.values()).size, 'replicas that handled a share').to.equal(2);
    } finally {
      await sender.close();
      await h.close();
      await f.remove();
    }
  });
});
