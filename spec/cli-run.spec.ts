import { expect } from 'chai';
import { brokerUrl } from './support/broker.js';
import { launch, type Launched } from './support/cli.js';
import { producerTo } from './support/components.js';
import { until } from './support/wait.js';
import { deleteTopology, queueState, unique } from './support/topology.js';

const FIXTURE = 'spec/fixtures/run/class-and-instance.ts';

/** `postage run` as a process manager starts it, with its output read line by line. */
function run(module: string, env: Record<string, string>): Promise<Launched> {
  return launch(['run', module], { env: { POSTAGE_LOG_LEVEL: 'warn', ...env } });
}

describe('postage run', function () {
  this.timeout(60_000);
  let started: Launched | undefined;
  afterEach(() => started?.kill());

  it('starts every processor a module exports, one line each, serves them, and on SIGTERM lets the handler in flight finish and exits 0', async () => {
    const url = await brokerUrl();
    const exchange = unique('run');
    const cli = await run('spec/fixtures/run/two-processors.ts', { POSTAGE_URL: url, EXCHANGE: exchange });
    started = cli;
    try {
      await cli.line(/^ready: slow /);
      await cli.line(/^ready: greeter /);
      expect(cli.lines.filter((l) => l.startsWith('ready:')).sort()).to.deep.equal([
        `ready: greeter (processor) on ${exchange}/greet -> ${exchange}.greet`,
        `ready: slow (processor) on ${exchange}/slow -> ${exchange}.slow`,
      ]);
      const p = await producerTo(url, exchange, 'greet');
      try {
        const r = await p.rpc_greet({ who: 'run' }, { _timeout: 10, _max_retry: 0 });
        expect(r.body.content.value).to.equal('hello run');
        await p.message_slow({}, { _key: 'slow' });
      } finally {
        await p.close();
      }
      await cli.line(/^slow: started$/);
      cli.child.kill('SIGTERM');
      const [code] = await cli.exited;
      expect(code).to.equal(0);
      expect(cli.lines).to.include('slow: finished');
      expect(await queueState(`${exchange}.slow`)).to.include({ messages: 0 });
    } finally {
      await deleteTopology([`${exchange}.greet`, `${exchange}.slow`], [exchange]).catch(() => undefined);
    }
  });

  it('restarts a component on a restart command as the launcher: the old process exits first, the new one is its child, and SIGTERM still stops it with 0', async () => {
    const url = await brokerUrl();
    const exchange = unique('run-restart');
    const cli = await run('spec/fixtures/run/two-processors.ts', { POSTAGE_URL: url, EXCHANGE: exchange });
    started = cli;
    try {
      await cli.line(/^ready: greeter /);
      const p = await producerTo(url, exchange, 'greet');
      try {
        await p.message_restart({});
        // The processor says so (at warn); the launcher's own line, that it starts it again, is info.
        await cli.line(/restarting: closing, then postage run starts this component again/);
        // Served again, by the new process, while the launcher is still the one this spec started.
        await until(() => cli.lines.filter((l) => l.startsWith('ready: greeter')).length >= 2, {
          timeout: 30_000,
          message: () => `a second 'ready: greeter' line; postage run printed:\n${cli.lines.join('\n')}`,
        });
        const r = await p.rpc_greet({ who: 'again' }, { _timeout: 10, _max_retry: 0 });
        expect(r.body.content.value).to.equal('hello again');
      } finally {
        await p.close();
      }
      expect(cli.child.exitCode).to.equal(null);
      cli.child.kill('SIGTERM');
      const [code] = await cli.exited;
      expect(code).to.equal(0);
    } finally {
      await deleteTopology([`${exchange}.greet`, `${exchange}.slow`], [exchange]).catch(() => undefined);
    }
  });

  for (const [what, module, message] of [
    ['exports nothing to run', 'spec/fixtures/run/nothing.ts', /exports nothing to run: export a MessageProcessor/],
    ['does not exist', 'spec/fixtures/run/missing.ts', /no module at .*missing\.ts/],
    [
      'exports a processor class whose constructor takes arguments',
      'spec/fixtures/run/needs-arguments.ts',
      /export 'NamedWorker' is a processor class whose constructor takes arguments.*export an instance instead/,
    ],
    [
      'throws while it loads',
      'spec/fixtures/run/throws.ts',
      /throws\.ts cannot be loaded: the configuration file is missing$/,
    ],
  ] as const) {
    it(`exits 2 with one line for a module that ${what}`, async () => {
      const cli = await run(module, { POSTAGE_URL: await brokerUrl() });
      started = cli;
      const [code] = await cli.exited;
      expect(code).to.equal(2);
      expect(cli.errors).to.have.length(1);
      expect(cli.errors[0]).to.match(message);
    });
  }

  it('starts one consumer, the instance, for a module exporting a processor class and an instance of it', async () => {
    const url = await brokerUrl();
    const exchange = unique('run-once');
    const cli = await run('spec/fixtures/run/class-and-instance.ts', { POSTAGE_URL: url, EXCHANGE: exchange });
    started = cli;
    try {
      await cli.line(/^ready: echo /);
      const p = await producerTo(url, exchange, 'echo');
      try {
        // Answered, so every component the module yields is consuming by now.
        const r = await p.rpc_echo({ text: 'once' }, { _timeout: 10, _max_retry: 0 });
        expect(r.body.content.value).to.equal('once');
      } finally {
        await p.close();
      }
      expect(cli.lines.filter((l) => l.startsWith('ready:'))).to.deep.equal([
        `ready: echo (processor) on ${exchange}/echo -> ${exchange}.echo`,
      ]);
      expect(await queueState(`${exchange}.echo`)).to.include({ consumers: 1 });
      cli.child.kill('SIGTERM');
      const [code] = await cli.exited;
      expect(code).to.equal(0);
    } finally {
      await deleteTopology([`${exchange}.echo`], [exchange]).catch(() => undefined);
    }
  });

  it('logs one line for a signal: readable on a terminal (--log-format pretty), JSON lines otherwise', async () => {
    const url = await brokerUrl();
    const exchange = unique('run-log');
    for (const format of ['pretty', 'json'] as const) {
      const cli = await launch(['run', ...(format === 'pretty' ? ['--log-format', 'pretty'] : []), FIXTURE], {
        env: { POSTAGE_LOG_LEVEL: 'info', POSTAGE_URL: url, EXCHANGE: exchange },
      });
      started = cli;
      try {
        await cli.line(/^ready: echo /);
        cli.child.kill('SIGTERM');
        const [code] = await cli.exited;
        expect(code).to.equal(0);
        const said = cli.errors.filter((l) => /closing/.test(l));
        expect(said, cli.errors.join('\n')).to.have.length(1);
        if (format === 'pretty')
          expect(said[0]).to.match(
            /^\d\d:\d\d:\d\d\.\d{3} INFO {2}postage run: SIGTERM: closing 1 component gracefully {2}signal=SIGTERM/,
          );
        else {
          for (const l of cli.errors) expect(() => JSON.parse(l), l).not.to.throw();
          expect(JSON.parse(said[0])).to.include({ level: 30, component: 'postage run', signal: 'SIGTERM' });
        }
      } finally {
        await deleteTopology([`${exchange}.echo`], [exchange]).catch(() => undefined);
      }
    }
  });

  it('exits 3 with one line when the broker refuses the components', async () => {
    const u = new URL(await brokerUrl());
    u.password = 'wrong-password';
    const cli = await run('spec/fixtures/run/two-processors.ts', {
      POSTAGE_URL: u.toString(),
      EXCHANGE: unique('run'),
    });
    started = cli;
    const [code] = await cli.exited;
    expect(code).to.equal(3);
    expect(cli.errors.join('\n'))
      .to.match(/refused user/)
      .and.not.contain('wrong-password');
  });
});
