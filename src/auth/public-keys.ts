import { createHash, timingSafeEqual } from 'node:crypto';
import { ssh2Library } from '../ssh2.js';

/** ssh2, loaded when a key is parsed: the CLI's user commands import this file, and most of them never parse a key. */
const keyParser = () => ssh2Library().utils.parseKey;

export interface ParsedPublicKey {
  algorithm: string;
  blob: Buffer;
  fingerprint: string;
  comment: string;
}

/** OpenSSH's `SHA256:` fingerprint of a wire-format key. */
export function fingerprint(blob: Buffer): string {
  return 'SHA256:' + createHash('sha256').update(blob).digest('base64').replace(/=+$/, '');
}

/**
 * The smallest RSA modulus a key may have. OpenSSH's sshd refuses under 1024
 * bits (RequiredRSASize); here under 2048, what NIST has allowed since 2013
 * (SP 800-131A): 512-bit moduli are factored in hours on rented machines and
 * 1024-bit ones are within reach of large adversaries, and whoever factors a
 * user's public key (often public: a forge's NAME.keys) logs in as that user.
 */
export const MIN_RSA_BITS = 2048;

/** The bits of the modulus of a wire-format `ssh-rsa` key (string type, mpint e, mpint n); null: not one. */
export function rsaBits(blob: Buffer): number | null {
  let at = 0;
  const field = (): Buffer | null => {
    if (at + 4 > blob.length) return null;
    const length = blob.readUInt32BE(at);
    if (at + 4 + length > blob.length) return null;
    const value = blob.subarray(at + 4, at + 4 + length);
    at += 4 + length;
    return value;
  };
  if (field()?.toString('latin1') !== 'ssh-rsa' || field() === null) return null;
  const n = field();
  if (n === null) return null;
  const first = n.findIndex((byte) => byte !== 0);
  return first < 0 ? 0 : (n.length - first - 1) * 8 + (32 - Math.clz32(n[first] as number));
}

/** Why a key (wire format) is too weak to log in with; null: it is not. */
export function weakKey(blob: Buffer): string | null {
  // DSA: 1024 bits and SHA-1 by its standard; no signature algorithm here takes it (sftp.algorithms), so
  // one added could never log in, and the user was told nothing of it (found by a review).
  if (blob.subarray(4, 11).toString('latin1') === 'ssh-dss' && blob.readUInt32BE(0) === 7) {
    return 'a DSA key, which no login takes (OpenSSH has dropped them too): use ed25519, ECDSA or RSA';
  }
  const bits = rsaBits(blob);
  return bits !== null && bits < MIN_RSA_BITS ? `an RSA key of ${bits} bits: at least ${MIN_RSA_BITS} are needed` : null;
}

/** An OpenSSH public key line: its type (ssh-ed25519, ecdsa-sha2-nistp256, sk-ssh-ed25519@openssh.com...) and base64. */
const KEY_LINE = /^(ssh|ecdsa|sk)-\S+\s+[A-Za-z0-9+/]+={0,2}(\s|$)/;

/**
 * Parse one `authorized_keys`-style line (`type base64 [comment]`), blank and
 * `#` lines around it passed over; throws a one-line reason. Found by an
 * operator-side review: a .pub file with a comment line first was "no public
 * key found", and one of two keys "Unsupported key format", the parser's words.
 */
export function parsePublicKey(input: string): ParsedPublicKey {
  const lines = input.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  // Key lines only: a private key given by mistake (PEM, several lines) goes to the parser whole, to be named.
  const keyLines = lines.every((l) => KEY_LINE.test(l));
  if (keyLines && lines.length > 1) throw new Error(`${lines.length} keys in one: give one at a time`);
  const text = keyLines ? (lines[0] ?? '') : input.trim();
  if (text === '') throw new Error('no public key found');
  const parsed = keyParser()(text);
  if (parsed instanceof Error) throw new Error(`not an OpenSSH public key (${parsed.message})`);
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (!key) throw new Error('no public key found');
  if (key.isPrivateKey()) throw new Error('that is a private key; give the .pub file');
  const blob = key.getPublicSSH();
  const weak = weakKey(blob);
  if (weak !== null) throw new Error(weak);
  const comment = text.split(/\s+/).slice(2).join(' ');
  return { algorithm: key.type, blob, fingerprint: fingerprint(blob), comment };
}

export function sameKey(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
