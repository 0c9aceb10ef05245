/**
 * Runs a demo's receiver and sender end to end:
 *   npm run demo                 (the RPC echo)
 *   tsx demos/run.ts basic_echo | advanced_echo | rpc_echo
 * Starts the receiver as its own process, waits until it is ready, runs the
 * sender (which then tells the receiver to quit), and exits 0 when both did.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

const demo = process.argv[2] ?? 'rpc_echo';
if (!['basic_echo', 'advanced_echo', 'rpc_echo'].includes(demo)) {
  console.error(`unknown demo '${demo}': use basic_echo, advanced_echo or rpc_echo`);
  process.exit(2);
}
const here = (f: string) => fileURLToPath(new URL(`./${demo}/${f}`, import.meta.url));
const node = (file: string, ...args: string[]) =>
  spawn(process.execPath, ['--import', 'tsx', here(file), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });

// The receiver starts as any component ships: its module, started by `postage run`.
const receiver = spawn(
  process.execPath,
  ['--import', 'tsx', fileURLToPath(new URL('../lib/cli/postage.ts', import.meta.url)), 'run', here('receive.ts')],
  // The sender's quit is the demo's plan, not news: the receiver logs only what went wrong, unless asked for more.
  {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, POSTAGE_LOG_LEVEL: process.env.POSTAGE_LOG_LEVEL || 'error' },
  },
);
// Listen for the exit at once: the receiver may quit before the sender does.
const receiverExit = once(receiver, 'exit') as Promise<[number | null]>;
receiver.stdout.setEncoding('utf8');
await new Promise<void>((resolve, reject) => {
  let seen = '';
  receiver.stdout.on('data', (chunk: string) => {
    seen += chunk;
    process.stdout.write(`[receiver] ${chunk}`);
    if (seen.includes('ready')) resolve();
  });
  receiver.once('exit', (code) =>
    reject(
      new Error(`the receiver exited (${code}) before it was ready: is RabbitMQ running? (rabbitmq-server -detached)`),
    ),
  );
});

const sender = node('send.ts', '--quit');
sender.stdout.on('data', (chunk: Buffer) => process.stdout.write(`[sender] ${chunk}`));
const [code] = (await once(sender, 'exit')) as [number | null];
const [receiverCode] = await receiverExit;
if (code !== 0 || receiverCode !== 0)
  console.error(`demo failed: sender exited ${code}, receiver exited ${receiverCode}`);
process.exit(code === 0 && receiverCode === 0 ? 0 : 1);
