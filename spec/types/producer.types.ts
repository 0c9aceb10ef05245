/**
 * Type-level spec, checked by `npm run typecheck` (part of `npm test`):
 * every `@ts-expect-error` line must fail to compile, or the check fails.
 */
import {
  Exchange,
  GenericProducer,
  MessageCommand,
  RpcCommand,
  type AnyResult,
  type MessageSender,
  type RpcSender,
} from '../../lib/index.js';

class PingExchange extends Exchange {
  static override name = 'ping-exchange';
}

class PingProducer extends GenericProducer {
  static override eks = [[PingExchange, 'ping'] as const];
  build_message_ping() {
    return new MessageCommand('ping', { send_time: Date.now() });
  }
  build_message_store(key: string, value: number) {
    return new MessageCommand('store', { key, value });
  }
  build_rpc_echo(text: string) {
    return new RpcCommand('echo', { text });
  }
  // Names without a builder, declared so that the compiler checks them too.
  declare message_anything: MessageSender;
  declare rpc_whatever: RpcSender;
}

export async function typed(): Promise<void> {
  const p = await PingProducer.create({ fingerprint: { name: 'types' } });

  await p.message_ping();
  await p.message_ping({ _key: 'other' });
  await p.message_store('k', 1);
  await p.message_store('k', 1, { _eks: [[PingExchange, 'k']] });
  const r: AnyResult = await p.rpc_echo('hi', { _timeout: 5, _max_retry: 2 });
  const q: string = await p.rpc_echo('hi', { _queue_only: true });
  await p.message_anything({ a: 1 });
  const any: AnyResult = await p.rpc_whatever({ x: 1 });
  void [r, q, any];

  // @ts-expect-error: builder takes a string
  await p.rpc_echo(42);
  // @ts-expect-error: builder takes (string, number)
  await p.message_store('k', 'not a number');
  // @ts-expect-error: too many arguments for a builder with none
  await p.message_ping('extra', 'args');
  // @ts-expect-error: a message_ sender resolves to void, not a result
  const wrong: AnyResult = await p.message_ping();
  // @ts-expect-error: an unknown send option
  await p.message_ping({ _keyy: 'x', other: 1 });
  // @ts-expect-error: a typo in a send option is a compile error where the producer declares the builder
  await p.message_store('k', 1, { _keyy: 'x' });
  await p.message_store('k', 1, { _mandatory: false });
  // @ts-expect-error: a typo of a declared name does not compile where the producer declares its names
  await p.message_resiz();
  // @ts-expect-error: nor does an RPC name it never declared
  await p.rpc_nobody_declared({});
  void wrong;

  // Events are typed per name.
  const onLoss = (err: Error) => void err.message;
  p.on('disconnected', onLoss).off('disconnected', onLoss);
  p.on('blocked', (reason: string) => void reason.length);
  // @ts-expect-error: no such event
  p.on('disconected', () => undefined);
  // @ts-expect-error: 'blocked' gives a reason string
  p.on('blocked', (reason: number) => void reason);

  // A producer that declares no builder takes every name, as in Postage.
  const bare = await GenericProducer.create();
  await bare.message_anything({ a: 1 });
  const res: AnyResult = await bare.rpc_whatever({ x: 1 });
  void res;
}

// Schemas type handlers and senders alike.
import { MessageHandler, MessageProcessor, type ParamsOf } from '../../lib/index.js';
import { command } from '../support/schema.js';

const Resize = command({ width: 'number', height: 'number' });

export class Resizer extends MessageProcessor {
  @MessageHandler('command', 'resize', { schema: Resize })
  resize(content: { parameters: { width: number; height: number } }): number {
    return content.parameters.width;
  }

  // @ts-expect-error the handler must take what the schema gives
  @MessageHandler('command', 'resize2', { schema: Resize })
  resize2(content: { parameters: { depth: string } }): string {
    return content.parameters.depth;
  }
}

export class Images extends GenericProducer {
  declare message_resize: MessageSender<ParamsOf<typeof Resize>>;
}

export async function sendsTyped(p: Images): Promise<void> {
  await p.message_resize({ width: 1, height: 2 });
  // @ts-expect-error a width must be a number
  await p.message_resize({ width: 'wide', height: 2 });
}
