/**
 * Where the specs find RabbitMQ: the environment first (`POSTAGE_URL` /
 * `POSTAGE_*`), then a testcontainers RabbitMQ where a Docker engine answers,
 * otherwise one line that says how to start a broker. Never a silent skip.
 */
import amqp from 'amqplib';
import { brokerUrls, loadConfig, redactUrl } from '../../lib/config.js';

let resolved: Promise<string> | undefined;
let stopContainer: (() => Promise<void>) | undefined;

async function answers(url: string): Promise<boolean> {
  try {
    const c = await amqp.connect(url, { timeout: 3000 });
    await c.close();
    return true;
  } catch {
    return false;
  }
}

async function fromDocker(): Promise<string | undefined> {
  const tc = await import('testcontainers');
  try {
    await tc.getContainerRuntimeClient();
  } catch {
    return undefined;
  }
  const container = await new tc.GenericContainer('rabbitmq:3-alpine')
    .withExposedPorts(5672)
    .withWaitStrategy(tc.Wait.forLogMessage('Server startup complete'))
    .start();
  stopContainer = async () => {
    await container.stop();
  };
  return `amqp://guest:guest@${container.getHost()}:${container.getMappedPort(5672)}`;
}

/** The URL of a broker the specs may use; resolved once per run. */
export function brokerUrl(): Promise<string> {
  resolved ??= (async () => {
    const [url] = brokerUrls(loadConfig());
    if (await answers(url)) return url;
    const docker = await fromDocker();
    if (docker) return docker;
    throw new Error(
      `No RabbitMQ answers at ${redactUrl(url)} and no Docker engine is reachable: start one with \`rabbitmq-server -detached\` (or set POSTAGE_URL) and run the tests again.`,
    );
  })();
  return resolved;
}

/** Stops a broker this module started (a no-op for the environment's broker). */
export async function releaseBroker(): Promise<void> {
  await stopContainer?.();
  stopContainer = undefined;
}
