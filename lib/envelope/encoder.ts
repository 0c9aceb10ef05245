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
/** A dangerous key spelled plainly, or any \\u escape (which can spell one: "\\u005f_proto__"). */
const MAYBE_DANGEROUS = /"(?:__proto__|constructor|prototype)"|\\u/;

function dropDangerous(this: unknown, key: string, value: unknown): unknown {
  return DANGEROUS.has(key) ? undefined : value;
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
    return Buffer.from(JSON.stringify(data));
  }

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
    const risky = MAYBE_DANGEROUS.test(text);
    try {
      return risky ? JSON.parse(text, dropDangerous) : JSON.parse(text);
    } catch (err) {
      throw new MalformedMessage(`body is not valid JSON (${(err as Error).message})`, { cause: err });
    }
  }
}
