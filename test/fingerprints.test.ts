import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { certificateFingerprint, sshKeyFingerprint } from '../src/certs/fingerprints.js';

// Keys and certificates made by ssh-keygen and openssl req; each expected text
// is what `ssh-keygen -lf` and `openssl x509 -noout -fingerprint -sha256 -in`
// (OpenSSL 3.0) printed for them.
const ED25519 = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFHLZSK0pHZVBz1u7fTpogLD/dNgDbcOSetGWXDOGABG a b c';
const RSA_NO_COMMENT = 'ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABgQCWQWHYFEsjdAwDi+vBZGbyTWwynJmSJtI8PSLHZ4CVuawiJ8hBlDvu8nREwyO5gWL9SnNUgZ6Uzzg4ZNWmaZSKRuQTOZ8g8jJPbi0L/vXKDpM8KIn6SSwEpUROlC6OqfCeMHU+/KFDoYwPAQ69BRtI4RTNxHtp+Pgr+9r03iUkawni7pUmgxiwbVs1mB+1UlA1m201KJiIRes1ngt/RBUBfhuQsmS76NAoA744yG6D9hUxEZfsUb/wR5MhFgxNh18c59OCU0eCDBvn1sgr9dmMuseVTpvLy4aI7XVnEzAG3jNt7Zx3ku6J0oS8lN3OFtwViBB1ZhDDIGTwHfmZcrCVq5Co3BifesKtOD2F2k2fOUTzy/rV+9mEGJRMkO7URGMGxBEbrVXBYRlIm0942Sjx2DdWNdxMb9h9fgKJQ4XLD5ovaTUfqcr5jEoVeraOZJsWEQ9DVf0z9bhhw+NYe5dVZx1x/gHaNOqJUA3od/Zob5ZG5mngA2D/+dekPdyc+Fc= ';
const ECDSA_384 = 'ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBOu82XcsMKh4z0UajCOiAd95WAcc/QIBQirvF8wqhkGauFQC+g64Gc3BjLxLxMiitsADo/KiSM1zMyhosLCvVyuix5CWjx8Dv2+TUy4n4nZHFRgAXYhl5Vkw5qT0MDkXLQ== root@vm';
const RSA_CERT = `-----BEGIN CERTIFICATE-----
MIIC+TCCAeGgAwIBAgIUPOrGG1KszUfC7ugjHgTArLoTGIIwDQYJKoZIhvcNAQEL
BQAwDDEKMAgGA1UEAwwBeDAeFw0yNjExMzAyMjU0NTNaFw0yNjEyMDEyMjU0NTNa
MAwxCjAIBgNVBAMMAXgwggEiMA0GCSqGSIb3DQEBAQUAA4IBDwAwggEKAoIBAQDL
X9fE5hkLKNLFsz9IqWIqyM9J8Zbq/xwExoFt8Xc9D+CAVcOAzCKKA6Wa9Ud92IuH
RQ4ynE6s/81ReT/a6hKZ6Mpbn4zqm0St3lvla5U8I1AyniNcDculQuWajO4prMON
w4EVP+JMmaXcsw/vrMY/WktTCo5SDPneuLuHJEB9KGNGrE6p6vSgAVWxYqEYqoWS
KCOqTPLeupcHMb4fHghO8Ij2N0EB4XjeN8uWDYwwU8dPuOZ7E714i9OSz3oCoYRW
nGC5SX2mtdJJ5gsATrWVI4EN+FxZ/rdZrfB1+bGLErH7bku8ilr2A2wX+wh6FX2S
T3ts3NQRb8Ir2+TY4q0fAgMBAAGjUzBRMB0GA1UdDgQWBBTpNXb6WEpILQoHl74+
PjIGa6WprzAfBgNVHSMEGDAWgBTpNXb6WEpILQoHl74+PjIGa6WprzAPBgNVHRMB
Af8EBTADAQH/MA0GCSqGSIb3DQEBCwUAA4IBAQB/KtdTsJXMa6VAcYnkY/2FLAq3
2OYP8ley+klcJWIw6Y1itVdo9EwHC+ozFppsKQX6E9KejfbAa3H7JgxwZUpgv7JI
sBn7tM1cLlzZnuwyM1Oyvd61MFFxFQXE7LJKUYfNf2yPoFdWlFa2ZJyQ58V14n6/
cjgBGs5mwGUGZcM45RxzaZUUb+ebXi9LttL82EIiG2jGK27M67PNtHrkO+cW3e7z
ursZh7Oq+yf5VnNt55aBcoisCuovSWLrFI8GFjWX3wmZDROlT+MZZU5iT+lmx23c
B4MqPw17gQApciPoatSIqie924RdjE32Xb1XH8UPPLQcQ86jXbvILZnTaX3l
-----END CERTIFICATE-----
`;
const EC_CERT = `-----BEGIN CERTIFICATE-----
MIIBbTCCAROgAwIBAgIUAPR24joYBb6fqJ/d6aT48d85T3gwCgYIKoZIzj0EAwIw
DDEKMAgGA1UEAwwBeTAeFw0yNjExMzAyMjU1MTBaFw0yNjEyMDEyMjU1MTBaMAwx
CjAIBgNVBAMMAXkwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAASHlDvzgFAknet0
tCN15/prr+uEVd8c3Coshaa7HOssaS6Ci5IKWfBHivs6OTha2zL1HMcfKLujkA1j
hrpiyriio1MwUTAdBgNVHQ4EFgQUlJzzWJCLZqxW+eGupMfjG7XUQCEwHwYDVR0j
BBgwFoAUlJzzWJCLZqxW+eGupMfjG7XUQCEwDwYDVR0TAQH/BAUwAwEB/zAKBggq
hkjOPQQDAgNIADBFAiEAq0+w9HJ/VVuvVOXChLuNEqbjCqc4YSLVUpxgSIwetkoC
IAq/vCkUrQ+qorqp63AtieKqESelpeca0wRFGTYhwJHF
-----END CERTIFICATE-----
`;

