/**
 * What the compiler tells a user whose handler does not take what its schema
 * gives, in both decorator flavours: the error must name the schema's output
 * and the parameter's type, not only "unable to resolve signature".
 */
import { expect } from 'chai';
import { resolve } from 'node:path';
import { compile } from './support/tsc.js';

const HANDLERS = `
import { MessageHandler, MessageProcessor, MessageFilter, Handler, JsonHandler, CloudEventHandler,
  type DeliveryInfo, type CloudEventAttributes } from '${resolve('lib/index.ts')}';
import { command } from '${resolve('spec/support/schema.ts')}';
const Resize = command({ width: 'number', height: 'number' });
export class Resizer extends MessageProcessor {
  @MessageHandler('command', 'resize', { schema: Resize })
  resize(content: { parameters: { width: number } }): number { return content.parameters.width; }

  @MessageHandler('command', 'plain')
  plain(content: { parameters: { anything: string } }): string { return content.parameters.anything; }

  @MessageFilter((x: unknown) => x)
  @MessageHandler('command', 'filtered')
  filtered(): void {}

  @MessageHandler('command', 'audit')
  static Audit = class extends Handler<Resizer> { call(): void {} };

  @MessageHandler('command', 'wrong', { schema: Resize })
  wrong(content: { parameters: { depth: string } }): string { return content.parameters.depth; }
}
class Plain extends MessageProcessor { echo(): void {} }
MessageHandler('command', 'echo')(Plain.prototype, 'echo');
export class Foreign extends MessageProcessor {
  @JsonHandler('orders.*', { schema: Resize })
  placed(body: { parameters: { width: number } }, delivery: DeliveryInfo): string { return delivery.routingKey; }
  @CloudEventHandler('com.example.placed')
  event(data: unknown, event: CloudEventAttributes): string { return event.id; }
  // @ts-expect-error: a JSON handler that does not take its schema's output
  @JsonHandler('orders.*', { schema: Resize })
  wrongJson(body: { parameters: { depth: string } }): string { return body.parameters.depth; }
  plain(body: unknown): void {}
}
JsonHandler('orders.#')(Foreign.prototype, 'plain');
`;

const compileHandlers = (legacy: boolean) =>
  compile(['handlers.mts'], {
    legacy,
    write: { 'handlers.mts': HANDLERS },
    compilerOptions: { allowImportingTsExtensions: true },
  });

describe('handler decorator types', function () {
  this.timeout(60_000);

  for (const [flavour, legacy] of [
    ['standard (TC39) decorators', false],
    ['experimentalDecorators', true],
  ] as const) {
    it(`under ${flavour}, refuse only a handler whose parameter does not take the schema's output, naming both types`, async () => {
      const out = await compileHandlers(legacy);
      const errors = out.split('\n').filter((l) => /error TS/.test(l));
      // One error, on the wrong handler's decorator: the others (a matching schema, no schema, a filter, a Handler
      // class, a plain call) compile.
      expect(errors, out).to.have.length(1);
      const wrongLine = HANDLERS.split('\n').findIndex((l) => l.includes("'wrong'")) + 1;
      expect(errors[0]).to.contain(`handlers.mts(${wrongLine},`);
      expect(out).to.contain('Typed<{ width: "number"; height: "number"; }>');
      expect(out).to.contain("Property 'depth' is missing");
    });
  }
});
