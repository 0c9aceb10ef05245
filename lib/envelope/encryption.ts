import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { config } from '../config.js';
import { ConfigError, MalformedMessage } from '../errors.js';
import { ENCRYPTED, JsonEncoder, type JsonEncoderOptions } from './encoder.js';

// NuroPb's scheme: the envelope stays readable, its content does not.
export { ENCRYPTED };

export interface EncryptionOptions extends JsonEncoderOptions {
  /** Key id to 32-byte AES-256 key (a Buffer, or base64 / 64 hex characters). Several keys: rotation. */
  keys: Readonly<Record<string, Buffer | string>>;
  /** The key id new messages are encrypted with. @default the first of `keys` */
  current?: string;
  /** Take messages that arrive unencrypted (while a fleet moves to encryption). @default false */
  acceptPlaintext?: boolean;
}

interface Sealed {
  alg: 'A256GCM';
  kid: string;
  iv: string;
  tag: string;
  data: string;
}

/**
 * A key's 32 bytes, from a Buffer, 64 hex characters, or canonical base64 (the
 * text `openssl rand -base64 32` prints: 44 characters ending in one `=`).
 * Node's base64 decoder skips what it cannot read, so a passphrase or a key
 * with junk after it can decode to 32 bytes by chance: only text that encodes
 * back to itself is taken.
 */
function keyBytes(id: string, v: Buffer | string, source: string): Buffer {
  const refuse = (why: string) =>
    new ConfigError(
      source,
      `${source}: key '${id}' ${why} (AES-256): give 32 random bytes as base64 (openssl rand -base64 32) or 64 hex ` +
        'characters.',
    );
  if (Buffer.isBuffer(v)) {
    if (v.length !== 32) throw refuse(`is ${v.length} bytes, not 32`);
    return v;
  }
  if (typeof v !== 'string') throw refuse('is neither a Buffer nor a string');
  if (/^[0-9a-f]{64}$/i.test(v)) return Buffer.from(v, 'hex');
  const b = Buffer.from(v, 'base64');
  if (b.toString('base64') !== v) throw refuse('is not canonical base64 nor 64 hex characters');
  if (b.length !== 32) throw refuse(`is not 32 bytes (${b.length})`);
  return b;
}

/**
 * JSON envelopes whose content is encrypted with AES-256-GCM. The envelope's
 * type, name, category, version and fingerprint stay readable (routing,
 * logs, `postage watch`); its content becomes `{ "$encrypted": { alg, kid,
 * iv, tag, data } }`, authenticated together with the type, name and
 * category (moving a sealed content to another envelope fails too). A
 * message under a key this component lacks, a tampered one, or (unless
 * `acceptPlaintext`) an unencrypted one is a `MalformedMessage`: rejected,
 * never handled. RPC replies are encrypted the same way.
 */
export class EncryptedJsonEncoder extends JsonEncoder {
  readonly #keys: Map<string, Buffer>;
  readonly #current: string;
  readonly #acceptPlaintext: boolean;