describe('sshKeyFingerprint', () => {
  const rows: [string, string, string][] = [
    ['ed25519, comment with spaces', ED25519, '256 SHA256:jasOIoH4VEXWuKPU96S2RmMd2w4uyJxmPI2XkTWYlBg a b c (ED25519)'],
    ['ed25519, line ending in a newline', ED25519 + '\n', '256 SHA256:jasOIoH4VEXWuKPU96S2RmMd2w4uyJxmPI2XkTWYlBg a b c (ED25519)'],
    ['rsa 3072, empty comment', RSA_NO_COMMENT, '3072 SHA256:El0iaLOVnAY82sdBgKFStRUuearVYsupanCjuRAT48A no comment (RSA)'],
    ['rsa 3072, no comment field', RSA_NO_COMMENT.trim(), '3072 SHA256:El0iaLOVnAY82sdBgKFStRUuearVYsupanCjuRAT48A no comment (RSA)'],
    ['ecdsa nistp384', ECDSA_384, '384 SHA256:0CDIYyrDpmvH9BAcTK4VCMqBpqrSNTC3itrVBH6GhWU root@vm (ECDSA)'],
  ];
  for (const [name, line, expected] of rows) it(name, () => assert.equal(sshKeyFingerprint(line), expected));

  const bad: [string, string][] = [
    ['empty', ''],
    ['private key text', '-----BEGIN OPENSSH PRIVATE KEY-----'],
    ['type not the blob\'s', ED25519.replace('ssh-ed25519', 'ssh-rsa')],
    ['truncated blob', `ssh-ed25519 ${ED25519.split(' ')[1]!.slice(0, 40)}`],
    ['unsupported type', `ssh-dss ${Buffer.from('\x00\x00\x00\x07ssh-dss', 'latin1').toString('base64')}`],
  ];
  for (const [name, line] of bad) it(`refuses: ${name}`, () => assert.throws(() => sshKeyFingerprint(line)));
});

describe('certificateFingerprint', () => {
  const rows: [string, string, string][] = [
    ['rsa certificate', RSA_CERT, 'sha256 Fingerprint=C4:65:EB:9E:68:2E:F2:F8:20:DC:2D:7E:19:AB:1D:6D:83:3D:73:BF:1E:11:8C:5B:E7:84:C4:5C:0E:6E:69:83'],
    ['ec certificate', EC_CERT, 'sha256 Fingerprint=58:44:03:06:53:C7:E7:D7:2C:8D:65:59:92:DA:50:52:7D:60:58:DB:90:52:D7:E1:3F:A8:32:D6:91:D3:38:86'],
    ['chain: the first certificate', RSA_CERT + EC_CERT, 'sha256 Fingerprint=C4:65:EB:9E:68:2E:F2:F8:20:DC:2D:7E:19:AB:1D:6D:83:3D:73:BF:1E:11:8C:5B:E7:84:C4:5C:0E:6E:69:83'],
  ];
  for (const [name, pem, expected] of rows) it(name, () => assert.equal(certificateFingerprint(pem), expected));
  it('refuses what is not a certificate', () => assert.throws(() => certificateFingerprint('not a certificate')));
});
