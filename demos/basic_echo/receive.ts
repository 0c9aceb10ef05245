/**
 * Basic echo, receiver: a bare MessageProcessor built with Postage's
 * positional constructor. Prints every ('command', 'echo') it gets; quits on
 * ('command', 'quit').   npm run demo:basic-echo:receive (postage run demos/basic_echo/receive.ts)
 */
import { MessageHandler, MessageProcessor } from '../../lib/index.js';
import { EchoExchange } from './shared.js';

class EchoReceiveProcessor extends MessageProcessor {
  @MessageHandler('command', 'echo')
  msgEcho(content: { parameters: Record<string, unknown> }) {
    console.log(`received: ${JSON.stringify(content.parameters)}`);
  }
}

// `postage run` starts what a module exports, prints a ready line, and stops on ('command', 'quit') or a signal.
export const processor = new EchoReceiveProcessor({}, [[EchoExchange, [['basic-echo-queue', 'echo']]]]);
