// Mocha root hooks: one broker for the whole run, released at the end.
import { releaseBroker } from './broker.js';

export const mochaHooks = {
  async afterAll(): Promise<void> {
    await releaseBroker();
  },
};
