import { PostageError } from '../errors.js';

/** Bad usage of the `postage` command (exit code 2): a wrong argument, a module with nothing to run. */
export class UsageError extends PostageError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'USAGE', options);
    this.name = 'UsageError';
  }
}
