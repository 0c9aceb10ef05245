/**
 * What the compiler makes of the contract form (spec/types/contract.types.ts), in both decorator flavours and the
 * plain `(prototype, name)` form: the fixture compiles, every `@ts-expect-error` line in it is an error, and with the
 * markers taken out each of those lines fails for the reason it names, in words a user can act on.
 */
import { expect } from 'chai';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { compile } from '../support/tsc.js';
const FIXTURE = resolve('spec/types/contract.types.ts');
const SOURCE = readFileSync(FIXTURE, 'utf8');

/**
 * Compiles the fixture's text with its markers removed (beside it, so its imports resolve) and returns tsc's output.
 * The lines that fail are then exactly the marked ones: so the fixture as written compiles (no marker unused, no
 * other error), which `npm run typecheck` checks too under standard decorators.
 */
async function compileStripped(legacy: boolean): Promise<string> {
  const file = resolve('spec/types', `.stripped-${process.pid}-${legacy}.ts`);
  try {
    writeFileSync(file, SOURCE.replaceAll('// @ts-expect-error', '// marker removed'));
    return await compile([file], { legacy });
  } finally {
    rmSync(file, { force: true });
  }
}

/** The 1-based lines right after each marker: where the fixture says an error must be. */
const marked = SOURCE.split('\n').flatMap((l, i) => (l.trim().startsWith('// @ts-expect-error') ? [i + 2] : []));

describe('the contract form, as the compiler sees it', function () {
  this.timeout(120_000);

  for (const [flavour, legacy] of [
    ['standard (TC39) decorators', false],
    ['experimentalDecorators', true],
  ] as const) {
    it(`under ${flavour}, refuses a misspelled name, a wrong argument, a wrong handler, saying why`, async () => {
      const out = await compileStripped(legacy);
      const lines = new Set(
        out
          .split('\n')
          .map((l) => /\.stripped-[^(]+\((\d+),\d+\): error TS/.exec(l)?.[1])
          .filter((n): n is string => n !== undefined)
          .map(Number),
      );
      // Each marked line fails, and nothing else does.
      expect(
        [...lines].sort((a, b) => a - b),
        out,
      ).to.deep.equal(marked);
      // The misspelled handler name lists the contract's names; the misspelled sender offers the right one.
      expect(out).to.contain(`Argument of type '"prise"' is not assignable to parameter of type '"price" | "repriced"`);
      expect(out).to.contain(
        "Property 'rpc_prise' does not exist on type 'Producer<PricingClient>'. Did you mean 'rpc_price'?",
      );
      // A handler taking qty as a string is told which parameter, and a wrong RPC result which type was expected.
      expect(out).to.contain("The types of 'parameters.qty' are incompatible between these types.");
      expect(out).to.match(
        /Type 'string' is not assignable to type 'ContractReturn<\{ cents: number; currency: string; \}>'/,
      );
      // A wrong argument to a sender names the parameter.
      expect(out).to.contain("Type 'string' is not assignable to type 'number'");
    });
  }
});
