import { Exchange, GenericProducer, MessageCommand } from '../../lib/index.js';

export class EchoExchange extends Exchange {
  static override name = 'advanced-echo-exchange';
}

/** Shared by every component that sends echoes: the builder fixes the message's shape. */
export class EchoProducer extends GenericProducer {
  static override eks = [[EchoExchange, 'echo'] as const];
  build_message_echo(text: string) {
    return new MessageCommand('echo', { text, sent_at: new Date().toISOString() });
  }
}
