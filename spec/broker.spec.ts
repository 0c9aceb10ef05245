import { expect } from 'chai';
import amqp from 'amqplib';
import { brokerUrl } from './support/broker.js';

describe("the specs' broker", () => {
  it('finds a RabbitMQ broker the specs can talk to', async () => {
    const conn = await amqp.connect(await brokerUrl());
    try {
      const ch = await conn.createChannel();
      const q = await ch.assertQueue('', { exclusive: true });
      expect(q.queue).to.match(/^amq\.gen-/);
    } finally {
      await conn.close();
    }
  });
});
