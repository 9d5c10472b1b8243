import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pino from 'pino';
import { configSchema } from '../src/config/schema.js';
import { BanCheck } from '../src/security/ban-check.js';
import { Defender } from '../src/security/defender.js';
import { MemoryFailureTally } from '../src/security/failure-tally.js';
import type { BanRecord } from '../src/store/records.js';
import type { BanRepository } from '../src/store/store.js';

/*
 * Found by a review of 5aeb4f3: DELETE /bans/ADDRESS lifts a held ban
 * (Defender.lift) and removes the stored one. On a store whose writes wait on the network
 * (PostgreSQL coming back after an outage), the defender's once-a-second
 * retry (storeHeld) may have a put of that ban under way: lift drops it from
 * the map, the API's remove finds nothing to delete, then the put lands, and
 * the ban the administrator was told is lifted was in force in the store.
 * The defender now removes it again once that write is done.
 */

/** A store whose puts take effect when the test lets them (a query waiting on its connection). */
class SlowBans implements BanRepository {
  readonly rows = new Map<string, BanRecord>();
  failing = true;
  readonly waiting: (() => void)[] = [];
  async get(address: string) { return this.rows.get(address) ?? null; }
  async active(now = Date.now()) { return [...this.rows.values()].filter((b) => b.until === null || b.until.getTime() > now); }
  async activeCount(now = Date.now()) { return (await this.active(now)).length; }
  put(address: string, until: Date | null, count: number, reason: string): Promise<void> {
    return this.landing(() => void this.rows.set(address, { address, until, count, reason, createdAt: new Date() }));
  }
  putUnlessBanned(address: string, until: Date, count: number, reason: string, since: Date): Promise<boolean> {
    return this.landing(() => !this.banned(address) && !!this.rows.set(address, { address, until, count, reason, createdAt: since }));
  }
  async add(address: string, until: Date | null) { await this.put(address, until, 1, 'added by an administrator'); }
  async remove(address: string) { return this.rows.delete(address); }
  async removeOwn(address: string, since: Date) { return this.rows.get(address)?.createdAt.getTime() === since.getTime() && this.rows.delete(address); }
  /** `write` once the test lets it land. */
  private landing<T>(write: () => T): Promise<T> {
    if (this.failing) return Promise.reject(Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' }));
    return new Promise((resolve) => this.waiting.push(() => resolve(write())));
  }
  banned(address: string) {
    const b = this.rows.get(address);
    return b !== undefined && (b.until === null || b.until.getTime() > Date.now());
  }
}

describe('a held ban lifted while the defender is storing it', () => {
  it('stays lifted', { timeout: 10_000 }, async () => {
    const bans = new SlowBans();
    const settings = configSchema.parse({ defender: { threshold: 1, banTime: 600 } }).defender;
    const check = new BanCheck(bans, [], 64);
    const defender = new Defender(check, new MemoryFailureTally(), settings, null, pino({ level: 'silent' }));
    const ip = '192.0.2.77';
    assert.equal(await defender.score(ip, 'ftp', 'login-failed'), true);
    assert.deepEqual(defender.heldBans().map((b) => b.address), [ip], 'held, the store having refused it');
    // The store answers again, slowly: the retry's put is under way.
    bans.failing = false;
    const deadline = Date.now() + 3000;
    while (bans.waiting.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.equal(bans.waiting.length, 1, 'the retry offered the held ban to the store');
    // DELETE /bans/ADDRESS, as src/admin/bans.ts does it.
    const held = defender.lift(ip);
    const stored = await bans.remove(ip);
    assert.ok(held || stored, 'the API answers 200 lifted');
    // The retry's put now lands.
    bans.waiting.shift()!();
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(defender.holds(ip), false);
    assert.equal(check.banned(ip), false, 'the address is banned again, in the store, after the administrator lifted its ban');
  });
});
