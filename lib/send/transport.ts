import type { Publisher } from './publisher.js';
import type { RpcClient } from './rpc-client.js';

/**
 * Where a producer's sends go instead of a broker, for `postage-ts/testing`:
 * given under this key in its options, it replaces the producer's publisher
 * and RPC client, and the producer never connects.
 * @internal
 */
export const TRANSPORT = Symbol.for('postage-ts.transport');

/** @internal */
export interface Transport {
  publisher: Publisher;
  rpc: RpcClient;
}
