import type { ConnectionStatus } from '../transport/status.js';
import type { Connection } from '../transport/shared.js';
import type { PostageRuntime } from './runtime.js';

/** What a health check reads: `@nestjs/terminus`'s `HealthIndicatorResult` shape. */
export type PostageHealthResult = Record<
  string,
  { status: 'up' | 'down'; connection: ConnectionStatus['state']; processors: number; [detail: string]: unknown }
>;

/**
 * Reads the module's connection for a health check:
 *
 * @example
 * health.check([() => this.postage.isHealthy('rabbitmq')])
 *
 * Up while the connection is ready or blocked (a memory alarm pauses sends,
 * nothing is lost); down while it connects, reconnects, or is closed. A down
 * result is returned, not thrown: `@nestjs/terminus` 11 and later count it as
 * down (503).
 */
export class PostageHealthIndicator {
  constructor(
    private readonly connection: Connection,
    private readonly runtime: PostageRuntime,
  ) {}

  isHealthy(key = 'postage'): PostageHealthResult {
    const status = this.connection.status;
    const up = status.state === 'ready' || status.state === 'blocked';
    const detail: Record<string, unknown> = {};
    if (status.state === 'reconnecting') {
      detail['attempt'] = status.attempt;
      if (status.lastError) detail['lastError'] = status.lastError.message;
    }
    if (status.state === 'blocked') detail['reason'] = status.reason;
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
