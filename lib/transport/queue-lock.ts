import type { Channel } from 'amqplib';

/**
 * Takes the lock `name`: an exclusive queue, which the broker keeps for the connection that declared it (and drops
 * with it, should its process die). Resolves to false where another connection holds it, which closes `ch`; any other
 * refusal is thrown. The holder deletes the queue to let go.
 * @internal
 */
export async function takeQueueLock(ch: Channel, name: string): Promise<boolean> {
  try {
    await ch.assertQueue(name, { exclusive: true, durable: false, autoDelete: false });
    return true;
  } catch (err) {
    if (/RESOURCE_LOCKED|405/.test(String((err as Error).message))) return false;
    throw err;
  }
}
