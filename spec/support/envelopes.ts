/** Postage envelopes as another client (Python Postage, a script, an attacker) puts them on the wire. */

/** A Postage v2 command envelope `pay` with an empty content; `fields` are laid over it (a version, a content…). */
export function envelope(fields: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    type: 'command',
    name: 'pay',
    category: 'message',
    version: '2',
    fingerprint: { name: 'spec' },
    content: { parameters: {} },
    _reserved: {},
    ...fields,
  };
}

/** The bytes of a command envelope named `name` with these parameters, as a raw publish sends them. */
export function envelopeBytes(name: string, parameters: Record<string, unknown> = {}): Buffer {
  return Buffer.from(JSON.stringify(envelope({ name, content: { parameters } })));
}

/** A Postage envelope's keys, in the order Python Postage writes them. */
export const ENVELOPE_KEYS = ['type', 'name', 'category', 'version', 'fingerprint', 'content', '_reserved'];
