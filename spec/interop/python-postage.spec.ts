/**
 * postage-ts and Python Postage on one broker, every direction, against a
 * Python peer (spec/fixtures/postage_peer.py, pika) that builds and answers
 * envelopes exactly as Postage's messaging.py does.
 */
import { expect } from 'chai';
import { execFile, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { promisify } from 'node:util';
import {
  GenericProducer,
  JsonHandler,
  MessageCommand,
  MessageHandler,
  MessageProcessor,
  MessageResult,
  RpcCommand,
  RpcHandler,
  type CommandContent,
  type DeliveryInfo,
  type ExchangeObject,
  type MessageSender,
} from '../../lib/index.js';
import { brokerUrl } from '../support/broker.js';
import { Harness, deferred } from '../support/components.js';
import { unique } from '../support/topology.js';

const exec = promisify(execFile);
/** Debian's python3, where python3-pika installs pika. */
const PYTHON = '/usr/bin/python3';
const PEER = 'spec/fixtures/postage_peer.py';

describe('talking to Python Postage on one broker', function () {
  this.timeout(30_000);
  let url: string;
  let h: Harness;
  let exchange: ExchangeObject;

  before(async () => {
    url = await brokerUrl();
    await exec(PYTHON, ['-c', 'import pika']).catch(() => {
      throw new Error(`the Python Postage peer needs pika for ${PYTHON}: apt-get install python3-pika`);
    });
  });
  beforeEach(() => {
    h = new Harness();
    // Postage's Exchange defaults: direct, durable, not auto-delete.
    exchange = { name: unique('py-ex'), type: 'direct' };
  });
  afterEach(async () => h.close());

  const peer = (...args: string[]) =>
    exec(PYTHON, [PEER, ...args], { env: { ...process.env, POSTAGE_URL: url }, timeout: 20_000 }).then((r) => r.stdout);

  /** Starts the Python peer answering on `queue`; resolves once it consumes. */
  async function pythonServer(
    queue: string,
    key: string,
  ): Promise<{
    lines: string[];
    next: (prefix: string) => Promise<string>;
    done: Promise<void>;
    child: ChildProcessWithoutNullStreams;
  }> {
    const child = spawn(PYTHON, [PEER, 'serve', exchange.name, queue, key], {
      env: { ...process.env, POSTAGE_URL: url },
    });
    const lines: string[] = [];
    const waiters: Array<{ prefix: string; resolve: (l: string) => void }> = [];
    let buf = '';
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c));
    const ready = deferred();
    child.stdout.on('data', (c: Buffer) => {
      buf += c;
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        lines.push(line);
        if (line === 'ready') ready.resolve();
        for (const w of waiters.filter((w) => line.startsWith(w.prefix))) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    });
    const done = new Promise<void>((resolve, reject) =>
      child.on('exit', (code) =>
        code === 0 ? resolve() : reject(new Error(`the Python peer exited ${code}: ${stderr}`)),
      ),
    );
    h.onClose(async () => {
      if (child.exitCode === null) child.kill();
    });
    await Promise.race([ready.promise, done]);
    return {
      lines,
      child,
      done,
      next: (prefix) => {
        const seen = lines.find((l) => l.startsWith(prefix));
        return seen ? Promise.resolve(seen) : new Promise((resolve) => waiters.push({ prefix, resolve }));
      },
    };
  }

  class Echo extends MessageProcessor {
    heard = deferred<CommandContent<{ text: string }>>();
    @MessageHandler('command', 'hello')
    hello(content: CommandContent<{ text: string }>) {
      this.heard.resolve(content);
    }
    @RpcHandler('command', 'upper')
    upper(content: CommandContent<{ text: string }>) {
      return content.parameters.text.toUpperCase();
    }
  }

  it('handles a message a Python component sends', async () => {
    const echo = new Echo({ url, eqk: [[exchange, [[{ name: unique('py-q'), flags: { exclusive: true } }, 'k']]]] });
    await h.start(echo);
    await peer('send', exchange.name, 'k', 'hello', JSON.stringify({ text: 'from python' }));
    expect(await echo.heard.promise).to.deep.equal({ parameters: { text: 'from python' } });
  });

  it('hands plain JSON a pika publisher sends (no envelope) to a @JsonHandler', async () => {
    const got = deferred<{ body: unknown; delivery: DeliveryInfo }>();
    class Orders extends MessageProcessor {
      @JsonHandler('orders.placed')
      placed(body: unknown, delivery: DeliveryInfo) {
        got.resolve({ body, delivery });
      }
    }
    const q = { name: unique('py-q'), flags: { exclusive: true } };
    await h.start(new Orders({ url, eqk: [[exchange, [[q, 'orders.placed']]]] }));
    await peer('send-json', exchange.name, 'orders.placed', JSON.stringify({ orderId: 'P-1', qty: 3 }));
    const { body, delivery } = await got.promise;
    expect(body).to.deep.equal({ orderId: 'P-1', qty: 3 });
    expect(delivery.messageId).to.equal('py-1');
    expect(delivery.headers).to.include({ 'x-origin': 'pika' });
  });

  it("answers a Python component's RPC (its own reply queue, no correlation id)", async () => {
    await h.start(new Echo({ url, eqk: [[exchange, [[{ name: unique('py-q'), flags: { exclusive: true } }, 'k']]]] }));
    const out = JSON.parse(await peer('rpc', exchange.name, 'k', 'upper', JSON.stringify({ text: 'shout' })));
    expect(out.type).to.equal('result');
    expect(out.content).to.deep.equal({ type: 'success', value: 'SHOUT', message: '' });
  });

  it("answers a Python component's ping on presence, as a plain processor", async () => {
    const echo = new Echo({ url, eqk: [[exchange, [[{ name: unique('py-q'), flags: { exclusive: true } }, 'k']]]] });
    await h.start(echo);
    const out = JSON.parse(await peer('rpc', 'presence-exchange', `presence@${echo.fingerprint.host}`, 'ping', '{}'));
    expect(out.content.type).to.equal('success');
    expect(out.content.value).to.include({ name: echo.fingerprint.name, pid: echo.fingerprint.pid });
  });

  it('sends a message a Python component handles', async () => {
    const py = await pythonServer(unique('py-srv'), 'k');
    const key = 'k';
    const ex = exchange;
    class Sender extends GenericProducer {
      static override eks = [[ex, key] as const];
      declare message_quit: MessageSender;
      build_message_hello(text: string) {
        return new MessageCommand('hello', { text });
      }
    }
    const p = await Sender.create({ url });
    h.onClose(() => p.close());
    await p.message_hello('to python');
    expect(await py.next('got message command hello')).to.equal(
      'got message command hello {"parameters": {"text": "to python"}}',
    );
    await p.message_quit();
    await py.done;
  });

  for (const replyTo of ['direct', 'queue'] as const) {
    it(`calls a Python component's RPC, which replies without a correlation id (replyTo: '${replyTo}')`, async () => {
      const py = await pythonServer(unique('py-srv'), 'k');
      const ex = exchange;
      class Caller extends GenericProducer {
        static override eks = [[ex, 'k'] as const];
        declare message_quit: MessageSender;
        build_rpc_echo(text: string) {
          return new RpcCommand('echo', { text });
        }
      }
      const p = await Caller.create({ url, replyTo });
      h.onClose(() => p.close());
      const r = await p.rpc_echo('hi python', { _timeout: 5, _max_retry: 0 });
      expect(r).to.be.instanceOf(MessageResult);
      expect(r.ok).to.equal(true);
      expect(r.body.content.value).to.deep.equal({ echo: { text: 'hi python' }, from: 'python' });
      if (replyTo === 'queue') {
        // Several calls at once: each has its own queue, so none needs a correlation id.
        const many = await Promise.all([1, 2, 3].map((n) => p.rpc_echo(`n${n}`, { _timeout: 5, _max_retry: 0 })));
        expect(many.map((m) => (m.body.content.value as { echo: { text: string } }).echo.text)).to.deep.equal([
          'n1',
          'n2',
          'n3',
        ]);
      }
      await p.message_quit();
      await py.done;
    });
  }
});
