import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

describe('demos', () => {
  it('demos/microthreads runs a counter beside a ticker, then exits 0', async () => {
    const { stdout } = await run(process.execPath, ['--import', 'tsx', 'demos/microthreads.ts']);
    expect(stdout.trim().split('\n')).to.deep.equal(['counter: 1', 'counter: 2', 'counter: 3', 'ticker: tick 1', 'ticker: tick 2', 'scheduler finished']);
  });
});
