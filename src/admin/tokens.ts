import { createHash, randomBytes } from 'node:crypto';

/** Prefix of every token, so one pasted into the wrong place is recognisable (and found by secret scanners). */
const PREFIX = 'sluice_';

/**
 * A new bearer token and the hash to store. 256 random bits: nobody can guess
 * one, and a single SHA-256 cannot be reversed, so the hash needs no slow KDF.
 * argon2 exists for passwords, whose few bits a stolen hash would let an
 * attacker search; here it would only cost an argon2 run on every request
 * (19 MiB, on the thread pool shared with file I/O) and protect nothing more.
 */
export function newToken(): { token: string; hash: Buffer } {
  const token = PREFIX + randomBytes(32).toString('base64url');
  return { token, hash: hashToken(token) };
}

export function hashToken(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

/** The token of an `Authorization: Bearer ...` header; null when there is none of that form. */
export function bearerToken(header: string | undefined): string | null {
  const m = header === undefined ? null : /^Bearer +([A-Za-z0-9._~+/=-]{1,512}) *$/i.exec(header);
  return m ? (m[1] as string) : null;
}
