/**
 * The outbox as an operator sees it, against the real PostgreSQL and broker:
 * a row no queue takes is retried with backoff and, past `maxAttempts`,
 * marked failed and reported (log, describe, metrics, the NestJS health
 * indicator); `PostageModule.forRoot({ store })` hands the store to the
 * processors.
 */
import { expect } from 'chai';
import { metrics } from '@opentelemetry/api';
import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type pg from 'pg';
import {
  currentDelivery,
  GenericProducer,
  startDashboard,
  MessageHandler,
  MessageProcessor,
  type MessageSender,
} from '../../lib/index.js';
import { makeLogger } from '../../lib/log.js';
import type { DashboardState } from '../../lib/operations/dashboard/page-state.js';
import {
  POSTAGE_COMPONENT_OPTIONS,
  PostageHealthIndicator,
  PostageModule,
  type PostageComponentOptions,
} from '../../lib/nestjs/index.js';
import { PostgresStore } from '../../lib/stores/postgres/index.js';
import { exchangeFixture } from '../support/components.js';
import { capture } from '../support/log.js';
import { deleteTopology, unique } from '../support/topology.js';
import { until as awaitValue } from '../support/wait.js';
import { dropSchema, pgPool, uniqueSchema, until } from './support.js';

const quiet = makeLogger('silent');

class SpecReader extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

