import { expect } from 'chai';
import { execFile } from 'node:child_process';
import amqp from 'amqplib';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { brokerUrl } from './support/broker.js';
import { launch, postage } from './support/cli.js';

const exec = promisify(execFile);
const OUT = 'spec/.docs';

interface Block {
  file: string;
  index: number;
  code: string;
  /** A ```ts run block is a whole program: the spec runs it against the broker. */
  run: boolean;
  /** Lines its output must contain, from the `<!-- output: a | b -->` comment after it. */
  output: string[];
}

/** Every ```ts block of the README and docs/, one module each. */
function blocks(): Block[] {
  const files = [
    'README.md',
    ...readdirSync('docs')
      .filter((f) => f.endsWith('.md'))
      .map((f) => join('docs', f)),
  ];
  return files.flatMap((file) =>
    [...readFileSync(file, 'utf8').matchAll(/```ts( run)?\n([\s\S]*?)```(?:\s*<!-- output: (.*?) -->)?/g)].map(
      (m, index) => ({
        file,
        index,
        code: m[2],
        run: m[1] !== undefined,
        output: m[3] ? m[3].split(' | ').map((l) => l.trim()) : [],
      }),
    ),
  );
}

describe('docs', function () {
  this.timeout(120_000);

  it('has a ts block in every guide that shows code', () => {
    const files = new Set(blocks().map((b) => b.file));
    for (const f of [
      'README.md',
      'docs/concepts.md',
      'docs/producers.md',
      'docs/processors.md',
      'docs/components.md',
      'docs/configuration.md',
    ]) {
      expect(files, f).to.include(f);
    }
  });

  it('every ts code block in README.md and docs/ compiles against the library', async () => {
    rmSync(OUT, { recursive: true, force: true });
    mkdirSync(OUT, { recursive: true });
    const written = blocks().map((b) => {
      const name = `${b.file.replace(/[/.]/g, '_')}_${b.index}.ts`;
      // `export {}` makes each block its own module (top-level await, no name clashes).
      writeFileSync(join(OUT, name), `${b.code}\nexport {};\n`);
      return { name, where: `${b.file} block ${b.index + 1}` };
    });
    writeFileSync(
      join(OUT, 'tsconfig.json'),
      JSON.stringify({
        extends: '../../tsconfig.json',
        // As a user's project would: `postage-ts` is the package; the project's own strictness.
        compilerOptions: {
          paths: {
            'postage-ts': ['../../lib/index.ts'],
            'postage-ts/testing': ['../../lib/testing/index.ts'],
            'postage-ts/postgres': ['../../lib/stores/postgres/index.ts'],
            'postage-ts/contract': ['../../lib/contract/index.ts'],
            'postage-ts/redis': ['../../lib/stores/redis/index.ts'],
          },
          allowImportingTsExtensions: true,
        },
        include: ['*.ts'],
        exclude: [],
      }),
    );
    const r = await exec(process.execPath, ['node_modules/typescript/bin/tsc', '-p', join(OUT, 'tsconfig.json')]).then(
      () => '',
      (e: { stdout?: string }) => e.stdout ?? String(e),
    );
    const located = r.replace(
      /spec\/\.docs\/(\S+?\.ts)/g,
      (_, n: string) => written.find((w) => w.name === n)?.where ?? n,
    );
    expect(located, located).to.equal('');
  });

  it('gives each exchange one type across every page (a class without `type` is direct)', () => {
    const types = new Map<string, Set<string>>();
    const note = (name: string, type: string) => types.set(name, (types.get(name) ?? new Set()).add(type));
    for (const b of blocks()) {
      for (const m of b.code.matchAll(/class \w+ extends Exchange \{([^}]*)\}/g)) {
        const name = /static (?:override )?name = '([^']+)'/.exec(m[1])?.[1];
        if (name) note(name, /static (?:override )?type = '([^']+)'/.exec(m[1])?.[1] ?? 'direct');
      }
      for (const m of b.code.matchAll(/\{ name: '([^']+)', type: '([^']+)'/g)) note(m[1], m[2]);
    }
    const clashes = [...types].filter(([, t]) => t.size > 1).map(([n, t]) => `${n}: ${[...t].join(' / ')}`);
    expect(clashes).to.deep.equal([]);
    expect(types.get('images-exchange')).to.deep.equal(new Set(['topic']));
  });

  it('runs the README quick start, the producers guide and the components guide (their blocks are marked ```ts run)', () => {
    const runnable = new Set(
      blocks()
        .filter((b) => b.run)
        .map((b) => b.file),
    );
    expect([...runnable]).to.include.members(['README.md', 'docs/producers.md', 'docs/components.md']);
  });

  describe('runnable examples (```ts run), against the broker', () => {
    for (const b of blocks().filter((b) => b.run)) {
      it(`${b.file} block ${b.index + 1} runs, exits by itself, and prints what its text says`, async () => {
        const dir = mkdtempSync(join(tmpdir(), 'postage-doc-'));
        try {
          const file = join(dir, 'example.mts');
          // The package name resolves to the library's source, as it would to the installed package.
          const code = b.code
            .replaceAll("from 'postage-ts'", `from '${resolve('lib/index.ts')}'`)
            .replaceAll("from 'postage-ts/testing'", `from '${resolve('lib/testing/index.ts')}'`);
          writeFileSync(file, `${code}\nexport {};\n`);
          const { stdout } = await exec(process.execPath, ['--import', 'tsx', file], {
            timeout: 60_000,
            env: { ...process.env, POSTAGE_URL: await brokerUrl() },
          }).catch((e: Error & { stdout?: string; stderr?: string }) => {
            throw new Error(`${b.file} block ${b.index + 1} failed: ${e.message}\n${e.stdout}\n${e.stderr}`);
          });
          const lines = stdout.trim().split('\n');
          expect(b.output, 'a runnable block says what it prints in an <!-- output: … --> comment').to.not.be.empty;
          expect(lines).to.include.members(b.output);
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      });
    }
  });

  it("runs operations.md's Thumbnailer with postage run, and it answers the page's ping, rpc and describe as the page says", async () => {
    const block = blocks().find(
      (b) => b.file === 'docs/operations.md' && b.code.includes('class Thumbnailer extends GenericApplication'),
    );
    expect(block, 'the GenericApplication example in docs/operations.md').to.not.equal(undefined);
    const url = await brokerUrl();
    const dir = mkdtempSync(join(tmpdir(), 'postage-doc-'));
    const file = join(dir, 'thumbnailer.mts');
    writeFileSync(file, block!.code.replaceAll("from 'postage-ts'", `from '${resolve('lib/index.ts')}'`));
    const child = await launch(['run', file], { url, env: { POSTAGE_LOG_LEVEL: 'warn' } });
    const cli = async (...args: string[]) => {
      const r = await postage(args, { url, env: { POSTAGE_LOG_LEVEL: 'warn' } });
      expect(r.code, `postage ${args.join(' ')}: ${r.stderr}`).to.equal(0);
      return r.stdout;
    };
    try {
      await child.line(/^ready: thumbnailer /);
      expect(await cli('ping', 'thumbnailer')).to.match(/^thumbnailer\s+processor\s+\d+@/m);
      expect(
        (await cli('rpc', 'images-exchange', 'resize', 'size', '{"path": "/tmp/a.png"}', '--timeout', '2')).trim(),
      ).to.equal('{"width":640,"height":480}');
      expect(await cli('describe', 'thumbnailer'))
        .to.match(/command\s+resize/)
        .and.match(/command\s+size/);
      child.child.kill('SIGTERM');
      expect((await child.exited)[0]).to.equal(0);
    } finally {
      child.kill();
      rmSync(dir, { recursive: true, force: true });
      const conn = await amqp.connect(url);
      await (await conn.createChannel()).deleteQueue('thumbnails').catch(() => undefined);
      await conn.close().catch(() => undefined);
    }
  });
});
