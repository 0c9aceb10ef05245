import { spawn } from 'node:child_process';
import type { Logger } from '../log.js';

/** Set by `postage run` in the process it supervises: that process's restart is the launcher's job. */
export const SUPERVISED = 'POSTAGE_RUN_SUPERVISED';
/** The exit code a supervised process asks to be started again with (EX_TEMPFAIL). */
export const RESTART_EXIT = 75;

let requested = false;

/**
 * Whether a supervised process was asked to restart (its `postage run` then exits with {@link RESTART_EXIT}). @internal
 */
export function restartRequested(): boolean {
  return requested;
}

/**
 * What `AckAndRestart` does unless a processor overrides `restart()`.
 *
 * Under `postage run`, the launcher owns the process: this one closes every
 * component gracefully (as on SIGTERM) and exits with {@link RESTART_EXIT};
 * the launcher waits for it to exit, then starts a new one as its own child.
 * Elsewhere, the process is run again with the same arguments, `component`
 * is closed, and this process ends with the new one's exit code.
 * @internal
 */
export function restartProcess(log: Logger, component: { close(): Promise<void> }): void {
  if (process.env[SUPERVISED] === '1') {
    log.warn('restarting: closing, then postage run starts this component again');
    requested = true;
    // postage run's own signal handling closes every component it runs, gracefully, then exits.
    process.emit('SIGTERM', 'SIGTERM');
    return;
  }
  log.info('restarting');
  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit' });
  child.on('exit', (code) => process.exit(code ?? 0));
  void component.close();
}
