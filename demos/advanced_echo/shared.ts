import { Exchange, GenericProducer, MessageCommand, type MessageSender } from '../../lib/index.js';

export class EchoExchange extends Exchange {
  static override name = 'advanced-echo-exchange';
}

/** Shared by every component that sends echoes: the builder fixes the message's shape. */
export class EchoProducer extends GenericProducer {
  /** No builder: a plain MessageCommand('quit'), declared so the compiler checks the name. */
  declare message_quit: MessageSender;
  static override eks = [[EchoExchange, 'echo'] as const];
  build_message_echo(text: string) {
    return new MessageCommand('echo', { text, sent_at: new Date().toISOString() });
  }
}
