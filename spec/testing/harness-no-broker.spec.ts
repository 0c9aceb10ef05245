/**
 * The harness never touches a broker: every processor class the library
 * ships (GenericApplication included) runs under ProcessorHarness in a
 * process where no broker answers, and that process exits by itself.
 *
 * Fault: POSTAGE_URL points at a port nothing listens on (taken from the OS,
 * then closed). Must hold: each delivery settles, and the child exits 0
 * without process.exit, before a generous deadline.
 */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';

/** A local port nothing listens on: one the OS handed out, closed again. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('ProcessorHarness without a broker', function () {
  this.timeout(90_000);

  it('runs MessageProcessor, GenericApplication and subclasses of both, and the process exits by itself', async () => {
    const started = Date.now();
    const port = await closedPort();
    const child = spawn(process.execPath, ['--import', 'tsx', 'spec/fixtures/harness-no-broker.ts'], {
      env: { ...process.env, POSTAGE_URL: `amqp://guest:guest@127.0.0.1:${port}/`, POSTAGE_LOG_LEVEL: 'error' },
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += String(c)));
    child.stderr.on('data', (c: Buffer) => (err += String(c)));
    const deadlineMs = 60_000;
    const code = await new Promise<number | string>((resolve) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        resolve(`still running after ${deadlineMs} ms`);
      }, deadlineMs);
      child.on('exit', (c, signal) => {
        clearTimeout(timer);
        resolve(c ?? String(signal));
      });
    });
    console.log(`      (harness child: ${Date.now() - started} ms)`);
    expect(code, `the child did not exit by itself; stdout:\n${out}\nstderr:\n${err}`).to.equal(0);
    const lines = out
      .split('\n')
      .filter((l) => l.startsWith('{"what"'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).to.deep.equal([
      { what: 'MessageProcessor', placed: 'acked', described: 'result' },
      { what: 'Orders', placed: 'acked', described: 'result' },
      { what: 'GenericApplication', placed: 'acked', described: 'result' },
      { what: 'Shop', placed: 'acked', described: 'result' },
      { what: 'Shop commands', ping: 'harnessed', price: 40, joined: 'acked', left: 'acked' },
      { what: 'done' },
    ]);
  });
});