describe('an outbox row no queue takes', function () {
  this.timeout(60_000);
  const f = exchangeFixture('outbox-ops');
  let pool: pg.Pool;
  let schema: string;
  let nowhere: { name: string; type: 'direct'; durable: false };

  before(async () => {
    pool = await pgPool();
  });
  after(async () => {
    await pool?.end();
  });
  beforeEach(async () => {
    schema = uniqueSchema('postage_ops');
    await pool.query(`CREATE SCHEMA "${schema}"`);
    await pool.query(`CREATE TABLE "${schema}".orders (id serial PRIMARY KEY, item text NOT NULL)`);
    // An exchange nothing is bound to: every command sent there is unroutable.
    nowhere = { name: unique('outbox-nowhere'), type: 'direct', durable: false };
  });
  afterEach(async () => {
    await f.h.close();
    await deleteTopology([], [nowhere.name]);
    await dropSchema(pool, schema);
  });

  function store(): PostgresStore {
    return new PostgresStore({ pool, schema, sweepAfterMs: 200, sweepEveryMs: 100, maxAttempts: 3 });
  }

  async function nowhereProducer() {
    const target = nowhere;
    class Out extends GenericProducer {
      static override eks = [[target, 'lost'] as const];
      declare message_placed: MessageSender<{ item: string }>;
    }
    const o = await Out.create({ url: f.url });
    f.h.onClose(() => o.close());
    return o;
  }

  function orders(o: { message_placed: MessageSender<{ item: string }> }) {
    const table = `"${schema}".orders`;
    return class Orders extends MessageProcessor {
      @MessageHandler('command', 'order')
      async order(c: { parameters: { item: string } }) {
        await currentDelivery()!.db!.query(`INSERT INTO ${table} (item) VALUES ($1)`, [c.parameters.item]);
        await o.message_placed({ item: c.parameters.item });
      }
    };
  }

  interface Row {
    attempts: number;
    wait_s: number;
    failed: boolean;
    last_error: string | null;
  }
  async function row(): Promise<Row | undefined> {
    const { rows } = await pool.query<Row>(
      `SELECT attempts, extract(epoch FROM next_attempt_at - now())::float8 AS wait_s,
         failed_at IS NOT NULL AS failed, last_error FROM "${schema}".postage_outbox`,
    );
    return rows[0];
  }

  it('is retried with backoff and, past maxAttempts, marked failed and reported (log, describe, the dashboard)', async () => {
    const log = capture('warn');
    const Orders = orders(await nowhereProducer());
    const proc = new Orders({
      url: f.url,
      logger: log.logger,
      handleSignals: false,
      fingerprint: { name: 'orders-ops' },
      eqk: [[f.ex, [[f.queue, 'k']]]],
      store: store(),
    });
    await f.h.start(proc);
    const p = await f.producer();
    await p.message_order({ item: 'book' });
    // The wait before each new try, read as soon as the try is recorded: it doubles.
    const waits = new Map<number, number>();
    await until(
      async () => {
        const r = await row();
        if (r && !r.failed && !waits.has(r.attempts)) waits.set(r.attempts, r.wait_s);
        return r?.failed === true;
      },
      'the row marked failed',
      20_000,
    );
    const done = (await row())!;
    expect(done.attempts).to.equal(3);
    expect(done.last_error).to.match(/UNROUTABLE|no queue/i);
    expect(waits.get(1), 'the wait after the first try (about 1 s)').to.be.within(0.4, 1.05);
    expect(waits.get(2), 'the wait after the second try (about 2 s)').to.be.within(1.2, 2.05);
    await log.when(/no queue takes was tried 3 times; marked failed/);
    // The handler's own row committed: only the message is stuck.
    expect((await pool.query(`SELECT count(*)::int AS n FROM "${schema}".orders`)).rows[0].n).to.equal(1);
    const described = await awaitValue(
      async () => {
        const d = await proc.rpcDescribe();
        return d.outbox?.failed === 1 && d;
      },
      { message: 'describe reporting the failed row' },
    );
    expect(described.outbox).to.deep.equal({ waiting: 0, oldestMs: 0, failed: 1 });
    // The dashboard's state, what its page draws the outbox line from (red while rows have failed).
    const dashboard = await startDashboard({ url: f.url, refreshMs: 200 });
    try {
      const shown = await awaitValue(
        async () => {
          const res = await fetch(new URL('/api/state', dashboard.url), {
            headers: { 'x-postage-token': dashboard.token },
          });
          const state = (await res.json()) as DashboardState;
          return state.components.find((c) => c.fingerprint.name === 'orders-ops' && c.outbox);
        },
        { timeout: 10_000, message: 'the dashboard showing the processor with its outbox' },
      );
      expect(shown.outbox).to.deep.equal({ waiting: 0, oldestMs: 0, failed: 1 });
    } finally {
      await dashboard.close();
    }
  });

  it('is reported by the metrics and the NestJS health indicator of PostageModule.forRoot({ store })', async () => {
    const reader = new SpecReader();
    const meterProvider = new MeterProvider({ readers: [reader] });
    metrics.setGlobalMeterProvider(meterProvider);
    const o = await nowhereProducer();
    const Orders = orders(o);
    const name = unique('nest-orders');
    const ProcessorToken = Symbol('processor');
    class AppModule {}
    Module({
      imports: [PostageModule.forRoot({ url: f.url, logger: quiet, store: store() })],
      providers: [
        {
          provide: ProcessorToken,
          useFactory: (postage: PostageComponentOptions) =>
            new Orders({ ...postage, fingerprint: { name }, eqk: [[f.ex, [[f.queue, 'k']]]] }),
          inject: [POSTAGE_COMPONENT_OPTIONS],
        },
      ],
    })(AppModule);
    const app = await NestFactory.createApplicationContext(AppModule, { logger: false });
    try {
      await app.init();
      const health = app.get(PostageHealthIndicator);
      const before = health.isHealthy('postage')['postage'];
      expect(before.status, JSON.stringify(before)).to.equal('up');
      const p = await f.producer();
      // The handler writes through currentDelivery().db: the module's store reached the processor.
      await p.message_order({ item: 'lamp' });
      const down = await awaitValue(
        () => {
          const h = health.isHealthy('postage')['postage'];
          return h.status === 'down' && h;
        },
        { message: 'the health indicator down for the failed row', timeout: 20_000 },
      );
      expect(down.connection).to.equal('ready');
      expect(down['outbox']).to.deep.equal([{ processor: name, waiting: 0, oldestMs: 0, failed: 1 }]);
      expect(String((down['outboxFailing'] as string[])[0])).to.contain('need an operator');
      expect((await pool.query(`SELECT count(*)::int AS n FROM "${schema}".orders`)).rows[0].n).to.equal(1);
      const { resourceMetrics } = await reader.collect();
      const gauges: Record<string, { value: number; component: unknown }> = {};
      for (const sm of resourceMetrics.scopeMetrics)
        for (const m of sm.metrics)
          for (const dp of m.dataPoints)
            if (dp.attributes['postage.component'] === name)
              gauges[m.descriptor.name] = { value: dp.value as number, component: dp.attributes['postage.component'] };
      expect(gauges['postage.outbox.failed']?.value).to.equal(1);
      expect(gauges['postage.outbox.waiting']?.value).to.equal(0);
      expect(gauges['postage.outbox.oldest_age']?.value).to.equal(0);
    } finally {
      await app.close();
      metrics.disable();
      await meterProvider.shutdown();
    }
  });
});
