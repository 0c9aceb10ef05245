import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const exec = promisify(execFile);
const OUT = 'spec/.docs';

/** Every ```ts block of the README and docs/, one module each. */
function blocks(): Array<{ file: string; index: number; code: string }> {
  const files = ['README.md', ...readdirSync('docs').filter((f) => f.endsWith('.md')).map((f) => join('docs', f))];
  return files.flatMap((file) =>
    [...readFileSync(file, 'utf8').matchAll(/```ts\n([\s\S]*?)```/g)].map((m, index) => ({ file, index, code: m[1] })),
  );
}

describe('docs', function () {
  this.timeout(120_000);

  it('has a ts block in every guide that shows code', () => {
    const files = new Set(blocks().map((b) => b.file));
    for (const f of ['README.md', 'docs/concepts.md', 'docs/producers.md', 'docs/processors.md', 'docs/components.md', 'docs/configuration.md']) {
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
        // As a user's project would: `postage-ts` is the package, and no noImplicitOverride.
        compilerOptions: { noImplicitOverride: false, paths: { 'postage-ts': ['../../lib/index.ts'] }, allowImportingTsExtensions: true },
        include: ['*.ts'],
        exclude: [],
      }),
    );
    const r = await exec(process.execPath, ['node_modules/typescript/bin/tsc', '-p', join(OUT, 'tsconfig.json')]).then(
      () => '',
      (e: { stdout?: string }) => e.stdout ?? String(e),
    );
    const located = r.replace(/spec\/\.docs\/(\S+?\.ts)/g, (_, n: string) => written.find((w) => w.name === n)?.where ?? n);
    expect(located, located).to.equal('');
  });
});
