/**
 * A handler may not shadow the machinery: a decorated handler named like a
 * member of MicroThread, MessageProcessor or GenericApplication (`step`,
 * `ready`, `close`, `use`…) would replace what the processor itself runs, so
 * it is refused, in every decorator flavour, with an error naming the method
 * and suggesting another name. The built-in handlers stay overridable.
 */
import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import ts from 'typescript';
import {
  GenericApplication,
  Handler,
  MessageCommand,
  MessageFilter,
  MessageHandler,
  MessageHandlerFullBody,
  MessageProcessor,
  ReservedHandlerName,
  RpcCommand,
  RpcHandler,
} from '../../lib/index.js';
import { MicroThread } from '../../lib/microthreads/thread.js';
import { ProcessorHarness } from '../../lib/testing/index.js';

/** The error a thunk throws (or undefined). */
function thrownBy(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  return undefined;
}

/** Every method and accessor name of a class's prototype, read off the class as the library does. */
function membersOf(cls: { prototype: object }): string[] {
  return Object.getOwnPropertyNames(cls.prototype).filter((k) => k !== 'constructor');
}

const LIB = pathToFileURL(resolve('lib/index.ts')).href;

/**
 * Compiles a module with `experimentalDecorators` (as a NestJS-style project does) and imports it: what its
 * decorators throw as the class is defined, the import rejects with.
 */
