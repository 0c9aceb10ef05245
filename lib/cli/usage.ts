import { PostageError } from '../errors.js';

/** Bad usage of the `postage` command (exit code 2): a wrong argument, a module with nothing to run. */
export class UsageError extends PostageError {
  constructor(message: string) {
    super(message, 'USAGE');
    this.name = 'UsageError';
  }
}
