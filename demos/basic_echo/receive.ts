/**
 * Basic echo, receiver: a bare MessageProcessor built with Postage's
 * positional constructor. Prints every ('command', 'echo') it gets; quits on
 * ('command', 'quit').   npm run demo:basic-echo:receive
 */
import { MessageHandler, MessageProcessor, MicroScheduler } from '../../lib/index.js';
import { EchoExchange } from './shared.js';

class EchoReceiveProcessor extends MessageProcessor {
  @MessageHandler('command', 'echo')
  msgEcho(content: { parameters: Record<string, unknown> }) {
    console.log(`received: ${JSON.stringify(content.parameters)}`);
  }
}

const processor = new EchoReceiveProcessor({}, [[EchoExchange, [['basic-echo-queue', 'echo']]]]);
await processor.ready();
console.log('ready');
const scheduler = new MicroScheduler();
scheduler.addMicrothread(processor);
await scheduler.run();
await processor.close();
