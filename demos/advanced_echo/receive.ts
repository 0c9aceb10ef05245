/**
 * Advanced echo, receiver: a processor subclass that owns its bindings and
 * fingerprint.   npm run demo:advanced-echo:receive
 */
import { Fingerprint, MessageHandler, MessageProcessor, MicroScheduler, type FingerprintDict } from '../../lib/index.js';
import { EchoExchange } from './shared.js';

class EchoReceiveProcessor extends MessageProcessor {
  constructor(fingerprint: FingerprintDict) {
    super(fingerprint, [[EchoExchange, [['advanced-echo-queue', 'echo']]]]);
  }

  @MessageHandler('command', 'echo')
  msgEcho(content: { parameters: { text: string; sent_at: string } }) {
    console.log(`received: ${content.parameters.text}`);
  }
}

const processor = new EchoReceiveProcessor(new Fingerprint('echo_receive', 'controller').asDict());
await processor.ready();
console.log('ready');
const scheduler = new MicroScheduler();
scheduler.addMicrothread(processor);
await scheduler.run();
await processor.close();
