import { expect } from 'chai';
import { TopologyError } from '../../lib/index.js';
import { queueArguments } from '../../lib/topology/topology.js';

const named = { durable: true, exclusive: false, autoDelete: false };

describe('queue types', () => {
  it('declares the chosen type and single active consumer as the broker reads them', () => {
    expect(queueArguments('q', { ...named, queueType: 'quorum', singleActiveConsumer: true }, undefined)).to.deep.equal(
      { 'x-queue-type': 'quorum', 'x-single-active-consumer': true },
    );
    expect(queueArguments('q', { ...named, queueType: 'stream' }, undefined)).to.deep.equal({
      'x-queue-type': 'stream',
    });
    expect(queueArguments('q', { ...named, queueType: 'classic' }, undefined)).to.equal(undefined);
    expect(queueArguments('q', { ...named, arguments: { 'x-max-length': 5 } }, undefined)).to.deep.equal({
      'x-max-length': 5,
    });
  });

  it('applies POSTAGE_QUEUE_TYPE to durable named queues only, and never over a queue that chose', () => {
    expect(queueArguments('q', named, 'quorum')).to.deep.equal({ 'x-queue-type': 'quorum' });
    expect(queueArguments('', { durable: false, exclusive: true, autoDelete: true }, 'quorum')).to.equal(undefined);
    expect(queueArguments('q', { ...named, autoDelete: true }, 'quorum')).to.equal(undefined);
    expect(queueArguments('q', { ...named, queueType: 'classic' }, 'quorum')).to.equal(undefined);
  });

  it('refuses what a quorum queue or a stream cannot be, before the broker does (no 406)', () => {
    expect(() => queueArguments('q', { ...named, queueType: 'quorum', exclusive: true }, undefined)).to.throw(
      TopologyError,
      /a quorum queue cannot be exclusive/,
    );
    expect(() =>
      queueArguments('q', { durable: false, exclusive: false, autoDelete: true, queueType: 'stream' }, undefined),
    ).to.throw(TopologyError, /a stream queue cannot be non-durable, auto-delete/);
    expect(() =>
      queueArguments('q', { ...named, exclusive: true, arguments: { 'x-queue-type': 'quorum' } }, undefined),
    ).to.throw(TopologyError, /quorum queue cannot be exclusive/);
    expect(() =>
      queueArguments('q', { ...named, queueType: 'quorum', arguments: { 'x-queue-type': 'classic' } }, undefined),
    ).to.throw(TopologyError, /disagree/);
    expect(() => queueArguments('q', { ...named, queueType: 'fast' as never }, undefined)).to.throw(
      TopologyError,
      /none of classic, quorum, stream/,
    );
  });
});
