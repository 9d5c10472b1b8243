import { createHash, randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import type * as Argon2 from 'argon2';
import { VerifiedPasswords } from './verified-passwords.js';

let library: typeof Argon2 | undefined;

/**
 * argon2, loaded at its first use: most CLI commands (user list, show, perm,
 * ban ...) hash nothing, and loading its native binding was about 20 ms of
 * each one's CPU. `sluice serve` loads it at its start (cli/serve.ts), so an
 * install whose binding does not load fails the start, not a login.
 */
export function argon2(): typeof Argon2 {
  return (library ??= createRequire(import.meta.url)('argon2') as typeof Argon2);
}

const ARGON2ID: typeof Argon2.argon2id = 2;

/**
 * What a password login keeps of the stored hash it verified against
 * (Account.passwordMark): enough to tell a hash written since from it (a
 * new hash has a new salt), too little to try passwords against.
 */
export function passwordMark(hash: string): string {
  return createHash('sha256').update(hash, 'utf8').digest('base64url').slice(0, 16);
}

/** OWASP's argon2id recommendation: 19 MiB, 2 passes, 1 lane. */
export const ARGON2_PARAMS = { type: ARGON2ID, memoryCost: 19456, timeCost: 2, parallelism: 1 } as const;

/**
 * argon2 runs in libuv's thread pool, which file I/O shares. A bounded number
 * of concurrent hashes keeps a login flood from starving transfers; the rest
 * wait in line here, on the event loop, costing nothing.
 */
export class PasswordHasher {
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  private dummy: Promise<string> | null = null;
  private readonly verified: VerifiedPasswords;

  constructor(
    private readonly maxConcurrent = 2,
    private readonly params: { memoryCost: number; timeCost: number; parallelism: number } = ARGON2_PARAMS,
    /** How long a remembered password is kept (verified-passwords.ts); 0: every login runs argon2. */
    cacheMs = 0,
  ) {
    this.verified = new VerifiedPasswords(cacheMs);
  }

  hash(password: string): Promise<string> {
    return this.limited(() => argon2().hash(password, { ...this.params, type: ARGON2ID }));
  }

  /** Unknown users cost what a wrong password does: a full verification against a dummy hash. */
  async verify(hash: string | null, password: string): Promise<boolean> {
    this.dummy ??= argon2().hash(randomBytes(16).toString('hex'), { ...this.params, type: ARGON2ID });
    const target = hash ?? (await this.dummy);
    return (await this.limited(() => argon2().verify(target, password).catch(() => false))) && hash !== null;
  }

  /** Did `password` verify against `hash` lately, for a login that went through (remember)? */
  kept(hash: string, password: string): boolean {
    return this.verified.has(hash, password);
  }

  /** Only once the login went through: a password kept before the account's rules passed would answer a refusal faster. */
  remember(hash: string, password: string): void {
    this.verified.add(hash, password);
  }

  forget(hash: string): void {
    this.verified.delete(hash);
  }

  needsRehash(hash: string): boolean {
    try {
      return argon2().needsRehash(hash, this.params);
    } catch {
      return true;
    }
  }

  private async limited<T>(fn: () => Promise<T>): Promise<T> {
    while (this.active >= this.maxConcurrent) await new Promise<void>((r) => this.waiting.push(r));
    this.active++;
    try {
      return await fn();
    } finally {
      this.active--;
      this.waiting.shift()?.();
    }
  }
}
