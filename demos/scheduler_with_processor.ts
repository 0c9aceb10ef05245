/**
 * One scheduler, two kinds of thread: an echo processor and a plain
 * microthread that sends it three echoes, a little apart. The processor
 * stops the scheduler after the third.   npm run demo:scheduler
 */
import {
  Exchange,
  ExitScheduler,
  GenericProducer,
  MessageHandler,
  MessageProcessor,
  MicroScheduler,
  MicroThread,
  STOP,
  call,
  sleep,
  type Producer,
} from '../lib/index.js';

class TickExchange extends Exchange {
  static override name = 'scheduler-demo-exchange';
}

class TickProducer extends GenericProducer {
  static override eks = [[TickExchange, 'tick'] as const];
}

class TickReceiver extends MessageProcessor {
  received = 0;
  @MessageHandler('command', 'tick')
  onTick(content: { parameters: { n: number } }) {
    this.received++;
    console.log(`processor: tick ${content.parameters.n}`);
    if (this.received === 3) throw new ExitScheduler();
  }
}

class Ticker extends MicroThread {
  n = 0;
  constructor(private readonly producer: Producer<TickProducer>) {
    super();
  }
  override *step() {
    this.n++;
    yield* call(this.producer.message_tick({ n: this.n }));
    console.log(`ticker: sent ${this.n}`);
    if (this.n === 3) return STOP;
    yield sleep(20);
  }
}

const receiver = new TickReceiver({
  fingerprint: { name: 'tick_receiver' },
  eqk: [[TickExchange, [[{ name: '', flags: { exclusive: true } }, 'tick']]]],
});
await receiver.ready();
const producer = await TickProducer.create({ fingerprint: { name: 'ticker' } });
const scheduler = new MicroScheduler();
scheduler.addMicrothread(receiver);
scheduler.addMicrothread(new Ticker(producer));
await scheduler.run();
await receiver.close();
await producer.close();
console.log('done');
