import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import pino from 'pino';
import { configSchema } from '../src/config/schema.js';
import { BanCheck } from '../src/security/ban-check.js';
import { Defender } from '../src/security/defender.js';
import { MemoryFailureTally } from '../src/security/failure-tally.js';
import { openSqliteStore } from '../src/store/sqlite/store.js';

/*
 * Found by a review of 5deb893: the defender's ban waits for another process's lock (up to 5 s, on timers),
 * and an operator's `sluice ban add` may land first. The waiting write then replaced the permanent ban with
 * its ten minutes; lifted meanwhile (DELETE /bans), its undoing removed the operator's ban altogether.
 */
describe("a defender's ban waiting for the lock while an operator bans the address", () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-ban-waits-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  let made = 0;

  for (const lifted of [false, true]) {
    it(`the operator's permanent ban stands${lifted ? ', the defender\'s lifted meanwhile' : ''}`, async () => {
      const file = join(dir, `sluice-${++made}.db`);
      const store = openSqliteStore(file);
      store.serve();
      const settings = configSchema.parse({ defender: { threshold: 1, banTime: 600 } }).defender;
      const recorded: string[] = [];
      const audit = { record: (_actor: unknown, e: { event: string }) => recorded.push(e.event) };
      const defender = new Defender(new BanCheck(store.bans, [], 64), new MemoryFailureTally(), settings, audit, pino({ level: 'silent' }));
      const ip = '192.0.2.9';
      // Another process's transaction holds the lock; the defender's write waits for it.
      const other = new Database(file);
      other.exec('BEGIN IMMEDIATE');
      const scored = defender.score(ip, 'ftp', 'login-failed');
      const deadline = Date.now() + 2000;
      while (defender.heldBans().length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      assert.deepEqual(defender.heldBans().map((b) => b.address), [ip], 'in force meanwhile, held');
      if (lifted) assert.equal(defender.lift(ip), true);
      // `sluice ban add 192.0.2.9` lands first: the lock holder's own write, as the CLI's would be.
      other.prepare("INSERT INTO bans (address, until, count, reason, created_at) VALUES (?, NULL, 1, 'added by an administrator', ?) ON CONFLICT (address) DO UPDATE SET until = NULL").run(ip, Date.now());
      other.exec('COMMIT');
      other.close();
      assert.equal(await scored, true);
      const row = await store.bans.get(ip);
      await store.close();
      assert.deepEqual([row?.until, row?.reason], [null, 'added by an administrator']);
      // Found by the review: the trail said the defender banned the address for ten minutes, a ban never stored
      // (the operator's, which stood, has its own record). One lifted meanwhile was in force until then: recorded.
      assert.deepEqual(recorded, lifted ? ['ban'] : [], 'the defender\'s ban in the trail');
    });
  }
});
