/**
 * Two microthreads sharing one scheduler: a counter that sleeps between steps
 * and a ticker that stops the scheduler after a few ticks.
 *
 *   npm run demo:microthreads
 */
import { ExitScheduler, MicroScheduler, MicroThread, STOP, sleep } from '../lib/index.js';

class Counter extends MicroThread {
  n = 0;
  override *step() {
    this.n++;
    console.log(`counter: ${this.n}`);
    if (this.n === 3) return STOP;
    yield sleep(10);
  }
}

class Ticker extends MicroThread {
  ticks = 0;
  override *step() {
    yield sleep(60);
    this.ticks++;
    console.log(`ticker: tick ${this.ticks}`);
    if (this.ticks === 2) throw new ExitScheduler();
  }
}

const scheduler = new MicroScheduler({ autoquit: true });
scheduler.addMicrothread(new Counter());
scheduler.addMicrothread(new Ticker());
await scheduler.run();
console.log('scheduler finished');
