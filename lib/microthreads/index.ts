export { MicroThread, FunctionThread, STOP, type Stop, type StepResult, type Yielded } from './thread.js';
export { MicroScheduler, type MicroSchedulerOptions } from './scheduler.js';
export { sleep, call } from './effects.js';
