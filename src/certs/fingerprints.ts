import { createHash, X509Certificate } from 'node:crypto';

/**
 * Fingerprints as users see them with their own tools, so that what the
 * server prints at start can be compared with what they get by hand: the
 * exact text of `ssh-keygen -lf KEY.pub` and of
 * `openssl x509 -noout -fingerprint -sha256 -in cert.pem` (OpenSSL 3).
 */

/** `256 SHA256:<base64, no padding> <comment> (ED25519)` for one line of an OpenSSH `.pub` file. */
export function sshKeyFingerprint(publicKeyLine: string): string {
  const match = /^\s*(\S+)\s+([A-Za-z0-9+/]+={0,2})(?:\s+(.*))?$/.exec(publicKeyLine.trim());
  if (!match) throw new Error('not an OpenSSH public key line');
  const blob = Buffer.from(match[2] as string, 'base64');
  const fields = sshStrings(blob);
  const type = fields[0]?.toString('latin1');
  if (type === undefined || type !== match[1]) throw new Error('public key type and blob disagree');
  const hash = createHash('sha256').update(blob).digest('base64').replace(/=+$/, '');
  const comment = match[3]?.trim() || 'no comment';
  const { bits, label } = keySize(type, fields);
  return `${bits} SHA256:${hash} ${comment} (${label})`;
}

/** Key size as ssh-keygen counts it (the modulus for RSA, the curve for ECDSA) and its type label. */
function keySize(type: string, fields: Buffer[]): { bits: number; label: string } {
  if (type === 'ssh-ed25519') return { bits: 256, label: 'ED25519' };
  if (type === 'ssh-rsa') return { bits: mpintBits(fields[2]), label: 'RSA' };
  const curve = /^ecdsa-sha2-nistp(256|384|521)$/.exec(type);
  if (curve) return { bits: Number(curve[1]), label: 'ECDSA' };
  throw new Error(`unsupported public key type ${type}`);
}

/** The length-prefixed fields of an SSH wire-format blob (RFC 4251 string and mpint). */
function sshStrings(blob: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < blob.length; ) {
    if (at + 4 > blob.length) throw new Error('truncated public key blob');
    const length = blob.readUInt32BE(at);
    if (at + 4 + length > blob.length) throw new Error('truncated public key blob');
    out.push(blob.subarray(at + 4, at + 4 + length));
    at += 4 + length;
  }
  return out;
}

function mpintBits(value: Buffer | undefined): number {
  if (!value) throw new Error('RSA public key without a modulus');
  const first = value.findIndex((b) => b !== 0);
  if (first < 0) return 0;
  return (value.length - first - 1) * 8 + (32 - Math.clz32(value[first] as number));
}

/** `sha256 Fingerprint=AB:CD:...` of the first certificate of a PEM file (the one `openssl x509` reads). */
export function certificateFingerprint(pem: string | Buffer): string {
  return `sha256 Fingerprint=${new X509Certificate(pem).fingerprint256}`;
}
