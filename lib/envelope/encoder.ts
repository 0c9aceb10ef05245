import { DEFAULTS } from '../config.js';
import { MalformedMessage } from '../errors.js';

/** The identity encoder: what goes in comes out. Subclass it to change the wire format. */
export class Encoder {
  contentType = '';
  encode(data: unknown): unknown {
    return data;
  }
  decode(data: unknown): unknown {
    return data;
  }
}

export interface JsonEncoderOptions {
  /** Bodies longer than this are refused before parsing. @default 16 MiB */
  maxBytes?: number;
}

const DANGEROUS = new Set(['__proto__', 'constructor', 'prototype']);
/**
 * Whether `text` may hold a dangerous key: one spelled plainly, or any \\u escape (which can spell one:
 * "\\u005f_proto__"). Four searches, not a regular expression: this runs on every body, and they cost less.
 */
function maybeDangerous(text: string): boolean {
  return (
    text.includes('\\u') ||
    text.includes('"__proto__"') ||
    text.includes('"constructor"') ||
    text.includes('"prototype"')
  );
}

function dropDangerous(this: unknown, key: string, value: unknown): unknown {
  return DANGEROUS.has(key) ? undefined : value;
}

/** A Postage envelope's keys, in the order `Message` makes them (Python Postage's order). */
const ENVELOPE_KEYS = ['type', 'name', 'category', 'version', 'fingerprint', 'content', '_reserved'];

/**
 * `JSON.stringify` of a Postage envelope, with the JSON of its fingerprint (six strings, the same on every send of a
 * component) made once and put in place: that JSON was about a third of encoding a small RPC request. The bytes are
 * `JSON.stringify`'s (spec/unit/envelope-encoding.spec.ts compares them): anything that is not a plain envelope,
 * with its keys in `Message`'s order, string names and a fingerprint of strings, gives undefined, and is encoded whole.
 * @internal
 */
export class EnvelopeJson {
  /** The fingerprint last seen: its keys and values in order, and its JSON. */
  #keys: string[] = [];
  #values: string[] = [];
  #json = '';
  /** The envelope's JSON up to its content, for the last type, name, category, version and fingerprint. */
  #head = { type: '', name: '', category: '', version: '', fp: '', bytes: Buffer.alloc(0) };

  encode(data: unknown): Buffer | undefined {
    if (typeof data !== 'object' || data === null || Object.getPrototypeOf(data) !== Object.prototype) return undefined;
    const b = data as Record<string, unknown>;
    let n = 0;
    for (const k in b) if (k !== ENVELOPE_KEYS[n++]) return undefined;
    if (n !== ENVELOPE_KEYS.length) return undefined;
    const { type, name, category, version, fingerprint, content, _reserved: reserved } = b;
    if (typeof type !== 'string' || typeof name !== 'string' || typeof category !== 'string') return undefined;
    if (typeof version !== 'string' || !plainObject(content) || !plainObject(reserved)) return undefined;
    const fp = this.#fingerprint(fingerprint);
    if (fp === undefined) return undefined;
    let head = this.#head;
    if (
      type !== head.type ||
      name !== head.name ||
      category !== head.category ||
      version !== head.version ||
      fp !== head.fp
    ) {
      const json =
        `{"type":${JSON.stringify(type)},"name":${JSON.stringify(name)},"category":${JSON.stringify(category)},` +
        `"version":${JSON.stringify(version)},"fingerprint":${fp},"content":`;
      head = this.#head = { type, name, category, version, fp, bytes: Buffer.from(json) };
    }
    let rest: string;
    try {
      rest = `${JSON.stringify(content)},"_reserved":${emptyObject(reserved) ? '{}' : JSON.stringify(reserved)}}`;
    } catch {
      // A value JSON cannot encode (a BigInt, a cycle): the whole envelope's encoding throws its own error.
      return undefined;
    }
    // The head's bytes are kept; only the rest is written (a string of all the parts is flattened and then written).
    const start = head.bytes.length;
    const out = Buffer.allocUnsafe(start + Buffer.byteLength(rest));
    head.bytes.copy(out, 0);
    out.write(rest, start);
    return out;
  }

