/**
 * The public surface, checked mechanically: every name each subpath of the
 * package exports (`postage-ts`, `/testing`, `/nestjs`, `/postgres`, `/redis`: all of
 * package.json's `exports`), and the public members of each exported class,
 * as the published declaration files (dist/) show them to a user.
 * A change to it is a change to what users program against: it shows up
 * here as a diff against spec/api-surface.txt, to be made on purpose
 * (`UPDATE_API=1 npx mocha spec/api.spec.ts` writes the file anew).
 */
import { expect } from 'chai';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import ts from 'typescript';

type Exports = Record<string, string | { import?: { types?: string } }>;
const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { name: string; exports: Exports };
/** Every subpath users import, by its name, and the ESM declaration file it resolves to. */
const ENTRIES: Record<string, string> = Object.fromEntries(
  Object.entries(pkg.exports).flatMap(([path, target]) => {
    const types = typeof target === 'object' ? target.import?.types : undefined;
    return types ? [[`${pkg.name}${path.slice(1)}`, types.replace(/^\.\//, '')]] : [];
  }),
);
const REPORT = 'spec/api-surface.txt';

function surface(): string {
  const program = ts.createProgram(Object.values(ENTRIES), { noEmit: true, skipLibCheck: true });
  const checker = program.getTypeChecker();
  const lines: string[] = [];
  for (const [entry, file] of Object.entries(ENTRIES)) {
    const source = program.getSourceFile(file);
    if (!source) throw new Error(`${file} is missing: build first (npm run build)`);
    const moduleSymbol = checker.getSymbolAtLocation(source)!;
    for (const exp of checker.getExportsOfModule(moduleSymbol).sort((a, b) => a.name.localeCompare(b.name))) {
      const symbol = exp.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exp) : exp;
      const kind =
        symbol.flags & ts.SymbolFlags.Class
          ? 'class'
          : symbol.flags & ts.SymbolFlags.Function
            ? 'function'
            : symbol.flags & ts.SymbolFlags.Interface
              ? 'interface'
              : symbol.flags & ts.SymbolFlags.TypeAlias
                ? 'type'
                : symbol.flags & ts.SymbolFlags.Variable
                  ? 'const'
                  : 'other';
      lines.push(`${entry} ${kind} ${exp.name}`);
      if (kind !== 'class') continue;
      const decl = symbol.declarations?.find(ts.isClassDeclaration);
      if (!decl) continue;
      const members = decl.members
        .filter(
          (m) =>
            m.name !== undefined &&
            !(ts.getCombinedModifierFlags(m) & (ts.ModifierFlags.Private | ts.ModifierFlags.Protected)) &&
            !ts.isPrivateIdentifier(m.name),
        )
        .map((m) => {
          const isStatic = ts.getCombinedModifierFlags(m) & ts.ModifierFlags.Static;
          const from = source.fileName === decl.getSourceFile().fileName ? source : decl.getSourceFile();
          return `${isStatic ? 'static ' : ''}${m.name!.getText(from)}`;
        });
      for (const m of [...new Set(members)].sort()) lines.push(`${entry}   ${exp.name}.${m}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

describe('the public surface', () => {
  it('covers every subpath the package exports', () => {
    expect(Object.keys(ENTRIES)).to.have.members([
      'postage-ts',
      'postage-ts/testing',
      'postage-ts/nestjs',
      'postage-ts/postgres',
      'postage-ts/contract',
      'postage-ts/redis',
    ]);
  });

  it(`is what ${REPORT} says: the exports, and the public members of exported classes`, () => {
    const now = surface();
    if (process.env.UPDATE_API === '1' || !existsSync(REPORT)) writeFileSync(REPORT, now);
    const was = readFileSync(REPORT, 'utf8');
    const gone = was.split('\n').filter((l) => l && !now.includes(`${l}\n`));
    const added = now.split('\n').filter((l) => l && !was.includes(`${l}\n`));
    expect(
      { gone, added },
      `the public surface changed; if on purpose, run UPDATE_API=1 npx mocha spec/api.spec.ts and commit ${REPORT}`,
    ).to.deep.equal({ gone: [], added: [] });
  });

  it('keeps the pipeline internals off GenericConsumer (CONTRACT.md section 5 and what tools read)', () => {
    const members = surface()
      .split('\n')
      .filter((l) => l.startsWith('postage-ts   GenericConsumer.'))
      .map((l) => l.slice('postage-ts   GenericConsumer.'.length));
    for (const internal of [
      'deadLetter',
      'delay',
      'errorChannel',
      'sendReply',
      'streamSend',
      'streamControl',
      'watchStream',
      'encodeReply',
      'settled',
      'queueOf',
      'closeWith',
    ])
      expect(members, internal).to.not.include(internal);
    for (const contract of [
      'queueBind',
      'queueUnbind',
      'addEqk',
      'startConsuming',
      'stopConsuming',
      'ack',
      'reject',
      'decode',
      'rpcReply',
      'ready',
      'close',
    ])
      expect(members, contract).to.include(contract);
  });
});
