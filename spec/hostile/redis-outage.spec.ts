/**
 * RedisIdempotencyStore through an outage with a node-redis client as the
 * docs make it (`createClient({ url })`: it reconnects, and queues the
 * commands it is given meanwhile, sending them once Redis is back). A claim
 * the store gave up waiting for is not gone: it lands after the outage.
 */
import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import { createClient } from 'redis';
import { DeferMessage, MessageHandler, MessageProcessor } from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import { RedisIdempotencyStore } from '../../lib/stores/redis/index.js';
import { deferred, exchangeFixture } from '../support/components.js';
import { type PrivateRedis, privateRedis } from '../support/private-redis.js';
import { until, within } from '../support/wait.js';

const quiet = makeLogger('silent');

describe('RedisIdempotencyStore across a Redis outage', function () {
  this.timeout(40_000);
  const f = exchangeFixture('redis-outage');
  let server: PrivateRedis | undefined;
  let client: ReturnType<typeof createClient> | undefined;

  afterEach(async () => {
    await f.h.close();
    await client?.close().catch(() => undefined);
    await server?.stop();
    client = server = undefined;
  });

  it('runs again soon a message whose run failed while Redis was away: the claim it queued does not hold it back', async () => {
    server = await privateRedis();
    client = createClient({ url: server.url });
    client.on('error', () => undefined);
    await client.connect();
    const prefix = `postage-spec:${randomBytes(4).toString('hex')}:`;
    const store = new RedisIdempotencyStore({ client, prefix, logger: quiet, timeoutMs: 300 });
    let runs = 0;
    const first = deferred();
    const second = deferred();
    class Jobs extends MessageProcessor {
      @MessageHandler('command', 'job')
      job() {
        runs++;
        if (runs === 1) {
          first.resolve();
          // Not handled this time: its copy comes back in 1.5 s.
          throw new DeferMessage(1_500, 'not yet');
        }
        second.resolve();
      }
    }
    // A short time limit: a claim lasts it plus the 20 s margin, longer than the spec waits.
    const { proc } = await f.start(Jobs, { deduplicate: store, handlerTimeoutMs: 1_000 });
    const port = server.port;
    await server.stop();
    const p = await f.producer();
    await p.message_job({}, { _message_id: 'j-1' });
    await within(first.promise, { timeout: 10_000, message: 'the first run, with Redis away' });
    await until(() => store.down, { timeout: 5_000, message: 'the store saw the outage' });
    server = await privateRedis(port);
    await within(second.promise, {
      timeout: 12_000,
      message: 'the deferred copy run again once Redis was back (a stale claim holds it back)',
    });
    expect(runs).to.equal(2);
    await until(async () => (await client!.get(`${prefix}${proc.name}/j-1`)) === 'done', {
      timeout: 5_000,
      message: 'the id remembered as handled',
    });
  });
});
