/**
 * RPC echo, receiver: answers every ('command', 'echo') RPC.
 * Prints "ready" once its queue is bound, then serves until it gets
 * ('command', 'quit').   npm run demo:rpc-echo:receive (postage run demos/rpc_echo/receive.ts)
 */
import { Fingerprint, MessageProcessor, MessageResult, RpcHandler, type FingerprintDict } from '../../lib/index.js';
import { EchoExchange } from './shared.js';

class EchoReceiveProcessor extends MessageProcessor {
  constructor(fingerprint: FingerprintDict) {
    super(fingerprint, [[EchoExchange, [['echo-queue', 'echo']]]]);
  }

  @RpcHandler('command', 'echo')
  rpcEcho(content: { parameters: { text: string } }, reply: (r: MessageResult) => void) {
    console.log(`received: ${content.parameters.text}`);
    reply(new MessageResult('RPC message received'));
  }
}

// `postage run` starts what a module exports, prints a ready line, and stops on ('command', 'quit') or a signal.
export const processor = new EchoReceiveProcessor(new Fingerprint('echo_receive', 'controller').asDict());
