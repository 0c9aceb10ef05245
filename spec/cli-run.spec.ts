import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { GenericProducer, type MessageSender, type RpcSender } from '../lib/index.js';
import { brokerUrl } from './support/broker.js';
import { deleteTopology, queueState, unique } from './support/topology.js';

/** `postage run` as a process manager starts it, with its output read line by line. */
function launch(module: string, env: Record<string, string>) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'lib/cli/postage.ts', 'run', module], {
    env: { ...process.env, POSTAGE_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  const errors: string[] = [];
  const waiting: Array<{ re: RegExp; resolve: () => void }> = [];
  const feed = (into: string[]) => (chunk: Buffer) => {
    for (const l of String(chunk).split('\n').filter(Boolean)) {
      into.push(l);
      for (const w of waiting.filter((x) => x.re.test(l))) {
        waiting.splice(waiting.indexOf(w), 1);
        w.resolve();
      }
    }
  };
  child.stdout!.on('data', feed(lines));
  child.stderr!.on('data', feed(errors));
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  return {
    child,
    lines,
    errors,
    exited,
    line: (re: RegExp) =>
      new Promise<void>((resolve) =>
        [...lines, ...errors].some((l) => re.test(l)) ? resolve() : waiting.push({ re, resolve }),
      ),
  };
}

describe('postage run', function () {
  this.timeout(60_000);
  let child: ChildProcess | undefined;
  afterEach(() => {
    if (child && child.exitCode === null) child.kill('SIGKILL');
  });

  it('starts every processor a module exports, one line each, serves them, and on SIGTERM lets the handler in flight finish and exits 0', async () => {
    const url = await brokerUrl();
    const exchange = unique('run');
    const run = launch('spec/fixtures/run/two-processors.ts', { POSTAGE_URL: url, EXCHANGE: exchange });
    child = run.child;
    try {
      await run.line(/^ready: slow /);
      await run.line(/^ready: greeter /);
      expect(run.lines.filter((l) => l.startsWith('ready:')).sort()).to.deep.equal([
        `ready: greeter (processor) on ${exchange}/greet -> ${exchange}.greet`,
        `ready: slow (processor) on ${exchange}/slow -> ${exchange}.slow`,
      ]);
      const ex = { name: exchange, type: 'direct', durable: false } as const;
      class Client extends GenericProducer {
        static override eks = [[ex, 'greet'] as const];
        declare rpc_greet: RpcSender;
        declare message_slow: MessageSender;
      }
      const p = await Client.create({ url });
      try {
        const r = await p.rpc_greet({ who: 'run' }, { _timeout: 10, _max_retry: 0 });
        expect(r.body.content.value).to.equal('hello run');
        await p.message_slow({}, { _key: 'slow' });
      } finally {
        await p.close();
      }
      await run.line(/^slow: started$/);
      run.child.kill('SIGTERM');
      const [code] = await run.exited;
      expect(code).to.equal(0);
      expect(run.lines).to.include('slow: finished');
      expect(await queueState(`${exchange}.slow`)).to.include({ messages: 0 });
    } finally {
      await deleteTopology([`${exchange}.greet`, `${exchange}.slow`], [exchange]).catch(() => undefined);
    }
  });

  it('restarts a component on a restart command as the launcher: the old process exits first, the new one is its child, and SIGTERM still stops it with 0', async () => {
    const url = await brokerUrl();
    const exchange = unique('run-restart');
    const run = launch('spec/fixtures/run/two-processors.ts', { POSTAGE_URL: url, EXCHANGE: exchange });
    child = run.child;
    try {
      await run.line(/^ready: greeter /);
      const ex = { name: exchange, type: 'direct', durable: false } as const;
      class Client extends GenericProducer {
        static override eks = [[ex, 'greet'] as const];
        declare message_restart: MessageSender;
        declare rpc_greet: RpcSender;
      }
      const p = await Client.create({ url });
      try {
        await p.message_restart({});
        await run.line(/asked to restart: starting it again$/);
        // Served again, by the new process, while the launcher is still the one this spec started.
        await new Promise<void>((resolve) => {
          const check = () =>
            run.lines.filter((l) => l.startsWith('ready: greeter')).length >= 2 ? resolve() : setTimeout(check, 50);
          check();
        });
        const r = await p.rpc_greet({ who: 'again' }, { _timeout: 10, _max_retry: 0 });
        expect(r.body.content.value).to.equal('hello again');
      } finally {
        await p.close();
      }
      expect(run.child.exitCode).to.equal(null);
      run.child.kill('SIGTERM');
      const [code] = await run.exited;
      expect(code).to.equal(0);
    } finally {
      await deleteTopology([`${exchange}.greet`, `${exchange}.slow`], [exchange]).catch(() => undefined);
    }
  });

  for (const [what, module, message] of [
    ['exports nothing to run', 'spec/fixtures/run/nothing.ts', /exports nothing to run: export a MessageProcessor/],
    ['does not exist', 'spec/fixtures/run/missing.ts', /no module at .*missing\.ts/],
    [
      'throws while it loads',
      'spec/fixtures/run/throws.ts',
      /throws\.ts cannot be loaded: the configuration file is missing$/,
    ],
  ] as const) {
    it(`exits 2 with one line for a module that ${what}`, async () => {
      const run = launch(module, { POSTAGE_URL: await brokerUrl() });
      child = run.child;
      const [code] = await run.exited;
      expect(code).to.equal(2);
      expect(run.errors).to.have.length(1);
      expect(run.errors[0]).to.match(message);
    });
  }

  it('exits 3 with one line when the broker refuses the components', async () => {
    const u = new URL(await brokerUrl());
    u.password = 'wrong-password';
    const run = launch('spec/fixtures/run/two-processors.ts', { POSTAGE_URL: u.toString(), EXCHANGE: unique('run') });
    child = run.child;
    const [code] = await run.exited;
    expect(code).to.equal(3);
    expect(run.errors.join('\n'))
      .to.match(/refused user/)
      .and.not.contain('wrong-password');
  });
});
