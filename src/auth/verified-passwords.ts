import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * Passwords that verified lately, so that a client logging in again and again
 * (a batch that connects once per file, a pool of connections) pays argon2
 * once per `ttlMs`, not once per login: at OWASP's parameters a verification
 * is 35 ms of a core, so 50 logins a second would take two cores from the
 * transfers. SFTPGo's password caching and PingDirectory's encoded-password
 * cache do the same.
 *
 * - What is kept is not the password but an HMAC of the stored hash and the
 *   password, under a key drawn at start that never leaves the process.
 * - Entries are found by the stored hash, salt included: a changed password,
 *   from any node, is a new hash and finds nothing.
 * - Only logins that went through are kept (the caller adds them once the
 *   account's rules passed): a wrong password, and a right one for an account
 *   refused anyway, always cost a full verification, so guessing gains
 *   nothing, not even from the time a refusal takes.
 * - A hit does not extend an entry's life: a user logging in without pause is
 *   still verified in full once per `ttlMs`.
 * What this gives up is in SECURITY.md (a memory dump of a running worker).
 */
export class VerifiedPasswords {
  private readonly key = randomBytes(32);
  /** Insertion order is expiry order (one lifetime for all, never extended): the oldest is first. */
  private readonly entries = new Map<string, { mac: Buffer; until: number }>();

  constructor(
    private readonly ttlMs: number,
    private readonly max = 10_000,
    /** Monotonic: a clock stepped back must not lengthen an entry's life. */
    private readonly now: () => number = () => performance.now(),
  ) {}

  get size(): number {
    return this.entries.size;
  }

  has(hash: string, password: string): boolean {
    const entry = this.entries.get(hash);
    if (!entry) return false;
    if (entry.until <= this.now()) {
      this.entries.delete(hash);
      return false;
    }
    return timingSafeEqual(entry.mac, this.mac(hash, password));
  }

  add(hash: string, password: string): void {
    if (this.ttlMs <= 0) return;
    this.entries.delete(hash);
    this.prune();
    this.entries.set(hash, { mac: this.mac(hash, password), until: this.now() + this.ttlMs });
  }

  delete(hash: string): void {
    this.entries.delete(hash);
  }

  /** Expired entries go from the front; at `max`, the oldest live one goes too. */
  private prune(): void {
    const now = this.now();
    for (const [hash, entry] of this.entries) {
      if (entry.until > now && this.entries.size < this.max) return;
      this.entries.delete(hash);
    }
  }

  private mac(hash: string, password: string): Buffer {
    // The hash is the map's key and fixed per entry, so hash and password cannot run into each other.
    return createHmac('sha256', this.key).update(hash).update('\0').update(password).digest();
  }
}
