/**
 * RPC streams (farine's): how a caller and a server talk while a stream runs.
 *
 * The caller sends the request with direct reply-to, a correlation id and
 * its window. The server acks the request (a stream is not redelivered), then
 * sends, to the caller's reply-to and under that correlation id: `open`,
 * each value as an `item` (a result envelope), then `end`, or `error` (an
 * exception result). Each of its messages carries, as reply-to, its own
 * direct reply-to address: the caller sends `credit` (n more items), `cancel`,
 * and a `keepalive` there. Credit-based flow control: the server never has
 * more than the window of items sent and not yet taken by the caller's
 * iteration, so a slow caller costs the server nothing but a wait.
 * @internal
 */
export const STREAM = Object.freeze({
  /** What a stream message is: open, item, end, error (server); credit, cancel, keepalive (caller). */
  kind: 'postage-stream',
  /** On the request: how many items the server may send ahead. */
  window: 'postage-stream-window',
  /** On the request: ms without a word from the other side after which a stream is over. */
  idle: 'postage-stream-idle',
  /** On a credit: how many more items. */
  credit: 'postage-stream-credit',
});

export type StreamKind = 'open' | 'item' | 'end' | 'error' | 'credit' | 'cancel' | 'keepalive';

export const DEFAULT_WINDOW = 64;
export const MAX_WINDOW = 4096;
