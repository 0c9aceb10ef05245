/**
 * RPC echo, sender: calls rpc_echo once and prints the reply and the round trip.
 * Exits 1 when the RPC fails.   npm run demo:rpc-echo:send
 */
import { Fingerprint, GenericProducer, RpcCommand, type MessageSender } from '../../lib/index.js';
import { EchoExchange } from './shared.js';

class EchoProducer extends GenericProducer {
  declare message_quit: MessageSender;
  static override eks = [[EchoExchange, 'echo'] as const];
  build_rpc_echo(text: string) {
    return new RpcCommand('echo', { text });
  }
}

const producer = await EchoProducer.create({ fingerprint: new Fingerprint('echo_send', 'application').asDict() });
const started = performance.now();
const reply = await producer.rpc_echo('RPC test message', { _timeout: 5, _max_retry: 1 });
const ms = performance.now() - started;
if (reply.ok) console.log(`reply: ${reply.body.content.value} (round trip ${ms.toFixed(1)} ms)`);
else console.log(`RPC failed: ${reply.body.content.message}`);
if (process.argv.includes('--quit')) await producer.message_quit();
await producer.close();
process.exitCode = reply.ok ? 0 : 1;
