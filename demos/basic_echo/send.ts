/**
 * Basic echo, sender: a producer with no builders; message_echo sends
 * MessageCommand('echo', params).   npm run demo:basic-echo:send
 */
import { GenericProducer } from '../../lib/index.js';
import { EchoExchange } from './shared.js';

class EchoProducer extends GenericProducer {
  static override eks = [[EchoExchange, 'echo'] as const];
}

const producer = await EchoProducer.create();
await producer.message_echo({ text: 'A test message' });
console.log('sent: {"text":"A test message"}');
if (process.argv.includes('--quit')) await producer.message_quit();
await producer.close();
