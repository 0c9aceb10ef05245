/** The TypeScript compiler as a user's project runs it, on files a spec writes, for what it says about them. */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

const exec = promisify(execFile);

export interface CompileOptions {
  /** experimentalDecorators and emitDecoratorMetadata on (legacy decorators), instead of TC39 decorators. */
  legacy: boolean;
  /** Files the spec writes into the project's temporary folder, by name. */
  write?: Record<string, string>;
  /** Further compiler options. */
  compilerOptions?: Record<string, unknown>;
}

/**
 * Compiles `files` (names in a temporary project extending the repository's tsconfig.json; absolute paths stay as
 * they are) with tsc, and resolves to what it printed: '' when they compile. The folder is removed after.
 */
export async function compile(files: string[], options: CompileOptions): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'postage-tsc-'));
  try {
    for (const [name, text] of Object.entries(options.write ?? {})) writeFileSync(join(dir, name), text);
    writeFileSync(
      join(dir, 'tsconfig.json'),
      JSON.stringify({
        extends: resolve('tsconfig.json'),
        compilerOptions: {
          noEmit: true,
          typeRoots: [resolve('node_modules/@types')],
          ...(options.legacy ? { experimentalDecorators: true, emitDecoratorMetadata: true } : {}),
          ...options.compilerOptions,
        },
        include: [],
        files,
      }),
    );
    return await exec(process.execPath, [
      resolve('node_modules/typescript/bin/tsc'),
      '-p',
      join(dir, 'tsconfig.json'),
    ]).then(
      () => '',
      (e: { stdout?: string }) => e.stdout ?? String(e),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