async function importLegacy(source: string): Promise<Record<string, unknown>> {
  const js = ts.transpileModule(source, {
    compilerOptions: {
      experimentalDecorators: true,
      module: ts.ModuleKind.ESNext,
      target: ts.ScriptTarget.ES2022,
    },
  }).outputText;
  const dir = mkdtempSync(join(tmpdir(), 'postage-legacy-'));
  try {
    const file = join(dir, 'legacy.mjs');
    writeFileSync(file, js);
    return (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('ReservedHandlerName', () => {
  describe('with TC39 decorators', () => {
    it("refuses @MessageHandler on 'step' as the class is defined, naming the method and suggesting a name", () => {
      const err = thrownBy(() => {
        class Loops extends MessageProcessor {
          @MessageHandler('command', 'step')
          // @ts-expect-error: strict TypeScript sees the clash too; JavaScript and looser settings do not
          async step() {}
        }
        return Loops;
      });
      expect(err).to.be.instanceOf(ReservedHandlerName);
      const e = err as ReservedHandlerName;
      expect(e.member).to.equal('step');
      expect(e.shadows).to.equal('MessageProcessor.prototype.step()');
      expect(e.suggestion).to.equal('msgStep');
      expect(e.code).to.equal('USAGE');
      expect(e.message).to.match(/handler named 'step' would replace MessageProcessor\.prototype\.step\(\)/);
      expect(e.message).to.contain("for example 'msgStep'");
    });

    it('refuses every member of MicroThread and MessageProcessor, read off the classes, for each decorator', () => {
      const names = [...new Set([...membersOf(MicroThread), ...membersOf(MessageProcessor)])].filter(
        (n) => !['rpcDescribe', 'msgQuit', 'msgRestart'].includes(n),
      );
      expect(names).to.include.members(['step', 'create', 'main', 'ready', 'close', 'use', 'observe', 'status']);
      const decorators = [
        MessageHandler('command', 'x'),
        RpcHandler('command', 'x'),
        MessageHandlerFullBody('command', 'x'),
        MessageFilter((x: unknown) => x),
      ];
      for (const name of names) {
        for (const d of decorators) {
          const err = thrownBy(() => d(() => undefined, { kind: 'method', name, static: false } as never));
          expect(err, `${name}`).to.be.instanceOf(ReservedHandlerName);
        }
      }
    });

    it('suggests an rpc name for an RPC handler', () => {
      const err = thrownBy(() => {
        class Answers extends MessageProcessor {
          @RpcHandler('command', 'status')
          // @ts-expect-error: strict TypeScript sees the clash too; JavaScript and looser settings do not
          ready() {
            return 'ready';
          }
        }
        return Answers;
      }) as ReservedHandlerName;
      expect(err.suggestion).to.equal('rpcReady');
    });

    it('refuses a @MessageFilter-wrapped handler on a machinery name', () => {
      const err = thrownBy(() => {
        class Filtered extends MessageProcessor {
          @MessageFilter((x: unknown) => x)
          @MessageHandler('command', 'close')
          override close() {
            return Promise.resolve();
          }
        }
        return Filtered;
      });
      expect(err).to.be.instanceOf(ReservedHandlerName);
      expect((err as ReservedHandlerName).member).to.equal('close');
    });

    it('refuses a Handler class on a static field named like a machinery static, as the class is defined', () => {
      const err = thrownBy(() => {
        class Statics extends MessageProcessor {
          @MessageHandler('command', 'audit')
          static override consumerClass = class extends Handler {
            call() {}
          } as never;
        }
        return Statics;
      });
      expect(err).to.be.instanceOf(ReservedHandlerName);
      expect((err as ReservedHandlerName).shadows).to.equal('MessageProcessor.consumerClass');
    });

    it("refuses a GenericApplication's member (joinGroup) at construction; a plain processor may use it", () => {
      class App extends GenericApplication {
        @MessageHandler('command', 'join')
        override joinGroup(): Promise<void> {
          return Promise.resolve();
        }
      }
      const err = thrownBy(() => new App({ fingerprint: { name: 'shadow-app' }, handleSignals: false }));
      expect(err).to.be.instanceOf(ReservedHandlerName);
      expect((err as ReservedHandlerName).shadows).to.equal('GenericApplication.prototype.joinGroup()');
      // Constructing again refuses again: nothing half-built is kept.
      expect(() => new App({ fingerprint: { name: 'shadow-app' }, handleSignals: false })).to.throw(
        ReservedHandlerName,
      );
      class Plain extends MessageProcessor {
        @MessageHandler('command', 'join')
        joinGroup() {}
      }
      expect(() => new Plain({ fingerprint: { name: 'plain' }, handleSignals: false })).not.to.throw();
    });
  });

  describe('with experimentalDecorators', () => {
    it('refuses a handler on a MessageProcessor member as the class is defined', async () => {
      const err = await importLegacy(`
        import { MessageHandler, MessageProcessor } from '${LIB}';
        export class Legacy extends MessageProcessor {
          @MessageHandler('command', 'ready')
          ready() { return Promise.resolve(); }
        }
      `).then(
        () => undefined,
        (e: unknown) => e,
      );
      // The compiled module loads the library through its own loader: its class is another copy, the same name.
      expect((err as Error).name).to.equal('ReservedHandlerName');
      expect((err as ReservedHandlerName).shadows).to.equal('MessageProcessor.prototype.ready()');
    });

    it("refuses a GenericApplication's member as the class is defined (the prototype is known)", async () => {
      const err = await importLegacy(`
        import { GenericApplication, RpcHandler } from '${LIB}';
        export class Legacy extends GenericApplication {
          @RpcHandler('command', 'leave')
          leaveGroup() { return Promise.resolve(); }
        }
      `).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect((err as Error).name).to.equal('ReservedHandlerName');
      expect((err as ReservedHandlerName).suggestion).to.equal('rpcLeaveGroup');
    });

    it('defines a class whose handlers shadow nothing', async () => {
      const mod = await importLegacy(`
        import { MessageHandler, MessageProcessor } from '${LIB}';
        export class Legacy extends MessageProcessor {
          @MessageHandler('command', 'step')
          msgStep() {}
        }
      `);
      expect(mod.Legacy).to.be.a('function');
    });
  });

  describe('with the plain (prototype, name) call', () => {
    it('refuses a machinery name', () => {
      class Plain extends MessageProcessor {
        observeAll() {}
      }
      const err = thrownBy(() => MessageHandler('command', 'observe')(Plain.prototype, 'observe'));
      expect(err).to.be.instanceOf(ReservedHandlerName);
      expect((err as ReservedHandlerName).message).to.contain("for example 'msgObserve'");
      expect(() => MessageHandler('command', 'observe')(Plain.prototype, 'observeAll')).not.to.throw();
    });
  });

  describe('the built-in handlers', () => {
    it('are overridden on purpose: describe by a handler of its own (any method name), quit by msgQuit', async () => {
      class Own extends MessageProcessor {
        @RpcHandler('command', 'describe')
        describeMe() {
          return { mine: true };
        }

        @MessageHandlerFullBody('command', 'quit')
        override msgQuit() {}
      }
      const h = await ProcessorHarness.start(Own, { fingerprint: { name: 'own' }, handleSignals: false });
      try {
        const d = await h.deliver(new RpcCommand('describe', {}));
        expect(d.reply?.content).to.deep.include({ value: { mine: true } });
        const q = await h.deliver(new MessageCommand('quit', {}));
        expect(q.outcome).to.equal('acked');
      } finally {
        await h.close();
      }
    });
  });
});
