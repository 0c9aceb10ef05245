import { expect } from 'chai';
import type { ChannelModel } from 'amqplib';
import { JsonEncoder } from '../../lib/envelope/encoder.js';
import { MessageResultException } from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import { RpcClient, type RpcCall } from '../../lib/send/rpc-client.js';

/**
 * RpcClient's bookkeeping on a fake channel (pure logic; the real broker's
 * side of calls is in spec/messaging/producer.spec.ts and the fault specs).
 */
describe('RpcClient', () => {
  it('forgets a call whose first send throws: it rejects, and no later sweep sends it again', async () => {
    const published: string[] = [];
    let refuse = true;
    const channel = {
      on: () => channel,
      consume: async () => ({ consumerTag: 'reply' }),
      close: async () => undefined,
      publish: (_ex: string, _key: string, _content: Buffer, props: { correlationId: string }) => {
        if (refuse) throw new Error('Channel closing');
        published.push(props.correlationId);
        return true;
      },
    };
    const model = { createChannel: async () => channel, connection: {} } as unknown as ChannelModel;
    const client = new RpcClient(makeLogger('silent'), new JsonEncoder(), () => undefined);
    await client.open(model);
    const call = (timeoutMs: number, maxRetry: number): RpcCall => ({
      target: [{ name: '', type: 'direct' }, 'q'],
      content: Buffer.from('{}'),
      timeoutMs,
      maxRetry,
      mandatory: true,
      replyTo: 'direct',
      properties: {},
    });
    try {
      const failed = await client.call(call(1, 3)).catch((e: Error) => e);
      expect(failed).to.be.instanceOf(Error);
      refuse = false;
      // A second call's timer sweeps every call in flight: the first one must not be among them.
      const r = await client.call(call(30, 0));
      expect(r).to.be.instanceOf(MessageResultException);
      expect(r.body.content.value).to.equal('TimeoutError');
      expect(published).to.have.length(1);
    } finally {
      await client.close();
    }
  });
});
