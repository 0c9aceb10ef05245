import { expect } from 'chai';
import {
  GenericApplication,
  MessageHandler,
  MessageProcessor,
  RpcHandler,
  VERSION,
  type ExchangeObject,
  type ProcessorDescription,
} from '../lib/index.js';
import { command } from './support/schema.js';
import { brokerUrl } from './support/broker.js';
import { launch, postage } from './support/cli.js';
import { within } from './support/wait.js';
import { Harness, deferred } from './support/components.js';
import { deleteTopology, publishRaw, unique } from './support/topology.js';

describe('postage (CLI)', function () {
  this.timeout(30_000);
  let h: Harness;
  let ex: ExchangeObject;
  let queue: string;
  beforeEach(() => {
    h = new Harness();
    ex = { name: unique('cli'), type: 'direct', durable: false };
    queue = unique('cliq');
  });
  afterEach(async () => {
    await h.close();
    await deleteTopology([queue], [ex.name]);
  });

  for (const cmd of ['ping', 'describe', 'send', 'rpc', 'watch']) {
    it(`prints help for '${cmd}' and exits 0`, async () => {
      const r = await postage([cmd, '--help']);
      expect(r.code).to.equal(0);
      expect(r.stdout).to.match(new RegExp(`^usage: postage ${cmd}`));
    });
  }

  it("prints its version with --version, and a command's help with postage help CMD", async () => {
    const v = await postage(['--version']);
    expect(v.code).to.equal(0);
    expect(v.stdout.trim()).to.equal(VERSION);
    const h = await postage(['help', 'rpc']);
    expect(h.code).to.equal(0);
    expect(h.stdout).to.match(/^usage: postage rpc/);
    const none = await postage(['help', 'fly']);
    expect(none.code).to.equal(2);
    expect(none.stderr.trim()).to.equal(
      "postage: no help for 'fly': the commands are ping, describe, run, send, rpc, watch, errors, graph, dashboard " +
        'and asyncapi',
    );
  });

  it('says an unknown option in one line that names it and where to look, exit 2', async () => {
    const r = await postage(['send', '--tiemout', '3', 'amq.direct', 'k', 'x']);
    expect(r.code).to.equal(2);
    expect(r.stderr.trim()).to.equal("postage: unknown option '--tiemout': see postage help send");
  });

  it('exits 2 with one line for an unknown command or bad JSON', async () => {
    const a = await postage(['fly']);
    expect(a.code).to.equal(2);
    expect(a.stderr.trim().split('\n')).to.have.length(1);
    const b = await postage(['send', 'amq.direct', 'k', 'x', '{nope']);
    expect(b.code).to.equal(2);
    expect(b.stderr.trim()).to.match(/^postage: JSON parameters are not valid JSON/);
  });

  it('exits 3 with one line, and no password, when the broker refuses the login', async () => {
    const u = new URL(await brokerUrl());
    u.password = 'wrong-secret';
    const r = await postage(['ping'], { url: u.toString() });
    expect(r.code).to.equal(3);
    expect(r.stderr.trim().split('\n')).to.have.length(1);
    expect(r.stderr).to.contain('POSTAGE_PASSWORD').and.not.contain('wrong-secret');
  });

  it('ping ADDRESS lists the components that answer, with their fingerprints', async () => {
    const name = unique('pingme');
    await h.start(
      new GenericApplication({
        url: await brokerUrl(),
        fingerprint: { name, type: 'worker', pid: '7', host: 'hostx' },
      }),
    );
    const r = await postage(['ping', name, '--timeout', '1']);
    expect(r.code).to.equal(0);
    const [header, row, ...rest] = r.stdout.trim().split('\n');
    expect(header.split(/\s+/)).to.deep.equal(['NAME', 'TYPE', 'PID@HOST', 'USER', 'VHOST']);
    expect(row.split(/\s+/).slice(0, 3)).to.deep.equal([name, 'worker', '7@hostx']);
    expect(rest).to.deep.equal([]);
  });

  it('ping exits 1 when nobody answers', async () => {
    const r = await postage(['ping', unique('nobody'), '--timeout', '0.3']);
    expect(r.code).to.equal(1);
  });

  it('send delivers MessageCommand(NAME, JSON) to EXCHANGE/KEY', async () => {
    const got = deferred<unknown>();
    class P extends MessageProcessor {
      @MessageHandler('command', 'store')
      store(content: unknown) {
        got.resolve(content);
      }
    }
    await h.start(new P({ url: await brokerUrl(), eqk: [[ex, [[queue, 'k']]]] }));
    const r = await postage(['send', ex.name, 'k', 'store', '{"a": 1}']);
    expect(r.code).to.equal(0);
    expect(r.stdout.trim()).to.equal(`sent command 'store' to ${ex.name}/k (confirmed by the broker)`);
    expect(await got.promise).to.deep.equal({ parameters: { a: 1 } });
  });

  it('send exits 4 with one line when no queue takes the message', async () => {
    await h.start(new MessageProcessor({ url: await brokerUrl(), eqk: [[ex, [[queue, 'k']]]] }));
    const r = await postage(['send', ex.name, 'nobody', 'store', '{}']);
    expect(r.code).to.equal(4);
    expect(r.stdout).to.equal('');
    expect(r.stderr.trim().split('\n')).to.have.length(1);
    expect(r.stderr).to.contain('no queue is bound to exchange').and.contain("key 'nobody'");
  });

  it('describe EXCHANGE KEY prints a processor: fingerprint, version, bindings and a table of handlers with their schemas; --json the description', async () => {
    const Resize = command({ width: 'number', height: 'number' }, { jsonSchema: true });
    class Images extends MessageProcessor {
      @MessageHandler('command', 'resize', { schema: Resize, description: 'resizes an image' })
      resize() {}
      @RpcHandler('command', 'area')
      area() {
        return 1;
      }
    }
    await h.start(new Images({ url: await brokerUrl(), fingerprint: { name: 'images' }, eqk: [[ex, [[queue, 'k']]]] }));
    const r = await postage(['describe', ex.name, 'k']);
    expect(r.code, r.stderr).to.equal(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).to.match(new RegExp(`^images \\(processor\\) .* postage-ts ${VERSION}$`));
    expect(lines).to.include(`  ${ex.name} / k -> ${queue}`);
    const rows = lines.slice(lines.findIndex((l) => l.startsWith('KIND'))).map((l) => l.split(/\s{2,}/));
    expect(rows[0]).to.deep.equal(['KIND', 'CATEGORY', 'TYPE', 'NAME', 'SCHEMA', 'DESCRIPTION']);
    expect(rows).to.deep.include(['message', 'message', 'command', 'resize', 'yes', 'resizes an image']);
    expect(rows).to.deep.include(['rpc', 'rpc', 'command', 'area', '-']);
    const json = await postage(['describe', ex.name, 'k', '--json']);
    const [d] = JSON.parse(json.stdout) as ProcessorDescription[];
    expect(d.library).to.deep.equal({ name: 'postage-ts', version: VERSION });
    expect(d.handlers.find((x) => x.name === 'resize')!.schema).to.deep.include({
      type: 'object',
      required: ['parameters'],
    });
    expect(d.handlers.map((x) => x.name)).to.include.members(['describe', 'quit', 'restart', 'resize', 'area']);
  });

  it('describe ADDRESS asks every component behind a GenericApplication address', async () => {
    const name = unique('described');
    await h.start(new GenericApplication({ url: await brokerUrl(), fingerprint: { name, type: 'worker' } }));
    const r = await postage(['describe', name, '--json', '--timeout', '1']);
    expect(r.code, r.stderr).to.equal(0);
    const found = JSON.parse(r.stdout) as ProcessorDescription[];
    expect(found.map((d) => d.fingerprint.name)).to.deep.equal([name]);
    expect(found[0].handlers.map((x) => x.name)).to.include.members(['ping', 'describe']);
  });

  it('describe exits 1 with one line for an address nobody answers, 4 for a key no queue takes, 2 without one', async () => {
    const nobody = await postage(['describe', unique('nobody'), '--timeout', '0.5']);
    expect(nobody.code).to.equal(1);
    expect(nobody.stderr.trim()).to.match(/^no processor answered describe on .* within 0.5 s: [^\n]*presence: false/);
    await h.start(new MessageProcessor({ url: await brokerUrl(), eqk: [[ex, [[queue, 'k']]]] }));
    const unroutable = await postage(['describe', ex.name, 'nobody']);
    expect(unroutable.code).to.equal(4);
    expect((await postage(['describe'])).code).to.equal(2);
  });

  it('keeps library logs off stdout, even at debug', async () => {
    await h.start(new MessageProcessor({ url: await brokerUrl(), eqk: [[ex, [[queue, 'k']]]] }));
    const r = await postage(['send', ex.name, 'k', 'store', '{}'], { env: { POSTAGE_LOG_LEVEL: 'debug' } });
    expect(r.code).to.equal(0);
    expect(r.stdout.trim().split('\n')).to.deep.equal([
      `sent command 'store' to ${ex.name}/k (confirmed by the broker)`,
    ]);
    expect(r.stderr).to.contain('"level":20');
  });

  it("rpc prints the result's value and exits 0 (the envelope with --envelope), or one line on stderr and exit 1 for an error result", async () => {
    class P extends MessageProcessor {
      @RpcHandler('command', 'double')
      double(content: { parameters: { n: number } }) {
        return content.parameters.n * 2;
      }
    }
    await h.start(new P({ url: await brokerUrl(), eqk: [[ex, [[queue, 'k']]]] }));
    const ok = await postage(['rpc', ex.name, 'k', 'double', '{"n": 21}']);
    expect(ok.code).to.equal(0);
    expect(ok.stdout.trim()).to.equal('42');
    const whole = await postage(['rpc', ex.name, 'k', 'double', '{"n": 21}', '--envelope']);
    expect(JSON.parse(whole.stdout).content).to.deep.equal({ type: 'success', value: 42, message: '' });
    const none = await postage(['rpc', ex.name, 'k', 'triple', '{"n": 1}']);
    expect(none.code).to.equal(1);
    expect(none.stdout).to.equal('');
    expect(none.stderr.trim().split('\n')).to.have.length(1);
    expect(none.stderr).to.match(/^postage: rpc triple failed: No handler for RPC 'triple'/);
  });

  it("does what the README's CLI example says against the RPC echo demo's receiver", async () => {
    const receiver = await launch(['run', 'demos/rpc_echo/receive.ts']);
    try {
      await receiver.line(/ready/);
      const r = await postage(['rpc', 'echo-exchange', 'echo', 'echo', '{"text": "hi"}']);
      expect(r.code).to.equal(0);
      expect(r.stdout.trim()).to.equal('"RPC message received"');
    } finally {
      await postage(['send', 'echo-exchange', 'echo', 'quit']);
      await within(receiver.exited, { timeout: 30_000, message: 'the receiver exiting on quit' }).finally(() =>
        receiver.kill(),
      );
    }
  });

  it('watch refuses, exit 2, to bind the default key # to a direct exchange (it would show nothing), and says to give the key', async () => {
    const r = await postage(['watch', 'amq.direct']);
    expect(r.code).to.equal(2);
    expect(r.stderr.trim()).to.equal(
      "postage: exchange 'amq.direct' is direct: the default key '#' would only match messages sent with the key " +
        "'#', so nothing would show. Give the key to watch: postage watch amq.direct KEY",
    );
  });

  it('watch prints the messages passing on an exchange: where they went, their ids, conversation, headers and envelope', async () => {
    const watch = await launch(['watch', 'amq.topic', `${queue}.#`, '--count', '1']);
    // The watcher says on stderr when its queue is bound; publish only then.
    await watch.line(/watching/);
    const body = {
      type: 'command',
      name: 'seen',
      category: 'message',
      version: '2',
      fingerprint: {},
      content: { parameters: {} },
      _reserved: {},
    };
    await publishRaw('amq.topic', `${queue}.x`, Buffer.from(JSON.stringify(body)), {
      messageId: 'm-2',
      timestamp: 1_700_000_000,
      headers: { 'postage-conversation-id': 'conv-1', 'postage-causation-id': 'm-1', tenant: 'acme' },
    });
    const [code] = await within(watch.exited, { timeout: 30_000, message: 'the watcher exiting after one message' });
    expect(code).to.equal(0);
    expect(JSON.parse(watch.lines.join('\n'))).to.deep.equal({
      routingKey: `${queue}.x`,
      messageId: 'm-2',
      conversationId: 'conv-1',
      causationId: 'm-1',
      timestamp: '2023-11-14T22:13:20.000Z',
      headers: { 'postage-conversation-id': 'conv-1', 'postage-causation-id': 'm-1', tenant: 'acme' },
      envelope: body,
    });
  });
});
