import { Exchange } from '../../lib/index.js';

export class EchoExchange extends Exchange {
  static override name = 'basic-echo-exchange';
}
