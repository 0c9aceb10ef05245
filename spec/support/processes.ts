export { processAlive } from '../../lib/testing/processes.js';
