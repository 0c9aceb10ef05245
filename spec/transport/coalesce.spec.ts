import { expect } from 'chai';
import amqp from 'amqplib';
import type { Socket } from 'node:net';
import { GenericProducer } from '../../lib/index.js';
import { coalesceWrites } from '../../lib/transport/amqplib-adapter.js';
import { brokerUrl } from '../support/broker.js';
import { capture } from '../support/log.js';
import { deleteTopology, unique } from '../support/topology.js';

/** Counts what reaches the socket's system-call layer: one _write or _writev is one syscall. */
function countSyscalls(model: amqp.ChannelModel): () => number {
  const socket = (model.connection as unknown as { stream: Socket & { _write: Function; _writev: Function } }).stream;
  let n = 0;
  for (const m of ['_write', '_writev'] as const) {
    const orig = socket[m];
    socket[m] = function (this: unknown, ...args: unknown[]) {
      n++;
      return orig.apply(this, args);
    };
  }
  return () => n;
}

describe('coalesced socket writes', () => {
  let url: string;
  let queue: string;

  beforeEach(async () => {
    url = await brokerUrl();
    queue = unique('q');
    const conn = await amqp.connect(url);
    await (await conn.createChannel()).assertQueue(queue, { durable: false });
    await conn.close();
  });
  afterEach(async () => deleteTopology([queue]));

  it('sends a burst of 500 publishes in a handful of socket writes, every one confirmed', async () => {
    class Source extends GenericProducer {
      static override eks = [[{ name: '', type: 'direct' }, queue] as const];
    }
    const p = await Source.create({ url });
    const syscalls = countSyscalls(p.connection!);
    await Promise.all(Array.from({ length: 500 }, (_, i) => p.message_item({ i })));
    expect(syscalls()).to.be.lessThan(50);
    const conn = await amqp.connect(url);
    const ok = await (await conn.createChannel()).checkQueue(queue);
    await conn.close();
    expect(ok.messageCount).to.equal(500);
    await p.close();
  });

  it('gathers large messages too: 200 of 10 KiB in a few dozen socket writes', async () => {
    class Source extends GenericProducer {
      static override eks = [[{ name: '', type: 'direct' }, queue] as const];
    }
    const p = await Source.create({ url });
    const syscalls = countSyscalls(p.connection!);
    const data = 'x'.repeat(10 * 1024);
    await Promise.all(Array.from({ length: 200 }, (_, i) => p.message_item({ i, data })));
    // 2 MiB at up to 256 KiB a pass; at Node's 16 KiB high-water mark it took one write per message or two.
    expect(syscalls()).to.be.lessThan(50);
    await p.close();
  });

  it('applies once per connection and warns once per process when amqplib internals are missing', async () => {
    const conn = await amqp.connect(url);
    expect(coalesceWrites(conn)).to.equal(true);
    expect(coalesceWrites(conn)).to.equal(true);
    await conn.close();
    const { lines, logger: log } = capture('info');
    const stranger = { connection: {} } as unknown as amqp.ChannelModel;
    expect(coalesceWrites(stranger, log)).to.equal(false);
    expect(coalesceWrites(stranger, log)).to.equal(false);
    expect(lines).to.have.length(1);
    expect(JSON.parse(lines[0])).to.include({ level: 40 });
    expect(lines[0]).to.contain('not one postage-ts was proven on');
  });

  it("raises the socket's high-water mark only during a pass: outside it, backpressure starts at the socket's own mark", async () => {
    class Source extends GenericProducer {
      static override eks = [[{ name: '', type: 'direct' }, queue] as const];
    }
    const p = await Source.create({ url });
    const socket = (p.connection!.connection as unknown as { stream: Socket }).stream;
    const own = socket.writableHighWaterMark;
    const marks = new Set<number>();
    const write = socket.write.bind(socket) as (...a: unknown[]) => boolean;
    socket.write = ((...a: unknown[]) => {
      marks.add(socket.writableHighWaterMark);
      return write(...a);
    }) as typeof socket.write;
    const data = 'x'.repeat(10 * 1024);
    await Promise.all(Array.from({ length: 50 }, (_, i) => p.message_item({ i, data })));
    expect([...marks]).to.deep.equal([256 * 1024]);
    expect(socket.writableHighWaterMark)
      .to.equal(own)
      .and.to.be.below(256 * 1024);
    await p.close();
  });
});
