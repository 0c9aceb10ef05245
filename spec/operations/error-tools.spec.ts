import { expect } from 'chai';
import amqp from 'amqplib';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { ErrorQueue } from '../../lib/index.js';
import { brokerUrl } from '../support/broker.js';
import { deleteTopology, queueState, unique } from '../support/topology.js';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

const CLI = ['--import', 'tsx', 'lib/cli/postage.ts'];

/**
 * Runs `postage ARGS` with stdin at end of file. With `slowReader`, stdout is read as a slow pipe reader would: nothing
 * for the first half second, then one chunk every few milliseconds.
 */
async function postage(args: string[], url: string, opts: { slowReader?: boolean } = {}): Promise<Run> {
  const child = spawn(process.execPath, [...CLI, ...args], {
    env: { ...process.env, POSTAGE_URL: url, POSTAGE_LOG_LEVEL: '' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  child.stdin.end();
  const out: Buffer[] = [];
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += String(c)));
  const done = new Promise<void>((resolve) => child.stdout.on('end', resolve));
  if (opts.slowReader) {
    child.stdout.pause();
    setTimeout(() => child.stdout.resume(), 500);
    child.stdout.on('data', (c: Buffer) => {
      out.push(c);
      child.stdout.pause();
      setTimeout(() => child.stdout.resume(), 3);
    });
  } else child.stdout.on('data', (c: Buffer) => out.push(c));
  const deadline = setTimeout(() => child.kill('SIGKILL'), 120_000);
  const [code] = (await once(child, 'exit')) as [number | null];
  await done;
  clearTimeout(deadline);
  return { code: code ?? -1, stdout: Buffer.concat(out).toString('utf8'), stderr };
}

/** The same, run synchronously: blocks this process (and so any replay it is in the middle of) until it ends. */
function postageNow(args: string[], url: string): Run {
  const r = spawnSync(process.execPath, [...CLI, ...args], {
    env: { ...process.env, POSTAGE_URL: url, POSTAGE_LOG_LEVEL: '' },
    input: '',
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

describe('postage errors (tools that are safe together and with any header)', function () {
  this.timeout(180_000);
  let url: string;
  let conn: amqp.ChannelModel;
  let errorQueue: string;
  let exchange: string;
  let target: string;

  /**
   * Fills the error queue as a processor's errorExchange would: `n` failed resize commands from `exchange`/'shop', ids
   * m-0, m-1…; `headers` overrides the failure headers of message i.
   */
  async function fail(n: number, headers: (i: number) => Record<string, unknown> = () => ({})): Promise<string[]> {
    const ch = await conn.createConfirmChannel();
    const ids: string[] = [];
    for (let i = 0; i < n; i++) {
      const id = `m-${i}`;
      ids.push(id);
      const envelope = { type: 'command', name: 'resize', version: '2', content: { parameters: { i } } };
      ch.sendToQueue(errorQueue, Buffer.from(JSON.stringify(envelope)), {
        messageId: id,
        persistent: true,
        contentType: 'application/json',
        headers: {
          'x-error-name': 'TypeError',
          'x-error-message': 'width must be a number',
          'x-original-exchange': exchange,
          'x-original-routing-key': 'shop',
          'x-attempts': 1,
          'x-failed-at': new Date(Date.UTC(2024, 0, 1, 0, 0, i % 60)).toISOString(),
          ...headers(i),
        },
      });
      if (i % 1000 === 999) await ch.waitForConfirms();
    }
    await ch.waitForConfirms();
    await ch.close();
    return ids;
  }

  /** The message ids in `queue`, taken off it. */
  async function drain(queue: string): Promise<string[]> {
    const ch = await conn.createChannel();
    const ids: string[] = [];
    for (;;) {
      const m = await ch.get(queue, { noAck: true });
      if (m === false) break;
      ids.push(String(m.properties.messageId));
    }
    await ch.close();
    return ids;
  }

  beforeEach(async () => {
    url = await brokerUrl();
    conn = await amqp.connect(url);
    errorQueue = unique('tools-eq');
    exchange = unique('tools-ex');
    target = unique('tools-q');
    const ch = await conn.createChannel();
    await ch.assertQueue(errorQueue, { durable: true });
    await ch.assertExchange(exchange, 'direct', { durable: false, autoDelete: false });
    await ch.assertQueue(target, { durable: false });
    await ch.bindQueue(target, exchange, 'shop');
    await ch.close();
  });

  afterEach(async () => {
    await conn.close();
    await deleteTopology([errorQueue, target], [exchange]);
  });

  it('gives a slow pipe reader every one of 10,000 messages of errors list --json', async () => {
    const started = Date.now();
    const ids = await fail(10_000);
    const r = await postage(['errors', 'list', errorQueue, '--json'], url, { slowReader: true });
    expect(r.code, r.stderr).to.equal(0);
    const listed = JSON.parse(r.stdout) as Array<{ id: string }>;
    expect(listed.map((m) => m.id)).to.deep.equal(ids);
    console.log(`      (10,000 listed through a slow reader in ${Date.now() - started} ms, ${r.stdout.length} bytes)`);
  });

  it('replays each of 2,000 messages once between two replay --all run at once, or refuses the second', async () => {
    const started = Date.now();
    const ids = await fail(2000);
    const [a, b] = await Promise.all([
      postage(['errors', 'replay', errorQueue, '--all'], url),
      postage(['errors', 'replay', errorQueue, '--all'], url),
    ]);
    const replayed = await drain(target);
    expect([...replayed].sort()).to.deep.equal([...ids].sort());
    expect((await queueState(errorQueue)).messages).to.equal(0);
    for (const r of [a, b]) {
      // Done, found nothing left (the other was quicker and finished first), or refused by the lock.
      expect([0, 1, 3], r.stderr).to.include(r.code);
      if (r.code === 3) expect(r.stderr).to.contain('another tool (').and.contain('is working on queue');
    }
    expect([a.code, b.code]).to.include(0);
    const lines = (r: Run) => r.stdout.split('\n').filter((l) => l.startsWith('replayed ')).length;
    expect(lines(a) + lines(b)).to.equal(2000);
    console.log(
      `      (2,000 replayed by two tools at once in ${Date.now() - started} ms; exits ${a.code}, ${b.code})`,
    );
  });

  it('says, listing during a replay, that another tool holds the queue, and refuses a second replay', async () => {
    await fail(300);
    let during: { list: Run; replay: Run } | undefined;
    await using eq = await ErrorQueue.open(errorQueue, { url });
    const report = await eq.replay(
      { all: true },
      {
        onConfirmed: () => {
          // The replay waits here (this process blocks) while the other tools run: it holds the lock throughout.
          during ??= {
            list: postageNow(['errors', 'list', errorQueue], url),
            replay: postageNow(['errors', 'replay', errorQueue, '--all'], url),
          };
        },
      },
    );
    expect(report.replayed).to.have.length(300);
    expect(during!.list.code, during!.list.stderr).to.equal(0);
    expect(during!.list.stderr).to.contain(`another tool (postage errors or a dashboard) is working on ${errorQueue}`);
    expect(during!.replay.code).to.equal(3);
    expect(during!.replay.stderr.trim()).to.match(/^postage: another tool \(.*\) is working on queue/);
    expect(during!.replay.stderr.trim().split('\n')).to.have.length(1);
    expect(await drain(target)).to.have.length(300);
  });

  it('shows a header that is not what it should be as it is: a failure time that is no date', async () => {
    await fail(3, (i) => (i === 1 ? { 'x-failed-at': 'not-a-date', 'x-attempts': 'many' } : {}));
    const r = await postage(['errors', 'list', errorQueue], url);
    expect(r.code, r.stderr).to.equal(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).to.have.length(4);
    expect(lines[2].split(/\s{2,}/)).to.deep.equal([
      'not-a-date',
      'command/resize',
      `${exchange}/shop`,
      'TypeError: width must be a number',
      '-',
      'm-1',
    ]);
    const json = await postage(['errors', 'list', errorQueue, '--json'], url);
    expect(json.code, json.stderr).to.equal(0);
    const listed = JSON.parse(json.stdout) as Array<{ id: string; headers: Record<string, unknown> }>;
    expect(listed[1].headers['x-failed-at']).to.equal('not-a-date');
    const shown = await postage(['errors', 'show', errorQueue, 'm-1'], url);
    expect(shown.code, shown.stderr).to.equal(0);
    expect((await queueState(errorQueue)).messages).to.equal(3);
  });

  it('refuses to replay a message whose x-original-exchange is no string, names it, leaves it in place', async () => {
    await fail(3, (i) => (i === 1 ? { 'x-original-exchange': 42 } : {}));
    const r = await postage(['errors', 'replay', errorQueue, '--all'], url);
    expect(r.code).to.equal(4);
    expect(r.stderr).to.contain('m-1 not replayed: its x-original-exchange is 42 (number), not an exchange name');
    expect(r.stdout.trim().split('\n')).to.deep.equal([
      `replayed m-0 to ${exchange}/shop`,
      `replayed m-2 to ${exchange}/shop`,
    ]);
    expect(await drain(target)).to.deep.equal(['m-0', 'm-2']);
    expect(await drain(errorQueue)).to.deep.equal(['m-1']);
  });

  it('takes purge without --yes and stdin at end of file as a no: exit 1, every message there, none held', async () => {
    await fail(50);
    const r = await postage(['errors', 'purge', errorQueue, '--all'], url);
    expect(r.code).to.equal(1);
    expect(r.stderr)
      .to.contain(`remove 50 message(s) from ${errorQueue} for good? [y/N]`)
      .and.contain('nothing purged');
    // Ready, not held unacked: the tool is gone and the count is whole.
    expect((await queueState(errorQueue)).messages).to.equal(50);
  });
});
