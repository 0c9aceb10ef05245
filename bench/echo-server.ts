/**
 * An RPC echo server in a process of its own, for the bench's "caller and
 * server apart" rows:  node --import tsx bench/echo-server.ts raw|postage URL QUEUE
 * Prints "ready" once it consumes, and stops on SIGTERM.
 */
import { startPostageEcho, startRawEcho } from './cases.js';

const [kind, url, queue] = process.argv.slice(2);
const stop = await (kind === 'raw' ? startRawEcho(url, queue) : startPostageEcho(url, queue));
console.log('ready');
process.once('SIGTERM', () => void stop().then(() => process.exit(0)));