  /** The fingerprint's JSON: the one made before when its keys and values are the same, in the same order. */
  #fingerprint(fp: unknown): string | undefined {
    if (!plainObject(fp)) return undefined;
    const f = fp as Record<string, unknown>;
    const keys = this.#keys;
    const values = this.#values;
    let i = 0;
    for (const k in f) {
      if (k !== keys[i] || f[k] !== values[i]) return this.#learn(f);
      i++;
    }
    return i === keys.length && i > 0 ? this.#json : this.#learn(f);
  }

  #learn(f: Record<string, unknown>): string | undefined {
    const keys: string[] = [];
    const values: string[] = [];
    const parts: string[] = [];
    for (const k in f) {
      const v = f[k];
      if (typeof v !== 'string') return undefined;
      keys.push(k);
      values.push(v);
      parts.push(`${JSON.stringify(k)}:${JSON.stringify(v)}`);
    }
    this.#keys = keys;
    this.#values = values;
    this.#json = `{${parts.join(',')}}`;
    return this.#json;
  }
}

/** A plain object without keys (an envelope's usual `_reserved`). */
function emptyObject(v: object): boolean {
  if (Array.isArray(v)) return false;
  for (const _ in v) return false;
  return true;
}

/** An object JSON encodes as its own keys: a plain object or array, without a toJSON. */
function plainObject(v: unknown): v is object {
  if (typeof v !== 'object' || v === null) return false;
  const proto = Object.getPrototypeOf(v);
  return (
    (proto === Object.prototype || proto === Array.prototype) &&
    typeof (v as { toJSON?: unknown }).toJSON !== 'function'
  );
}

/** Where an encrypted envelope keeps its content (see `EncryptedJsonEncoder`). */
export const ENCRYPTED = '$encrypted';

/** JSON on the wire (`application/json`), as Python Postage sends it. */
export class JsonEncoder extends Encoder {
  override contentType = 'application/json';
  readonly maxBytes: number;

  constructor(options: JsonEncoderOptions = {}) {
    super();
    this.maxBytes = options.maxBytes ?? DEFAULTS.maxBodyBytes;
  }

  override encode(data: unknown): Buffer {
    return this.#envelope.encode(data) ?? Buffer.from(JSON.stringify(data));
  }

  /** A Postage envelope's JSON, its fingerprint's made once (see {@link EnvelopeJson}). */
  readonly #envelope = new EnvelopeJson();

  /**
   * Parses a body. Throws {@link MalformedMessage} for oversized or non-JSON
   * input, and for an envelope whose content is encrypted: a component without
   * keys must refuse it (dead-lettered, its handler not run), not take the
   * sealed object for the content. See {@link parse}.
   */
  override decode(data: Buffer | string | Uint8Array): unknown {
    const v = this.parse(data);
    const content = typeof v === 'object' && v !== null ? (v as { content?: unknown }).content : undefined;
    if (typeof content === 'object' && content !== null && ENCRYPTED in content) {
      throw new MalformedMessage(
        `the message is encrypted (${ENCRYPTED}), and this component has no keys: give it the sender's key in ` +
          'POSTAGE_ENCRYPTION_KEYS (or an EncryptedJsonEncoder)',
      );
    }
    return v;
  }

  /**
   * Parses JSON. Throws {@link MalformedMessage} for oversized or non-JSON input.
   * Keys named `__proto__`, `constructor` or `prototype` are dropped, however
   * they are spelled (JSON escapes included), so no received object can ever
   * reach a prototype however it is later merged.
   */
  protected parse(data: Buffer | string | Uint8Array): unknown {
    const buf =
      typeof data === 'string'
        ? Buffer.from(data)
        : Buffer.isBuffer(data)
          ? data
          : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    if (buf.length > this.maxBytes) {
      throw new MalformedMessage(`body is ${buf.length} bytes, over the limit of ${this.maxBytes}`);
    }
    const text = buf.toString('utf8');
    // The reviver costs a call per key; only pay it when a dangerous key can be present.
    const risky = maybeDangerous(text);
    try {
      return risky ? JSON.parse(text, dropDangerous) : JSON.parse(text);
    } catch (err) {
      throw new MalformedMessage(`body is not valid JSON (${(err as Error).message})`, { cause: err });
    }
  }
}
