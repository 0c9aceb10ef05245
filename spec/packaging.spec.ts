/**
 * The package as users get it: `npm pack`, installed into throwaway projects
 * (plain JavaScript ESM without decorators, CommonJS TypeScript with standard
 * decorators, and a NestJS-style CommonJS project with experimentalDecorators),
 * each compiled with its own tsconfig and run against the broker, sending and
 * handling a message and an RPC; without the optional peers (pg, redis) it
 * loads and runs, and postage-ts/postgres works once pg is installed.
 */
import { expect } from 'chai';
import amqp from 'amqplib';
import { execFile, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { brokerUrl } from './support/broker.js';
import { envelopeBytes } from './support/envelopes.js';
import { PG_URL } from './stores/support.js';

const exec = promisify(execFile);
const ROOT = resolve('.');
const TSC = join(ROOT, 'node_modules/typescript/bin/tsc');

async function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  try {
    const { stdout } = await exec(cmd, args, { cwd, env, timeout: 120_000, maxBuffer: 16 * 1024 * 1024 });
    return stdout;
  } catch (err) {
    const e = err as Error & { stdout?: string; stderr?: string };
    throw new Error(`${cmd} ${args.join(' ')} failed in ${cwd}: ${e.message}\n${e.stdout}\n${e.stderr}`);
  }
}

