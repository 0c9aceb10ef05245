import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { brokerUrl } from './support/broker.js';

const run = promisify(execFile);

describe('demos', () => {
  it('demos/microthreads runs a counter beside a ticker, then exits 0', async () => {
    const { stdout } = await run(process.execPath, ['--import', 'tsx', 'demos/microthreads.ts']);
    expect(stdout.trim().split('\n')).to.deep.equal(['counter: 1', 'counter: 2', 'counter: 3', 'ticker: tick 1', 'ticker: tick 2', 'scheduler finished']);
  });
});

describe('npm run demo (RPC echo)', () => {
  it('runs the receiver and the sender end to end, prints the round trip and exits 0', async () => {
    const env = { ...process.env, POSTAGE_URL: await brokerUrl() };
    const { stdout } = await run(process.execPath, ['--import', 'tsx', 'demos/rpc_echo/run.ts'], { timeout: 30_000, env }).catch((e: Error & { stdout?: string; stderr?: string }) => {
      throw new Error(`the demo failed: ${e.message}\n${e.stdout}\n${e.stderr}`);
    });
    expect(stdout).to.contain('[receiver] received: RPC test message');
    expect(stdout).to.match(/\[sender\] reply: RPC message received \(round trip [\d.]+ ms\)/);
  });
});
