import { expect } from 'chai';
import sinon from 'sinon';
import { ExitScheduler, MicroScheduler, MicroThread, STOP, StopThread, call, sleep } from '../../lib/index.js';

class Counter extends MicroThread {
  n = 0;
  constructor(
    readonly limit: number,
    readonly log?: string[],
  ) {
    super();
  }
  override step() {
    this.n++;
    this.log?.push(`${this.name}:${this.n}`);
    if (this.n === this.limit) return STOP;
  }
}

describe('MicroThread', () => {
  it('runs create() once, when added to a scheduler', () => {
    let created = 0;
    class T extends MicroThread {
      override create() {
        created++;
      }
    }
    const s = new MicroScheduler();
    s.addMicrothread(new T());
    expect(created).to.equal(1);
  });

  it('ends when step() returns STOP', async () => {
    const c = new Counter(3);
    const s = new MicroScheduler({ autoquit: true });
    s.addMicrothread(c);
    await s.run();
    expect(c.n).to.equal(3);
  });

  it('may have a generator step that parks on a promise and resumes with its value', async () => {
    const seen: unknown[] = [];
    class G extends MicroThread {
      n = 0;
      override *step() {
        this.n++;
        if (this.n === 3) return STOP;
        seen.push(yield Promise.resolve(this.n * 10));
        yield sleep(1);
      }
    }
    const s = new MicroScheduler({ autoquit: true });
    s.addMicrothread(new G());
    await s.run();
    expect(seen).to.deep.equal([10, 20]);
  });

  it('gets a rejected promise thrown back into it', async () => {
    let caught: unknown;
    class G extends MicroThread {
      override *step() {
        try {
          yield Promise.reject(new Error('boom'));
        } catch (e) {
          caught = e;
        }
        return STOP;
      }
    }
    const s = new MicroScheduler({ autoquit: true });
    s.addMicrothread(new G());
    await s.run();
    expect((caught as Error).message).to.equal('boom');
  });

  it('gets typed results through call()', async () => {
    let got = 0;
    class G extends MicroThread {
      override *step() {
        const v: number = yield* call(Promise.resolve(41));
        got = v + 1;
        return STOP;
      }
    }
    const s = new MicroScheduler({ autoquit: true });
    s.addMicrothread(new G());
    await s.run();
    expect(got).to.equal(42);
  });
});