/** The version of a package the repository has installed. */
function installed(name: string): string {
  return (JSON.parse(readFileSync(join(ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string })
    .version;
}

describe('the npm package', function () {
  this.timeout(240_000);
  let dir: string;
  let url: string;

  before(async () => {
    url = await brokerUrl();
    dir = mkdtempSync(join(tmpdir(), 'postage-pack-'));
    await run('npm', ['pack', '--silent', '--pack-destination', dir], ROOT);
    const tarball = readdirSync(dir).find((f) => f.endsWith('.tgz'))!;
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'postage-ts-user', private: true }));
    // The Nest app: NestJS 12 here, in this project of its own, while the repository develops against NestJS 11
    // (12's file-type wants Node 22, and would warn EBADENGINE at every npm install on the Node 20 the README names);
    // the rest at the versions the repository tests with (from npm's cache after npm ci).
    const nest = [
      ...['@nestjs/common@^12.6.3', '@nestjs/core@^12.6.3', '@nestjs/terminus@^12.1.0'],
      ...['reflect-metadata', 'rxjs'].map((m) => `${m}@${installed(m)}`),
    ];
    await run(
      'npm',
      ['install', '--prefer-offline', '--no-audit', '--no-fund', '--silent', join(dir, tarball), ...nest],
      dir,
    );
    cpSync(join(ROOT, 'spec/fixtures/projects'), dir, { recursive: true });
  });
  /** Launchers still running (a spec that failed halfway): stopped with the suite, their components with them. */
  const launched = new Set<ReturnType<typeof spawn>>();
  after(() => {
    for (const c of launched) c.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  });

  async function component(file: string, ...args: string[]): Promise<string[]> {
    return componentWith({}, file, ...args);
  }

  async function componentWith(env: NodeJS.ProcessEnv, file: string, ...args: string[]): Promise<string[]> {
    const out = await run(process.execPath, [file, String(process.pid), ...args], dir, {
      ...process.env,
      POSTAGE_URL: url,
      ...env,
    });
    return out.trim().split('\n');
  }

  async function compile(project: string): Promise<void> {
    await run(
      process.execPath,
      [TSC, '-p', join(project, 'tsconfig.json'), '--typeRoots', join(ROOT, 'node_modules/@types')],
      dir,
    );
  }

  it('ships the ESM and CommonJS builds, their types, and no sources or specs', async () => {
    const files = (await run('tar', ['-tzf', readdirSync(dir).find((f) => f.endsWith('.tgz'))!], dir)).split('\n');
    expect(files).to.include.members([
      'package/dist/index.js',
      'package/dist/index.d.ts',
      'package/dist/cjs/index.js',
      'package/dist/cjs/index.d.ts',
      'package/dist/cjs/package.json',
      'package/dist/stores/redis/index.js',
      'package/dist/cjs/stores/redis/index.js',
    ]);
    expect(files.filter((f) => f.startsWith('package/lib/') || f.startsWith('package/spec/'))).to.deep.equal([]);
  });

  it('loads and runs without pg or a Redis client installed (both optional peers), postage-ts/redis included', async () => {
    // npm installs no optional peer by itself: the project has neither, as a user who needs no store has.
    for (const m of ['pg', 'redis', '@redis/client'])
      expect(existsSync(join(dir, 'node_modules', m)), `${m} in the project`).to.equal(false);
    const probe = (type: string, code: string) => run(process.execPath, [`--input-type=${type}`, '-e', code], dir);
    expect(
      (
        await probe(
          'module',
          "const m = await import('postage-ts'); const r = await import('postage-ts/redis');" +
            'console.log(typeof m.MessageProcessor, typeof r.RedisIdempotencyStore)',
        )
      ).trim(),
    ).to.equal('function function');
    expect(
      (
        await probe(
          'commonjs',
          "const m = require('postage-ts'); const r = require('postage-ts/redis');" +
            'console.log(typeof m.MessageProcessor, typeof r.RedisIdempotencyStore)',
        )
      ).trim(),
    ).to.equal('function function');
    // And a component sends and handles a message and an RPC on the broker with neither installed.
    expect(await component('plain-esm/component.mjs')).to.include.members(['handled: from plain ESM', 'rpc: RPC']);
  });

  it('serves postage-ts/testing to ESM and CommonJS alike', async () => {
    const probe = (type: string, code: string) => run(process.execPath, [`--input-type=${type}`, '-e', code], dir);
    const esm = await probe(
      'module',
      "import('postage-ts/testing').then((t) => console.log(typeof t.ProcessorHarness, typeof t.testProducer, typeof " +
        't.PrivateBroker))',
    );
    const cjs = await probe(
      'commonjs',
      "const t = require('postage-ts/testing'); console.log(typeof t.ProcessorHarness, typeof t.testProducer, typeof " +
        't.PrivateBroker)',
    );
    expect(esm.trim()).to.equal('function function function');
    expect(cjs.trim()).to.equal('function function function');
  });

  it('type-checks every subpath with skipLibCheck off, under node16 CommonJS and bundler resolution', async () => {
    // The declarations as shipped: a name one of them imports must be exported by the other (stripInternal drops
    // @internal ones), and a CommonJS project's require types must be CommonJS declarations.
    await compile('types-node16');
    await compile('types-bundler');
  });

  /** `npx postage run FILE` in the project: resolves once it handled one message and exited by itself on SIGTERM. */
  async function postageRun(file: string): Promise<{ code: number | null; out: string }> {
    const exchange = `packaging-run-${process.pid}-${file.replace(/\W/g, '')}`;
    const child = spawn(join(dir, 'node_modules/.bin/postage'), ['run', file], {
      cwd: dir,
      env: { ...process.env, POSTAGE_URL: url, EXCHANGE: exchange, POSTAGE_LOG_LEVEL: 'warn' },
    });
    launched.add(child);
    child.once('exit', () => launched.delete(child));
    const failed = new Promise<never>((_, reject) => child.once('error', reject));
    let out = '';
    // Output is collected from the start; a wait looks at what came already, then at each new chunk.
    const waits = new Set<() => void>();
    const feed = (d: Buffer) => {
      out += d.toString();
      for (const w of waits) w();
    };
    child.stdout.on('data', feed);
    child.stderr.on('data', feed);
    const seen = (re: RegExp) =>
      new Promise<void>((resolve, reject) => {
        const check = () => {
          if (!re.test(out)) return;
          waits.delete(check);
          resolve();
        };
        waits.add(check);
        child.once('exit', () => reject(new Error(`postage run ${file} exited early: ${out}`)));
        check();
      });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    failed.catch(() => undefined);
    try {
      await Promise.race([seen(/^ready: /m), failed]);
      const conn = await amqp.connect(url);
      try {
        const ch = await conn.createConfirmChannel();
        ch.publish(exchange, 'greet', envelopeBytes('greet', { who: file }));
        await ch.waitForConfirms();
      } finally {
        await conn.close();
      }
      await seen(/^handled: /m);
    } finally {
      child.kill('SIGTERM');
    }
    return { code: await exited, out };
  }

  for (const [what, file, kind] of [
    ['an ESM .mjs component', 'run/component.mjs', 'esm'],
    ["a CommonJS .cjs component (postage-ts's CommonJS build under the ESM CLI)", 'run/component.cjs', 'cjs'],
  ] as const) {
    it(`runs ${what} with postage run: it handles a message, then exits 0 on SIGTERM`, async () => {
      const r = await postageRun(file);
      expect(r.out).to.contain(`handled: ${file} (${kind})`);
      expect(r.code, r.out).to.equal(0);
    });
  }

  it('runs a .ts component with postage run where the project has tsx: it handles a message, then exits 0 on SIGTERM', async () => {
    await run(
      'npm',
      ['install', '--prefer-offline', '--no-audit', '--no-fund', '--silent', `tsx@${installed('tsx')}`],
      dir,
    );
    const r = await postageRun('run/component.ts');
    expect(r.out).to.contain('handled: run/component.ts (ts)');
    expect(r.code, r.out).to.equal(0);
    // And in a project whose package.json says "type": "module".
    const esm = await postageRun('run-esm/component.ts');
    expect(esm.out).to.contain('handled: run-esm/component.ts (ts, ESM project)');
    expect(esm.code, esm.out).to.equal(0);
  });

  it("runs the README's consumer-first example as written: postage run orders.ts, then the rpc the README shows prints 40", async () => {
    // The first block of the README's "Use it in your project", word for word, in a project with postage-ts and tsx
    // installed.
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const use = readme.slice(readme.indexOf('## Use it in your project'));
    const block = /```ts\n([\s\S]*?)```/.exec(use)![1];
    writeFileSync(join(dir, 'orders.ts'), block);
    const env = { ...process.env, POSTAGE_URL: url, POSTAGE_LOG_LEVEL: 'warn' };
    const child = spawn(join(dir, 'node_modules/.bin/postage'), ['run', './orders.ts'], { cwd: dir, env });
    launched.add(child);
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    let out = '';
    try {
      await new Promise<void>((resolve, reject) => {
        const feed = (d: Buffer) => {
          out += d.toString();
          if (/^ready: orders /m.test(out)) resolve();
        };
        child.stdout.on('data', feed);
        child.stderr.on('data', feed);
        child.once('exit', () => reject(new Error(`postage run ./orders.ts exited early: ${out}`)));
      });
      expect(
        (
          await run(
            join(dir, 'node_modules/.bin/postage'),
            ['rpc', 'orders', 'price', 'price', '{"item": "book"}'],
            dir,
            env,
          )
        ).trim(),
      ).to.equal('40');
    } finally {
      child.kill('SIGTERM');
      const code = await exited;
      launched.delete(child);
      const conn = await amqp.connect(url);
      const ch = await conn.createChannel();
      for (const q of ['orders.place', 'orders.price']) await ch.deleteQueue(q);
      await ch.deleteExchange('orders');
      await conn.close();
      expect(code, out).to.equal(0);
    }
  });

  it('works from plain JavaScript (ESM) with handlers registered without decorators', async () => {
    expect(await component('plain-esm/component.mjs')).to.include.members([
      'handled: from plain ESM',
      'sent',
      'rpc: RPC',
    ]);
  });

  it('works from a CommonJS TypeScript project (require included) with standard decorators', async () => {
    await compile('ts-cjs');
    const lines = await component('ts-cjs/out/component.js', 'CommonJS');
    expect(lines).to.include.members([
      'require: function',
      'handled: from CommonJS',
      'audited: from CommonJS',
      'sent',
      'rpc: RPC',
    ]);
  });

  it('works from a NestJS-style project compiled with experimentalDecorators, exactly as with standard ones', async () => {
    await compile('ts-legacy');
    const lines = await component('ts-legacy/out/component.js', 'experimentalDecorators');
    expect(lines).to.include.members([
      'require: function',
      'handled: from experimentalDecorators',
      'audited: from experimentalDecorators',
      'sent',
      'rpc: RPC',
    ]);
  });

  it('runs in a NestJS 12 application through postage-ts/nestjs: injected processor and producer, health, remote quit refused, app.close() drains', async () => {
    await compile('nest');
    const queue = `nest-${process.pid}`;
    try {
      const lines = await componentWith({ POSTAGE_LOG_LEVEL: 'info' }, 'nest/out/app.js');
      expect(lines, lines.join('\n')).to.include.members([
        'health: ok',
        'handled: one',
        'rpc count: 1',
        'still running: one,after-quit',
        // The slow order was in flight when app.close() was called: close waited for it.
        'closed with: one,after-quit,slow',
        'health after close: down',
      ]);
      // Postage's warnings reach Nest's LoggerService, with the fix in them.
      expect(lines.find((l) => l.startsWith('warn [OrdersProcessor]: quit command from OrdersProducer'))).to.contain(
        'refused: this processor has remoteControl: false',
      );
      expect(lines.find((l) => l.startsWith('warn [OrdersProcessor]: no handler takes command/gret'))).to.contain(
        'It handles command/quit, restart, order',
      );
      expect(lines).to.include(
        "warn [nestjs]: Audit opened its own connection instead of the module's: inject the module's options and " +
          'spread them, constructor(@InjectPostage() postage: PostageComponentOptions) { super({ ...postage, eqk }) }',
      );
      expect(lines.some((l) => l.startsWith('failed') || l.startsWith('error'))).to.equal(false);
      // Every order was acked before the app ended: nothing waits in its queue for a redelivery.
      const conn = await amqp.connect(url);
      try {
        const ch = await conn.createChannel();
        const { messageCount } = await ch.checkQueue(queue);
        expect(messageCount).to.equal(0);
      } finally {
        await conn.close();
      }
    } finally {
      const conn = await amqp.connect(url);
      await (await conn.createChannel()).deleteQueue(queue).catch(() => undefined);
      await conn.close().catch(() => undefined);
    }
  });

  it('loads postage-ts/postgres once pg is installed, and its store makes its tables on the real PostgreSQL', async () => {
    await run(
      'npm',
      ['install', '--prefer-offline', '--no-audit', '--no-fund', '--silent', `pg@${installed('pg')}`],
      dir,
    );
    const schema = `postage_pack_${process.pid}`;
    const code =
      "const pg = require('pg'); const { PostgresStore } = require('postage-ts/postgres');" +
      `const pool = new pg.Pool({ connectionString: ${JSON.stringify(PG_URL)} });` +
      `const store = new PostgresStore({ pool, schema: ${JSON.stringify(schema)} });` +
      'store.migrate().then(() => store.backlog()).then((b) => console.log(JSON.stringify(b)))' +
      `.finally(() => pool.query('DROP SCHEMA IF EXISTS ${schema} CASCADE').finally(() => pool.end()));`;
    const out = await run(process.execPath, ['--input-type=commonjs', '-e', code], dir);
    expect(JSON.parse(out.trim())).to.deep.equal({ waiting: 0, oldestMs: 0, failed: 0 });
    const esm = await run(
      process.execPath,
      ['--input-type=module', '-e', "import('postage-ts/postgres').then((m) => console.log(typeof m.PostgresStore))"],
      dir,
    );
    expect(esm.trim()).to.equal('function');
  });
});
