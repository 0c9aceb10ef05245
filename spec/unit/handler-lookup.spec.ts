import { expect } from 'chai';
import {
  MessageCommand,
  MessageHandler,
  MessageProcessor,
  MessageStatus,
  RpcCommand,
  RpcHandler,
} from '../../lib/index.js';
import { ProcessorHarness } from '../../lib/testing/index.js';

/**
 * Which handlers a delivery reaches, through postage-ts/testing's harness
 * (the real dispatch, no broker): the handlers for its name in declaration
 * order, then those for every name of its type; an RPC's answer comes from
 * one for its very name when there is one (Postage's `handlers[-1]`).
 */
describe('handler lookup', () => {
  const ran: string[] = [];
  class Base extends MessageProcessor {
    @MessageHandler('command', 'resize')
    first() {
      ran.push('first');
    }
  }
  class Lookup extends Base {
    @MessageHandler('command')
    anyCommand(content: { parameters: { n?: number } }) {
      ran.push(`any:${content.parameters.n ?? ''}`);
    }
    @MessageHandler('command', 'resize')
    second() {
      ran.push('second');
    }
    @MessageHandler('status', '*')
    anyStatus() {
      ran.push('status');
    }
    @RpcHandler('command', 'area')
    area() {
      return 'named';
    }
    @RpcHandler('command')
    anyRpc() {
      return 'catch-all';
    }
  }

  let h: ProcessorHarness<Lookup>;
  beforeEach(async () => {
    ran.length = 0;
    h = await ProcessorHarness.start(Lookup, { handleSignals: false });
  });
  afterEach(() => h.close());

  it("runs a name's handlers in declaration order, base class first, then its type's catch-all ones", async () => {
    expect((await h.deliver(new MessageCommand('resize', { n: 1 }))).outcome).to.equal('acked');
    expect(ran).to.deep.equal(['first', 'second', 'any:1']);
  });

  it("runs only the catch-all handlers for a name nobody names; a handler named '*' is one of them", async () => {
    await h.deliver(new MessageCommand('crop', { n: 2 }));
    expect(ran).to.deep.equal(['any:2']);
    ran.length = 0;
    expect((await h.deliver(new MessageStatus('busy'))).outcome).to.equal('acked');
    expect(ran).to.deep.equal(['status']);
  });

  it("answers an RPC with the handler for its name over its type's catch-all, and with the catch-all for any other name", async () => {
    expect((await h.deliver(new RpcCommand('area', {}))).reply?.content).to.deep.include({ value: 'named' });
    expect((await h.deliver(new RpcCommand('volume', {}))).reply?.content).to.deep.include({ value: 'catch-all' });
  });
});
