/** What the commands that talk to components share: the CLI's fingerprint, a producer on an existing exchange. */
import type { ExchangeObject } from '../topology/exchange.js';
import { GenericProducer, type Producer } from '../send/producer.js';
import { UsageError } from './usage.js';

export const fingerprint = { name: 'postage-cli', type: 'cli' };

/** An exchange the command expects to find (declared passively: a missing one is a usage error, not created). */
export const existing = (name: string): ExchangeObject => ({ name, type: 'direct', passive: true });

export async function producerFor(exchange: ExchangeObject, key: string): Promise<Producer<GenericProducer>> {
  class CliProducer extends GenericProducer {
    static override eks = [[exchange, key] as const];
  }
  try {
    return await CliProducer.create({ fingerprint, waitForBrokerMs: 0 });
  } catch (err) {
    if (/NOT_FOUND/.test(String((err as Error).message)))
      throw new UsageError(`exchange '${exchange.name}' does not exist on this broker`);
    throw err;
  }
}

/** A command's JSON parameters: an object, `{}` when left out. */
export function parseJson(text: string | undefined): Record<string, unknown> {
  if (text === undefined) return {};
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new UsageError(`JSON parameters are not valid JSON: ${text}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new UsageError('JSON parameters must be an object, e.g. \'{"text": "hi"}\'');
  return v as Record<string, unknown>;
}
