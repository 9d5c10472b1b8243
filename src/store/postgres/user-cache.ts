import type { Credentials } from '../store.js';
import type { Subscriber } from './notices.js';

export const USER_CHANGED_CHANNEL = 'sluice_user_changed';

/** Users kept at most: the busiest ones; a login of another reads the database. */
const MAX_ENTRIES = 10_000;
/** Kept at most this long, so that even a change whose notice went astray is seen within it. */
const MAX_AGE_MS = 60_000;

/**
 * The users this node logged in lately, with their keys, so that a login
 * here does not wait on the database for what it read a moment ago (a key
 * login asks twice: may this key do, then with the signature). Trusted only
 * while the notices connection listens: every change to what a login decides
 * on, from any node or the CLI, says so on USER_CHANGED_CHANNEL
 * (migrations/postgres/008) and the whole copy goes; so does a lost
 * connection, and until it listens again nothing is kept. A read that started
 * before a change is not kept either (generation), lest it outlive the notice.
 */
export class UserCache implements Subscriber {
  /** Each with when it was read (performance.now()): for its age, and for the login (Credentials.readAt). */
  private readonly entries = new Map<string, Credentials & { readonly readAt: number }>();
  private live = false;
  private generation = 0;

  /** `name` as the database matches it (ASCII names, case-insensitively). */
  async get(name: string, read: () => Promise<Credentials | null>): Promise<Credentials | null> {
    const key = name.toLowerCase();
    const hit = this.entries.get(key);
    if (hit && performance.now() - hit.readAt < MAX_AGE_MS) return hit;
    if (hit) this.entries.delete(key);
    const generation = this.generation;
    const readAt = performance.now();
    const found = await read();
    if (found && this.live && generation === this.generation) {
      if (this.entries.size >= MAX_ENTRIES) this.entries.delete(this.entries.keys().next().value as string);
      this.entries.set(key, { ...found, readAt });
    }
    return found;
  }

  /** A change of one of ours: gone here at once, before the notice comes back. */
  forget(): void {
    this.generation++;
    this.entries.clear();
  }

  notice(): void {
    this.forget();
  }

  async listening(): Promise<void> {
    this.forget();
    this.live = true;
  }

  lost(): void {
    this.live = false;
    this.forget();
  }
}
