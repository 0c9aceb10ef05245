import 'reflect-metadata';
import { expect } from 'chai';
import { once } from 'node:events';
import { spawn } from 'node:child_process';
import amqp from 'amqplib';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import {
  GenericApplication,
  MessageHandler,
  MessageProcessor,
  serve,
  type ProcessorDescription,
} from '../../lib/index.js';
import { POSTAGE_COMPONENT_OPTIONS, PostageModule, type PostageComponentOptions } from '../../lib/nestjs/index.js';
import { brokerUrl } from '../support/broker.js';
import { pinged, postage } from '../support/cli.js';
import { dropConnection, exchangeFixture } from '../support/components.js';
import { deleteTopology, queueState, unique } from '../support/topology.js';

/** Whether a queue exists, asked passively on a connection of the spec's own. */
async function queueExists(name: string): Promise<boolean> {
  const conn = await amqp.connect(await brokerUrl());
  try {
    const ch = await conn.createChannel();
    ch.on('error', () => undefined);
    return await ch.checkQueue(name).then(
      () => true,
      () => false,
    );
  } finally {
    await conn.close();
  }
}

class Worker extends MessageProcessor {
  @MessageHandler('command', 'work')
  work(): void {}
}

describe('presence (every processor answers ping and describe)', function () {
  this.timeout(60_000);
  const f = exchangeFixture('presence');

  it('a plain MessageProcessor answers postage ping and postage describe NAME', async () => {
    const name = unique('plain');
    const p = new Worker({ url: f.url, fingerprint: { name }, eqk: [[f.ex, [[f.queue, 'k']]]] });
    await f.h.start(p);
    const { pid, host } = p.fingerprint;
    expect(pinged(await postage(['ping', '--timeout', '1']))).to.deep.include([name, 'processor', `${pid}@${host}`]);
    expect(pinged(await postage(['ping', name, '--timeout', '1']))).to.deep.equal([
      [name, 'processor', `${pid}@${host}`],
    ]);
    const r = await postage(['describe', name, '--json', '--timeout', '1']);
    expect(r.code, r.stderr).to.equal(0);
    const [d, ...more] = JSON.parse(r.stdout) as ProcessorDescription[];
    expect(more).to.deep.equal([]);
    expect(d.fingerprint.name).to.equal(name);
    expect(d.handlers.map((x) => x.name)).to.include.members(['work', 'describe']);
    // Where it takes work from, with its presence queue told of apart.
    expect(d.bindings).to.deep.equal([{ exchange: f.ex.name, key: 'k', queue: f.queue }]);
    expect(d.presence).to.be.a('string').and.not.equal(f.queue);
  });

  it('gives each processor in one process a presence queue of its own: both answer, with distinct entries', async () => {
    const [a, b] = [unique('first'), unique('second')];
    const pa = new Worker({ url: f.url, fingerprint: { name: a }, eqk: [[f.ex, [[f.queue, 'k']]]] });
    const pb = new Worker({ url: f.url, fingerprint: { name: b }, eqk: [[f.ex, [[f.queue, 'k']]]] });
    await f.h.start(pa, pb);
    const self = `${process.pid}@${pa.fingerprint.host}`;
    const rows = pinged(await postage(['ping', self, '--timeout', '1']));
    expect(rows).to.have.deep.members([
      [a, 'processor', self],
      [b, 'processor', self],
    ]);
    const [da, db] = [await pa.rpcDescribe(), await pb.rpcDescribe()];
    const queues = (da.presence ?? '') + (db.presence ?? '');
    expect(da.presence).to.not.equal(db.presence);
    expect(queues).to.not.contain(self);
    // Presence is not a consumer of the work queue, which holds the two processors' consumers only.
    expect((await queueState(f.queue)).consumers).to.equal(2);
  });

  it('with presence: false does not answer, and the CLI says why that may be', async () => {
    const name = unique('hidden');
    await f.h.start(
      new Worker({ url: f.url, presence: false, fingerprint: { name }, eqk: [[f.ex, [[f.queue, 'k']]]] }),
    );
    const r = await postage(['ping', name, '--timeout', '0.5']);
    expect(r.code).to.equal(1);
    expect(r.stderr.trim().split('\n')).to.have.length(1);
    expect(r.stderr).to.match(/^no component answered a ping on generic-application-exchange\/spec\.hidden\./);
    expect(r.stderr).to.contain('presence: false').and.contain("vhost '").and.contain('--timeout');
  });

  it('does not act on a quit or restart sent to presence', async () => {
    const name = unique('stays');
    const p = new Worker({ url: f.url, fingerprint: { name }, eqk: [[f.ex, [[f.queue, 'k']]]] });
    await f.h.start(p);
    let told = 0;
    p.on('remoteCommand', () => told++);
    for (const [key, command] of [
      [name, 'quit'],
      ['presence', 'restart'],
    ]) {
      const sent = await postage([
        'send',
        key === name ? 'generic-application-exchange' : 'presence-exchange',
        key,
        command,
      ]);
      expect(sent.code, sent.stderr).to.equal(0);
    }
    // The presence queue is read in order: a ping answered after them shows the quit and restart were taken.
    expect(pinged(await postage(['ping', name, '--timeout', '1']))).to.have.length(1);
    expect(told).to.equal(0);
    expect(p.status.state).to.equal('ready');
  });

  it('declares its presence queue again after a reconnection, and removes it on close', async () => {
    const name = unique('comeback');
    const p = new Worker({ url: f.url, fingerprint: { name }, eqk: [[f.ex, [[f.queue, 'k']]]] });
    await f.h.start(p);
    const before = (await p.rpcDescribe()).presence!;
    const back = new Promise<void>((resolve) => p.on('connected', () => resolve()));
    dropConnection(p);
    await back;
    const after = (await p.rpcDescribe()).presence!;
    expect(after).to.be.a('string').and.not.equal(before);
    expect(pinged(await postage(['ping', name, '--timeout', '1']))).to.have.length(1);
    await p.close();
    expect(await queueExists(after)).to.equal(false);
    expect(await queueExists(before)).to.equal(false);
  });

  it('answers under serve()', async () => {
    const name = unique('served');
    const served = await serve(new Worker({ url: f.url, fingerprint: { name }, eqk: [[f.ex, [[f.queue, 'k']]]] }), {
      handleSignals: false,
    });
    try {
      expect(pinged(await postage(['ping', name, '--timeout', '1']))).to.have.length(1);
    } finally {
      await served.close();
    }
  });

  it('answers under postage run (the README first component)', async () => {
    const exchange = unique('run');
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'lib/cli/postage.ts', 'run', 'spec/fixtures/run/two-processors.ts'],
      {
        env: { ...process.env, POSTAGE_URL: f.url, POSTAGE_LOG_LEVEL: 'warn', EXCHANGE: exchange },
        stdio: ['ignore', 'pipe', 'ignore'],
      },
    );
    const exited = once(child, 'exit');
    try {
      let out = '';
      await new Promise<void>((resolve, reject) => {
        const deadline = setTimeout(() => reject(new Error(`postage run printed no two ready lines: ${out}`)), 30_000);
        child.stdout.on('data', (c: Buffer) => {
          out += String(c);
          if ((out.match(/^ready: /gm) ?? []).length === 2) {
            clearTimeout(deadline);
            resolve();
          }
        });
      });
      // Each run of the specs has a vhost of its own: these two are the module's.
      const names = pinged(await postage(['ping', '--timeout', '1'])).map(([n]) => n);
      expect(names).to.include.members(['greeter', 'slow']);
    } finally {
      child.kill('SIGTERM');
      await exited;
      await deleteTopology([`${exchange}.greet`, `${exchange}.slow`], [exchange]).catch(() => undefined);
    }
  });

  it('answers under the NestJS module', async () => {
    const name = unique('nest');
    const ProcessorToken = Symbol('processor');
    class AppModule {}
    Module({
      imports: [PostageModule.forRoot({ url: f.url })],
      providers: [
        {
          provide: ProcessorToken,
          useFactory: (postage: PostageComponentOptions) =>
            new Worker({ ...postage, fingerprint: { name }, eqk: [[f.ex, [[f.queue, 'k']]]] }),
          inject: [POSTAGE_COMPONENT_OPTIONS],
        },
      ],
    })(AppModule);
    const app = await NestFactory.createApplicationContext(AppModule, { logger: false });
    try {
      await app.init();
      expect(pinged(await postage(['ping', name, '--timeout', '1']))).to.have.length(1);
    } finally {
      await app.close();
    }
  });

  it('leaves a GenericApplication one answer, from its own queue, and none with presence: false', async () => {
    const [seen, unseen] = [unique('app'), unique('quiet')];
    await f.h.start(
      new GenericApplication({ url: f.url, fingerprint: { name: seen } }),
      new GenericApplication({ url: f.url, presence: false, fingerprint: { name: unseen, pid: 'other' } }),
    );
    const names = pinged(await postage(['ping', '--timeout', '1'])).map(([n]) => n);
    expect(names.filter((n) => n === seen)).to.have.length(1);
    expect(names).to.not.include(unseen);
  });
});
