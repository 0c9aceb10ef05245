import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { brokerUrl, throwawayVhost } from './support/broker.js';

const exec = promisify(execFile);

/** Runs a demo script through tsx against the specs' broker; a failure shows its output. */
async function demo(...args: string[]): Promise<string> {
  return demoOn(await brokerUrl(), ...args);
}

async function demoOn(url: string, ...args: string[]): Promise<string> {
  const env = { ...process.env, POSTAGE_URL: url };
  const { stdout } = await exec(process.execPath, ['--import', 'tsx', ...args], { timeout: 30_000, env }).catch(
    (e: Error & { stdout?: string; stderr?: string }) => {
      throw new Error(`the demo failed: ${e.message}\n${e.stdout}\n${e.stderr}`);
    },
  );
  return stdout;
}

describe('demos', () => {
  it('npm run demo:tracing prints one trace tree across three components, and one conversation', async () => {
    const out = (await demo('demos/tracing.ts')).trim().split('\n');
    expect(out[0]).to.match(/^trace [0-9a-f]{32}$/);
    expect(out.slice(1)).to.deep.equal([
      '└─ publish tracing-demo-exchange [place] (gateway)',
      '   └─ process tracing-demo-exchange [place] (orders)',
      '      └─ call tracing-demo-exchange [reserve] (orders)',
      '         └─ process tracing-demo-exchange [reserve] (inventory)',
      'conversation: order-1',
    ]);
  });

  it('demos/microthreads runs a counter beside a ticker, then exits 0', async () => {
    const out = await demo('demos/microthreads.ts');
    expect(out.trim().split('\n')).to.deep.equal([
      'counter: 1',
      'counter: 2',
      'counter: 3',
      'ticker: tick 1',
      'ticker: tick 2',
      'scheduler finished',
    ]);
  });

  it('npm run demo (RPC echo) runs the receiver and the sender end to end, prints the round trip and exits 0', async () => {
    const out = await demo('demos/run.ts', 'rpc_echo');
    expect(out).to.contain('[receiver] received: RPC test message');
    expect(out).to.match(/\[sender\] reply: RPC message received \(round trip [\d.]+ ms\)/);
  });

  it('moves to another vhost with one switch', async () => {
    const other = await throwawayVhost(await brokerUrl(), 'development');
    const out = await demoOn(other, 'demos/run.ts', 'rpc_echo');
    expect(out).to.contain('[receiver] received: RPC test message');
  });

  it('basic_echo delivers a builder-less message_echo to a positional-constructor processor', async () => {
    const out = await demo('demos/run.ts', 'basic_echo');
    expect(out).to.contain('[receiver] received: {"text":"A test message"}');
  });

  it('advanced_echo delivers a typed message_echo(text) from a shared producer class', async () => {
    const out = await demo('demos/run.ts', 'advanced_echo');
    expect(out).to.contain('[receiver] received: A test message');
  });

  it('scheduler_with_processor runs a processor beside a plain microthread until the third tick', async () => {
    const out = await demo('demos/scheduler_with_processor.ts');
    const lines = out.trim().split('\n');
    expect(lines.filter((l) => l.startsWith('processor:'))).to.deep.equal([
      'processor: tick 1',
      'processor: tick 2',
      'processor: tick 3',
    ]);
    expect(lines.at(-1)).to.equal('done');
  });
});
