/**
 * A contract module is shared between services: importing it must load no amqplib and start nothing. Each case runs
 * in a fresh Node process and reports which of amqplib's files Node loaded; the library's own entry point, which
 * does load it, shows that the check would see it.
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';

const exec = promisify(execFile);

/** Imports `file` in a fresh process (through tsx for TypeScript) and says whether amqplib was loaded, and handles. */
async function load(file: string, tsx: boolean): Promise<{ amqplib: boolean; handles: string[] }> {
  const script = `
    import { createRequire } from 'node:module';
    const mod = await import(${JSON.stringify(pathToFileURL(resolve(file)).href)});
    const loaded = Object.keys(createRequire(import.meta.url).cache);
    const handles = process.getActiveResourcesInfo().filter((r) => r !== 'TTYWrap' && r !== 'PipeWrap');
    const amqplib = loaded.some((f) => /[\\\\/]amqplib[\\\\/]/.test(f));
    console.log(JSON.stringify({ amqplib, handles, keys: Object.keys(mod) }));
  `;
  const { stdout } = await exec(
    process.execPath,
    [...(tsx ? ['--import', 'tsx'] : []), '--input-type=module', '-e', script],
    {
      env: { ...process.env, NODE_OPTIONS: '' },
    },
  );
  return JSON.parse(stdout.trim().split('\n').at(-1)!);
}

describe('a contract module', function () {
  this.timeout(60_000);

  it('loads no amqplib and starts nothing when imported (a contract importing postage-ts/contract)', async () => {
    const r = await load('spec/contract/fixtures/pricing.contract.ts', true);
    expect(r.amqplib).to.equal(false);
    expect(r.handles).to.deep.equal([]);
  });

  it('loads no amqplib through the published postage-ts/contract entry (dist/contract/index.js)', async () => {
    const r = await load('dist/contract/index.js', false);
    expect(r.amqplib).to.equal(false);
  });

  it('(the check sees amqplib where it is loaded: the main entry loads it)', async () => {
    const r = await load('lib/index.ts', true);
    expect(r.amqplib).to.equal(true);
  });
});
