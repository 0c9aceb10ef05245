import { expect } from 'chai';
import { generateKeyPairSync } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import { tlsFailure } from '../../lib/transport/tls.js';

/** What Node throws for an encrypted key and a passphrase, as a connection attempt would. */
function loadingError(key: string, passphrase: string): unknown {
  try {
    createSecureContext({ key, passphrase });
  } catch (err) {
    return err;
  }
  return undefined;
}

describe('tlsFailure', () => {
  it('names POSTAGE_TLS_PASSPHRASE for a wrong passphrase, however OpenSSL reports it', () => {
    // A wrong passphrase fails as "bad decrypt" most of the time and as a DECODER error about once in 300 keys:
    // 1,000 fresh keys see both often enough that each kind is checked in nearly every run.
    const seen = new Set<string>();
    for (let i = 0; i < 1000; i++) {
      const { privateKey } = generateKeyPairSync('ec', {
        namedCurve: 'prime256v1',
        privateKeyEncoding: { type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'right' },
        publicKeyEncoding: { type: 'spki', format: 'pem' },
      });
      const err = loadingError(privateKey, 'wrong');
      seen.add(String((err as { code?: unknown }).code));
      const mapped = tlsFailure(err, 'localhost:5671');
      expect(mapped?.code, String(err)).to.equal('TLS');
      expect(mapped?.message).to.match(/POSTAGE_TLS_PASSPHRASE/);
    }
    expect(seen.has('ERR_OSSL_BAD_DECRYPT')).to.equal(true);
  });

  it('maps the DECODER form of a wrong passphrase too', () => {
    const err = Object.assign(new Error('error:1E08010C:DECODER routines::unsupported'), {
      code: 'ERR_OSSL_UNSUPPORTED',
    });
    expect(tlsFailure(err, 'localhost:5671')?.message).to.match(/cannot be read.*POSTAGE_TLS_PASSPHRASE/);
  });

  it('leaves an error that is no TLS failure alone', () => {
    expect(
      tlsFailure(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }), 'localhost:5671'),
    ).to.equal(undefined);
  });
});
