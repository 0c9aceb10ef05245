/** The orders component as it ships: `npx postage run demos/testing_example/main.ts` starts what this exports. */
import { OrderProcessor, Outbound } from './orders.js';

export const orders = new OrderProcessor(await Outbound.create());