describe('MicroScheduler', () => {
  it('runs threads round robin', async () => {
    const log: string[] = [];
    const a = new Counter(2, log);
    a.name = 'a';
    const b = new Counter(2, log);
    b.name = 'b';
    const s = new MicroScheduler({ autoquit: true });
    s.addMicrothread(a);
    s.addMicrothread(b);
    await s.run();
    expect(log).to.deep.equal(['a:1', 'b:1', 'a:2', 'b:2']);
  });

  it('drops a thread that throws StopThread and goes on with the others', async () => {
    class Stopper extends MicroThread {
      override step(): void {
        throw new StopThread();
      }
    }
    const c = new Counter(5);
    const s = new MicroScheduler({ autoquit: true });
    s.addMicrothread(new Stopper());
    s.addMicrothread(c);
    await s.run();
    expect(c.n).to.equal(5);
  });

  it('finishes the round, then stops, when a thread throws ExitScheduler', async () => {
    const log: string[] = [];
    class Exit extends MicroThread {
      override step(): void {
        log.push('exit');
        throw new ExitScheduler();
      }
    }
    const after = new Counter(100, log);
    after.name = 'after';
    const s = new MicroScheduler();
    s.addMicrothread(new Exit());
    s.addMicrothread(after);
    await s.run();
    expect(log).to.deep.equal(['exit', 'after:1']);
  });

  it('hands any other thread error to onThreadError and drops only that thread', async () => {
    const errors: string[] = [];
    class Bad extends MicroThread {
      override step(): void {
        throw new Error('bad step');
      }
    }
    const good = new Counter(3);
    const s = new MicroScheduler({
      autoquit: true,
      onThreadError: (t, e) => errors.push(`${t.name}: ${(e as Error).message}`),
    });
    s.addMicrothread(new Bad());
    s.addMicrothread(good);
    await s.run();
    expect(errors).to.deep.equal(['Bad: bad step']);
    expect(good.n).to.equal(3);
  });

  it('parks only the thread that yielded a promise', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const log: string[] = [];
    class Waiter extends MicroThread {
      override *step() {
        yield gate;
        log.push('waiter resumed');
        return STOP;
      }
    }
    class Busy extends MicroThread {
      n = 0;
      override step() {
        this.n++;
        if (this.n === 50) {
          log.push('busy done');
          release();
          return STOP;
        }
      }
    }
    const s = new MicroScheduler({ autoquit: true });
    s.addMicrothread(new Waiter());
    s.addMicrothread(new Busy());
    await s.run();
    expect(log).to.deep.equal(['busy done', 'waiter resumed']);
  });

  it('never starves I/O: timers fire while busy threads run', async () => {
    class Busy extends MicroThread {}
    const s = new MicroScheduler({ sliceMs: 5 });
    for (let i = 0; i < 10; i++) s.addMicrothread(new Busy());
    const running = s.run();
    await new Promise<void>((resolve) => setTimeout(resolve, 20));
    const steps = s.steps;
    s.stop();
    await running;
    expect(steps).to.be.greaterThan(0);
  });

  it('stop() returns every thread so its finally blocks run', async () => {
    const closed: string[] = [];
    class Holder extends MicroThread {
      constructor(name: string) {
        super();
        this.name = name;
      }
      override *main() {
        try {
          for (;;) yield sleep(1000);
        } finally {
          closed.push(this.name);
        }
      }
    }
    const s = new MicroScheduler();
    s.addMicrothread(new Holder('first'));
    s.addMicrothread(new Holder('second'));
    const running = s.run();
    await new Promise<void>((resolve) => setImmediate(resolve));
    s.stop();
    await running;
    expect(closed).to.deep.equal(['second', 'first']);
  });

  it('ends run() when no threads are left with autoquit', async () => {
    const s = new MicroScheduler({ autoquit: true });
    await s.run();
    expect(s.size).to.equal(0);
  });

  it('waits for parked threads without spinning when not autoquit', async () => {
    const s = new MicroScheduler();
    class Sleeper extends MicroThread {
      override *step() {
        yield sleep(30);
        return STOP;
      }
    }
    s.addMicrothread(new Sleeper());
    const running = s.run();
    await sleep(50);
    // The one thread ended after 30 ms; an idle scheduler takes no steps.
    const idle = s.steps;
    await sleep(20);
    expect(s.steps).to.equal(idle);
    s.stop();
    await running;
  });

  it('resumes 10,000 threads settled at once without a stack overflow', async () => {
    let resumed = 0;
    class W extends MicroThread {
      override *step() {
        yield Promise.resolve();
        resumed++;
        return STOP;
      }
    }
    const s = new MicroScheduler({ autoquit: true });
    for (let i = 0; i < 10_000; i++) s.addMicrothread(new W());
    await s.run();
    expect(resumed).to.equal(10_000);
  });

  it('runs as a thread of another scheduler', async () => {
    const inner = new MicroScheduler({ autoquit: true, name: 'inner' });
    const a = new Counter(3);
    inner.addMicrothread(a);
    const outer = new MicroScheduler({ autoquit: true, name: 'outer' });
    const b = new Counter(5);
    outer.addMicrothread(inner);
    outer.addMicrothread(b);
    await outer.run();
    expect([a.n, b.n]).to.deep.equal([3, 5]);
  });

  it('is async-disposable', async () => {
    const s = new MicroScheduler();
    s.addMicrothread(new MicroThread());
    const running = s.run();
    await s[Symbol.asyncDispose]();
    await running;
    expect(s.size).to.equal(0);
  });

  it('has stop() and run() resolve only once every thread has closed', async () => {
    const closed: string[] = [];
    class Holder extends MicroThread {
      override *step() {
        yield sleep(1000);
      }
      override async close() {
        await sleep(30);
        closed.push(this.name);
      }
    }
    const s = new MicroScheduler();
    const [a, b] = [new Holder(), new Holder()];
    a.name = 'a';
    b.name = 'b';
    s.addMicrothread(a);
    s.addMicrothread(b);
    const running = s.run().then(() => [...closed]);
    await sleep(5);
    await s.stop();
    expect(closed.sort()).to.deep.equal(['a', 'b']);
    expect(await running).to.deep.equal(closed);
  });

  it('closes its threads when disposed with await using', async () => {
    let closed = false;
    class Holder extends MicroThread {
      override async close() {
        closed = true;
      }
    }
    {
      await using s = new MicroScheduler();
      s.addMicrothread(new Holder());
      void s.run();
    }
    expect(closed).to.equal(true);
  });
});

describe('sleep', () => {
  it('ends at once when its signal is aborted, rejecting with the reason and freeing its timer', async () => {
    const set = sinon.spy(globalThis, 'setTimeout');
    const clear = sinon.spy(globalThis, 'clearTimeout');
    try {
      const ac = new AbortController();
      const started = Date.now();
      const waiting = sleep(60_000, ac.signal);
      const timer = set.lastCall.returnValue;
      ac.abort();
      const err = await waiting.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect((err as Error).name).to.equal('AbortError');
      expect(Date.now() - started).to.be.below(1000);
      expect(clear.calledWith(timer)).to.equal(true);
    } finally {
      set.restore();
      clear.restore();
    }
    expect(await sleep(1, new AbortController().signal)).to.equal(undefined);
  });
});
