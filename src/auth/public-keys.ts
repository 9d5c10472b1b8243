import { createHash, timingSafeEqual } from 'node:crypto';
import { createRequire } from 'node:module';

/**
 * ssh2, loaded when a key is parsed: the CLI's user commands import this
 * file, and most of them never parse a key (loading ssh2 was an eighth of
 * `sluice user list`'s CPU). The server has it loaded for SFTP anyway.
 */
const keyParser = (): typeof import('ssh2').utils.parseKey => (createRequire(import.meta.url)('ssh2') as typeof import('ssh2')).utils.parseKey;

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
