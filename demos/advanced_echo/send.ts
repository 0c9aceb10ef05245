/**
 * Advanced echo, sender: uses the shared EchoProducer and its typed
 * message_echo(text).   npm run demo:advanced-echo:send
 */
import { Fingerprint } from '../../lib/index.js';
import { EchoProducer } from './shared.js';

const producer = await EchoProducer.create({ fingerprint: new Fingerprint('echo_send', 'application').asDict() });
await producer.message_echo('A test message');
console.log('sent: A test message');
if (process.argv.includes('--quit')) await producer.message_quit();
await producer.close();
