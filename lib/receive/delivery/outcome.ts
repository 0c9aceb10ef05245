import type { AckAndRestart, ExitScheduler } from '../../errors.js';
import type { Unreadable } from './readable.js';

/**
 * What is to become of a delivery once its handlers ran, as data: the
 * dispatch stage decides it, the settle stage carries it out. `reply` is an
 * RPC's encoded answer, sent once the delivery is settled.
 */
export type Outcome = (
  | { kind: 'ack' }
  /** Settled already: an RPC stream acks its request when it starts. */
  | { kind: 'done' }
  /** Rejected without requeue (dead-lettered where its queue has a dead-letter exchange). */
  | { kind: 'reject'; why: 'rejected' | 'failed' | 'malformed' | 'limit'; err?: unknown; unreadable?: Unreadable }
  /**
   * Published to the error exchange, then acked; back to its queue if that publish fails. `unreadable`: no handler
   * could be given it (its bytes go as they came, for a replay once the cause is mended).
   */
  /** To the error exchange `exchange` (a processor with one), confirmed before the ack. */
  | { kind: 'deadLetter'; exchange: string; err: unknown; attempts: number; unreadable?: Unreadable }
  /** Not settled: the processor is closing, the broker delivers it again. */
  | { kind: 'leave' }
  /**
   * Back to its queue in `ms`, through the broker's delay levels (`DeferMessage`, a delayed
   * retry), with `headers` added; acked once the broker confirmed the copy.
   */
  | { kind: 'defer'; ms: number; reason: string; headers: Record<string, unknown>; err?: unknown; quiet?: boolean }
  /** Back to its queue at once (`RequeueMessage`): delivered again, counted as a delivery. */
  | { kind: 'requeue'; reason: string }
  /** Acked, confirmed by the broker, then the scheduler exits or the component restarts. */
  | { kind: 'exit'; signal: ExitScheduler }
  | { kind: 'restart'; signal: AckAndRestart }
) & { reply?: Reply };

/** An RPC's answer, encoded, with the headers that carry its conversation and trace on. */
export interface Reply {
  content: Buffer;
  headers?: Record<string, unknown>;
}