  constructor(options: EncryptionOptions, source = 'keys') {
    super(options);
    this.#keys = new Map(Object.entries(options.keys).map(([id, k]) => [id, keyBytes(id, k, source)]));
    const current = options.current ?? [...this.#keys.keys()][0];
    if (current === undefined || !this.#keys.has(current))
      throw new ConfigError(
        source,
        `${source}: ${current === undefined ? 'no key given' : `the current key '${current}' is not among the keys`}.`,
      );
    this.#current = current;
    this.#acceptPlaintext = options.acceptPlaintext ?? false;
  }

  override encode(data: unknown): Buffer {
    if (!isEnvelope(data)) return super.encode(data);
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.#keys.get(this.#current)!, iv);
    cipher.setAAD(aad(data));
    const sealed = Buffer.concat([cipher.update(JSON.stringify(data.content ?? null)), cipher.final()]);
    const content: { [ENCRYPTED]: Sealed } = {
      [ENCRYPTED]: {
        alg: 'A256GCM',
        kid: this.#current,
        iv: iv.toString('base64'),
        tag: cipher.getAuthTag().toString('base64'),
        data: sealed.toString('base64'),
      },
    };
    return super.encode({ ...data, content });
  }

  override decode(data: Buffer | string | Uint8Array): unknown {
    const body = this.parse(data);
    if (!isEnvelope(body)) return body;
    const sealed = (body.content as Record<string, unknown> | null | undefined)?.[ENCRYPTED] as
      | Partial<Sealed>
      | undefined;
    if (sealed === undefined) {
      if (this.#acceptPlaintext) return body;
      throw new MalformedMessage(
        'the message is not encrypted, and this component takes encrypted messages only (acceptPlaintext: false)',
      );
    }
    if (
      typeof sealed !== 'object' ||
      sealed === null ||
      sealed.alg !== 'A256GCM' ||
      typeof sealed.kid !== 'string' ||
      typeof sealed.iv !== 'string' ||
      typeof sealed.tag !== 'string' ||
      typeof sealed.data !== 'string'
    ) {
      throw new MalformedMessage(
        'the encrypted content is not in the form postage-ts writes ({ alg: "A256GCM", kid, iv, tag, data })',
      );
    }
    const key = this.#keys.get(sealed.kid);
    if (!key)
      throw new MalformedMessage(
        `the message is encrypted with key '${sealed.kid}', which this component does not have: add it to its keys ` +
          '(POSTAGE_ENCRYPTION_KEYS)',
      );
    let plain: Buffer;
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(sealed.iv, 'base64'));
      decipher.setAAD(aad(body));
      decipher.setAuthTag(Buffer.from(sealed.tag, 'base64'));
      plain = Buffer.concat([decipher.update(Buffer.from(sealed.data, 'base64')), decipher.final()]);
    } catch (err) {
      throw new MalformedMessage(
        `the encrypted content fails authentication under key '${sealed.kid}': it was changed on the way, or sealed ` +
          'with another key of that name',
        { cause: err },
      );
    }
    // The plaintext is JSON from the sender: parsed with the same guard against prototype keys.
    return { ...body, content: this.parse(plain) };
  }
}

type Envelope = { type?: unknown; name?: unknown; category?: unknown; content?: unknown };

function isEnvelope(v: unknown): v is Envelope {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && 'content' in v && 'type' in v;
}

function aad(e: Envelope): Buffer {
  return Buffer.from(`${String(e.type)}\0${String(e.name)}\0${String(e.category)}`);
}

/**
 * The encoder components use unless given one: encrypting where
 * `POSTAGE_ENCRYPTION_KEYS` holds keys (`id=base64,id2=base64`, the first
 * encrypts; `POSTAGE_ENCRYPTION_ACCEPT_PLAINTEXT=true` during a move), plain
 * JSON otherwise.
 * @internal
 */
export function defaultEncoder(): JsonEncoder {
  const cfg = config();
  if (!cfg.encryptionKeys) return new JsonEncoder();
  const keys: Record<string, string> = {};
  for (const entry of cfg.encryptionKeys
    .split(',')
    .map((e) => e.trim())
    .filter(Boolean)) {
    const at = entry.indexOf('=');
    if (at <= 0)
      throw new ConfigError(
        'POSTAGE_ENCRYPTION_KEYS',
        'POSTAGE_ENCRYPTION_KEYS: give keys as id=base64key, separated by commas (the first encrypts).',
      );
    const id = entry.slice(0, at);
    // Two keys under one id: which one reads a message would depend on their order. Never quoted: they are secrets.
    if (Object.hasOwn(keys, id))
      throw new ConfigError(
        'POSTAGE_ENCRYPTION_KEYS',
        `POSTAGE_ENCRYPTION_KEYS: key id '${id}' is given twice: each key needs an id of its own.`,
      );
    keys[id] = entry.slice(at + 1);
  }
  return new EncryptedJsonEncoder({ keys, acceptPlaintext: cfg.encryptionAcceptPlaintext }, 'POSTAGE_ENCRYPTION_KEYS');
}
