import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { selfSignedCertificate } from '../src/certs/self-signed.js';

/** `openssl asn1parse` of a PEM certificate: one line per element. */
const asn1parse = (pem: string) => execFileSync('openssl', ['asn1parse'], { input: pem, encoding: 'utf8' });
const text = (pem: string) => execFileSync('openssl', ['x509', '-noout', '-text'], { input: pem, encoding: 'utf8' });

describe('the generated TLS certificate', () => {
  it('is a strict, self-signed ECDSA P-256 server certificate', async () => {
    const { cert, key } = await selfSignedCertificate(['localhost', 'host.example'], ['127.0.0.1', '::1']);
    const x = new X509Certificate(cert);
    assert.ok(x.verify(x.publicKey));
    assert.ok(x.checkPrivateKey(createPrivateKey(key)));
    assert.equal(x.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assert.equal(x.subjectAltName, 'DNS:localhost, DNS:host.example, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1');
    assert.equal((Date.parse(x.validTo) - Date.parse(x.validFrom)) / 86_400_000, 825);
    const parsed = asn1parse(cert);
    // ecdsa-with-SHA256 takes no parameters at all, not even NULL (RFC 5758); nothing else here has any.
    assert.doesNotMatch(parsed, /NULL/);
    assert.equal(parsed.match(/ecdsa-with-SHA256/g)?.length, 2);
    // The serial is positive: its first content byte below 0x80 (asn1parse prints negatives with a minus).
    assert.match(parsed, /prim:\s+INTEGER\s+:[0-7][0-9A-F]{31}\n/);
    const described = text(cert);
    assert.match(described, /X509v3 Key Usage: \n\s+Digital Signature\n/);
    assert.match(described, /CA:FALSE/);
    assert.match(described, /TLS Web Server Authentication/);
    const dir = mkdtempSync(join(tmpdir(), 'sluice-cert-'));
    try {
      writeFileSync(join(dir, 'cert.pem'), cert);
      const pem = join(dir, 'cert.pem');
      const verified = execFileSync('openssl', ['verify', '-x509_strict', '-purpose', 'sslserver', '-verify_hostname', 'host.example', '-CAfile', pem, pem], { encoding: 'utf8' });
      assert.match(verified, /: OK/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('writes dates from 2050 on as GeneralizedTime, as RFC 5280 requires', async () => {
    const early = asn1parse((await selfSignedCertificate(['localhost'], [], new Date('2045-06-01T00:00:00Z'))).cert);
    assert.equal(early.match(/UTCTIME/g)?.length, 2);
    const late = asn1parse((await selfSignedCertificate(['localhost'], [], new Date('2049-06-01T00:00:00Z'))).cert);
    assert.match(late, /UTCTIME\s+:490531235900Z/);
    assert.match(late, /GENERALIZEDTIME\s+:20510903235900Z/);
    // Expiring in 2050 itself: a two-digit 50 would read as 1950.
    const edge = asn1parse((await selfSignedCertificate(['localhost'], [], new Date('2048-06-01T00:00:00Z'))).cert);
    assert.match(edge, /UTCTIME\s+:480531235900Z/);
    assert.match(edge, /GENERALIZEDTIME\s+:20500903235900Z/);
  });
});
