// Mocha root hooks: one broker for the whole run, released at the end.
import { releaseBroker } from './broker.js';

// Specs that assert on log lines capture them; the rest of the run stays quiet.
process.env.POSTAGE_LOG_LEVEL ??= 'silent';

export const mochaHooks = {
  async afterAll(): Promise<void> {
    await releaseBroker();
  },
};
