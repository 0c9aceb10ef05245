import type { ConnectionStatus } from '../transport/status.js';
import type { Connection } from '../transport/shared.js';
import type { MessageProcessor } from '../receive/processor.js';

/** What a health check reads: `@nestjs/terminus`'s `HealthIndicatorResult` shape. */
export type PostageHealthResult = Record<
  string,
  { status: 'up' | 'down'; connection: ConnectionStatus['state']; processors: number; [detail: string]: unknown }
>;

/**
 * What the indicator reads of the module's runtime. A shape, not the PostageRuntime class (internal, so stripped
 * from the shipped declarations): health.d.ts must not import a name runtime.d.ts does not export.
 */
interface RunningProcessors {
  readonly processors: readonly MessageProcessor[];
}

/** One processor's outbox as the health result shows it. */
interface OutboxHealth {
  processor: string;
  waiting: number;
  oldestMs: number;
  failed: number;
}

/**
 * Reads the module's connection for a health check:
 *
 * @example
 * health.check([() => this.postage.isHealthy('rabbitmq')])
 *
 * Up while the connection is ready or blocked (a memory alarm pauses sends,
 * nothing is lost); down while it connects, reconnects, or is closed. With a
 * store, also down while a processor's outbox is failing: rows marked failed
 * (the broker refused them past the limit: they need an operator), or the
 * oldest waiting row older than `outboxMaxAgeMs` (the relay and the sweeper
 * cannot publish); each processor's backlog is in the result's `outbox`. A
 * down result is returned, not thrown: `@nestjs/terminus` 11 and later count
 * it as down (503).
 */
export class PostageHealthIndicator {
  readonly #outboxMaxAgeMs: number;

  constructor(
    private readonly connection: Connection,
    private readonly runtime: RunningProcessors,
    options: { outboxMaxAgeMs?: number | undefined } = {},
  ) {
    this.#outboxMaxAgeMs = options.outboxMaxAgeMs ?? 60_000;
  }

  isHealthy(key = 'postage'): PostageHealthResult {
    const status = this.connection.status;
    let up = status.state === 'ready' || status.state === 'blocked';
    const detail: Record<string, unknown> = {};
    if (status.state === 'reconnecting') {
      detail['attempt'] = status.attempt;
      if (status.lastError) detail['lastError'] = status.lastError.message;
    }
    if (status.state === 'blocked') detail['reason'] = status.reason;
    const outbox: OutboxHealth[] = [];
    for (const p of this.runtime.processors) {
      const b = p.outboxBacklog;
      if (b) outbox.push({ processor: p.fingerprint.name, ...b });
    }
    if (outbox.length > 0) {
      detail['outbox'] = outbox;
      const failing = outbox.filter((o) => o.failed > 0 || o.oldestMs > this.#outboxMaxAgeMs);
      if (failing.length > 0) {
        up = false;
        detail['outboxFailing'] = failing.map((o) =>
          o.failed > 0
            ? `${o.processor}: ${o.failed} outbox row(s) failed (the broker refused them); they need an operator`
            : `${o.processor}: the oldest outbox row has waited ${o.oldestMs} ms (limit ${this.#outboxMaxAgeMs})`,
        );
      }
    }
    return {
      [key]: {
        status: up ? 'up' : 'down',
        connection: status.state,
        processors: this.runtime.processors.length,
        ...detail,
      },
    };
  }
}
