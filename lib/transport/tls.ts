import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import type { PostageConfig } from '../config.js';
import { BrokerError, ConfigError } from '../errors.js';

/**
 * How an `amqps://` connection proves who the broker is, and who the client
 * is. Each certificate or key is PEM text, a Buffer, or the path of a PEM
 * file. The broker's certificate is always checked, against `ca` (or Node's
 * trusted roots), and must name the host connected to (or `servername`).
 */
export interface TlsOptions {
  /** The CA certificate(s) that signed the broker's certificate. @default Node's trusted roots */
  ca?: string | Buffer | ReadonlyArray<string | Buffer>;
  /** The client's certificate, for a broker that asks for one (`ssl_options.verify = verify_peer`). */
  cert?: string | Buffer;
  /** The client certificate's private key. */
  key?: string | Buffer;
  /** The passphrase of an encrypted `key`. Never logged. */
  passphrase?: string;
  /** The name the broker's certificate must carry. @default the host of the URL */
  servername?: string;
}

/** What Node's `tls.connect` takes, as far as postage-ts sets it. @internal */
export interface TlsSocketOptions {
  ca?: Array<string | Buffer>;
  cert?: string | Buffer;
  key?: string | Buffer;
  passphrase?: string;
  servername?: string;
  rejectUnauthorized: true;
}

/** PEM text or a Buffer as is; anything else is a path, read now. */
function pem(v: string | Buffer, source: string): string | Buffer {
  if (Buffer.isBuffer(v) || v.includes('-----BEGIN')) return v;
  try {
    return readFileSync(v);
  } catch (err) {
    throw new ConfigError(
      source,
      `${source}: cannot read '${v}' (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): give the ` +
        'path of a PEM file, or its contents.',
    );
  }
}

/** The socket options of an `amqps://` connection to `host`, from `tls` (options win) and `POSTAGE_TLS_*`. @internal */
export function tlsSocketOptions(
  tls: TlsOptions | undefined,
  cfg: Pick<PostageConfig, 'tlsFiles'>,
  host: string,
): TlsSocketOptions {
  const env = cfg.tlsFiles;
  const o: TlsSocketOptions = { rejectUnauthorized: true };
  const ca = tls?.ca ?? env.ca;
  if (ca !== undefined) {
    const source = tls?.ca !== undefined ? 'tls.ca' : 'POSTAGE_TLS_CA';
    o.ca = (Array.isArray(ca) ? ca : [ca]).map((c: string | Buffer) => pem(c, source));
  }
  const cert = tls?.cert ?? env.cert;
  if (cert !== undefined) o.cert = pem(cert, tls?.cert !== undefined ? 'tls.cert' : 'POSTAGE_TLS_CERT');
  const key = tls?.key ?? env.key;
  if (key !== undefined) o.key = pem(key, tls?.key !== undefined ? 'tls.key' : 'POSTAGE_TLS_KEY');
  if ((o.cert === undefined) !== (o.key === undefined)) {
    const missing = o.cert === undefined ? ['cert', 'POSTAGE_TLS_CERT'] : ['key', 'POSTAGE_TLS_KEY'];
    throw new ConfigError(
      missing[1],
      `${missing[1]}: a client certificate needs both its certificate and its key; set tls.${missing[0]} or ` +
        `${missing[1]}.`,
    );
  }
  const passphrase = tls?.passphrase ?? env.passphrase;
  if (passphrase !== undefined) o.passphrase = passphrase;
  // SNI takes a name, never an address; the certificate is then checked against the address itself.
  const servername = tls?.servername ?? env.servername ?? (isIP(host) ? undefined : host);
  if (servername !== undefined) o.servername = servername;
  return o;
}

/** Node's and OpenSSL's codes for a broker certificate that nothing trusted vouches for. */
const UNTRUSTED = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT',
  'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE',
]);

/**
 * A TLS failure as a `BrokerError` `TLS` that says what to fix, or undefined when `err` is no TLS failure. @internal
 */
export function tlsFailure(err: unknown, where: string): BrokerError | undefined {
  const code = String((err as { code?: unknown })?.code ?? '');
  const said = String((err as Error)?.message ?? err);
  const tls = (message: string) =>
    new BrokerError(`TLS with the broker at ${where} failed: ${message}`, 'TLS', { cause: err });
  if (UNTRUSTED.has(code))
    return tls(
      `its certificate is not trusted (${code}). Set POSTAGE_TLS_CA (or the tls.ca option) to the CA certificate ` +
        'that signed it.',
    );
  if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID')
    return tls(
      `its certificate is not valid now (${code}). Renew the broker's certificate, or check this machine's clock.`,
    );
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID')
    return tls(
      `its certificate does not name the host connected to (${said}). Connect by a name the certificate carries, or ` +
        'set POSTAGE_TLS_SERVERNAME to it.',
    );
  if (/CERTIFICATE_REQUIRED|HANDSHAKE_FAILURE|BAD_CERTIFICATE|UNKNOWN_CA|CERTIFICATE_UNKNOWN/.test(code)) {
    return tls(
      `the broker refused the handshake (${code}): it asks for a client certificate it trusts. Set POSTAGE_TLS_CERT ` +
        'and POSTAGE_TLS_KEY (or tls.cert and tls.key) to one signed by a CA the broker trusts.',
    );
  }
  if (code === 'ERR_OSSL_BAD_DECRYPT' || /bad decrypt/i.test(said))
    return tls('the client key cannot be decrypted. Check POSTAGE_TLS_PASSPHRASE (or tls.passphrase).');
  // A wrong passphrase usually fails the cipher's padding check (bad decrypt), but about one time in 300
  // the garbage passes it and OpenSSL fails to decode the result instead.
  if (code === 'ERR_OSSL_UNSUPPORTED' && /DECODER/i.test(said)) {
    return tls(
      'the client key cannot be read: it is not decrypted by the passphrase given, or is in a form OpenSSL cannot ' +
        'load. Check POSTAGE_TLS_PASSPHRASE (or tls.passphrase) and POSTAGE_TLS_KEY (or tls.key).',
    );
  }
  if (code === 'ERR_SSL_WRONG_VERSION_NUMBER' || /wrong version number/i.test(said))
    return tls(
      `the port does not speak TLS (${code}). amqps:// goes to RabbitMQ's TLS listener (5671 by default); use ` +
        'amqp:// for 5672.',
    );
  if (code.startsWith('ERR_SSL_') || code.startsWith('ERR_OSSL_') || code.startsWith('ERR_TLS_') || code === 'EPROTO')
    return tls(`${said} (${code}).`);
  return undefined;
}
