import { Exchange } from '../../lib/index.js';

export class EchoExchange extends Exchange {
  static override name = 'echo-exchange';
  static override type = 'direct';
}
