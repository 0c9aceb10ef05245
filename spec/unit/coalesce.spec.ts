import { expect } from 'chai';
import { flushChannel } from '../../lib/transport/amqplib-adapter.js';

/** amqplib's internals as flushChannel reads them: a mux, and a channel's write buffer. */
function fakeConnection(blocked = false) {
  const buffer = { name: 'channel 1 buffer' };
  const passes: unknown[][] = [];
  const mux = {
    newStreams: [] as unknown[],
    blocked,
    _readIncoming() {
      passes.push([...this.newStreams]);
      this.newStreams.length = 0;
    },
  };
  return { connection: { muxer: mux, channels: [null, { buffer }] }, buffer, passes };
}

describe('flushChannel', () => {
  it("hands the channel's buffer to the mux and runs a pass now", () => {
    const { connection, buffer, passes } = fakeConnection();
    flushChannel({ ch: 1, connection });
    expect(passes).to.deep.equal([[buffer]]);
  });

  it("leaves a blocked mux, an unknown channel, and an amqplib without these internals to the mux's own pass", () => {
    const blocked = fakeConnection(true);
    flushChannel({ ch: 1, connection: blocked.connection });
    expect(blocked.passes).to.deep.equal([]);
    const other = fakeConnection();
    flushChannel({ ch: 7, connection: other.connection });
    expect(other.passes).to.deep.equal([]);
    expect(() => flushChannel({ ch: 1, connection: {} })).to.not.throw();
    expect(() => flushChannel({})).to.not.throw();
  });
});
