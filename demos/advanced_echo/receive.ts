/**
 * Advanced echo, receiver: a processor subclass that owns its bindings and
 * fingerprint.   npm run demo:advanced-echo:receive (postage run demos/advanced_echo/receive.ts)
 */
import { Fingerprint, MessageHandler, MessageProcessor, type FingerprintDict } from '../../lib/index.js';
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

// `postage run` starts what a module exports, prints a ready line, and stops on ('command', 'quit') or a signal.
export const processor = new EchoReceiveProcessor(new Fingerprint('echo_receive', 'controller').asDict());
