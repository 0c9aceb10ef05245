/**
 * Fault: a consumer process crashes (SIGKILL) holding unacked messages.
 * Injected by killing a component process while it works through 200
 * messages with a slow handler and a prefetch of 10 (shared broker: nothing
 * stops it). Must hold: every message was either handled or is back in the
 * queue for the next consumer, including the ones the dead process had
 * prefetched or was handling.
 */
import { expect } from 'chai';
import { brokerUrl } from '../support/broker.js';
import { drainItems, publishItems, startSlowReceiver } from '../support/slow-receiver.js';
import { deleteTopology, unique } from '../support/topology.js';

describe('fault: a consumer crashes with unacked messages', function () {
  this.timeout(60_000);
  const N = 200;

  it('loses none: what it had not acked goes back to the queue', async () => {
    const url = await brokerUrl();
    const queue = unique('crash');
    const r = await startSlowReceiver(url, queue);
    await publishItems(url, queue, N);
    // Kill once the burst is well under way, with a handler running and more prefetched.
    await r.whenHandled(20);
    r.signal('SIGKILL');
    expect(await r.exited).to.equal('SIGKILL');

    const left = await drainItems(url, queue);
    await deleteTopology([queue]);
    const lost = Array.from({ length: N }, (_, i) => i).filter((id) => !r.handled.has(id) && !left.has(id));
    expect(lost).to.deep.equal([]);
    // The handler that was running when the process died never finished: its message is back.
    expect([...r.started].filter((id) => !r.handled.has(id)).every((id) => left.has(id))).to.equal(true);
    expect(r.handled.size).to.be.lessThan(N);
  });
});
