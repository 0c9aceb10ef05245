import { spawn } from 'node:child_process';
import type { Logger } from '../log.js';

/**
 * Runs this process again with the same arguments, closes `component`, and
 * ends this process with the new one's exit code: what `AckAndRestart` does
 * unless a processor overrides `restart()`.
 * @internal
 */
export function restartProcess(log: Logger, component: { close(): Promise<void> }): void {
  log.info('restarting');
  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit' });
  child.on('exit', (code) => process.exit(code ?? 0));
  void component.close();
}
