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

/** Parse one `authorized_keys`-style line (`type base64 [comment]`); throws a one-line reason. */
export function parsePublicKey(line: string): ParsedPublicKey {
  const text = line.trim();
  if (text === '' || text.startsWith('#')) throw new Error('no public key found');
  const parsed = keyParser()(text);
  if (parsed instanceof Error) throw new Error(`not an OpenSSH public key (${parsed.message})`);
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (!key) throw new Error('no public key found');
  if (key.isPrivateKey()) throw new Error('that is a private key; give the .pub file');
  const blob = key.getPublicSSH();
  const comment = text.split(/\s+/).slice(2).join(' ');
  return { algorithm: key.type, blob, fingerprint: fingerprint(blob), comment };
}

export function sameKey(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
