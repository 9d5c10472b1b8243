import assert from 'node:assert/strict';
import fs, { mkdtempSync, rmSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PasswordHasher } from '../src/auth/passwords.js';
import { openPostgresStore } from '../src/store/postgres/store.js';
import type { Store } from '../src/store/store.js';
import { UserAdmin } from '../src/users/admin.js';
import { postgresMissing, startPostgres, type TestPostgres } from './helpers/postgres.js';

/**
 * A change of a home checks it against every stored home where links lead
 * (realpath), in the transaction that writes it, under the homes' lock and
 * the user's row. PostgreSQL ends a session idle in a transaction after
 * storeHoldTimeout; the lookups of every home, made inside it, kept it idle
 * that long with some thousands of users on network storage, and every such
 * change failed (found by a review). The homes are now looked up before the
 * transaction. Storage that slow is made here by slowing realpath(3) itself.
 */
describe('PostgreSQL: a change of a home on slow storage, with a short hold timeout', { skip: postgresMissing() ?? false }, () => {
  const USERS = 10;
  const LOOKUP_MS = 150;
  let pg: TestPostgres;
  let store: Store;
  let admin: UserAdmin;
  const dir = mkdtempSync(join(tmpdir(), 'sluice-homecheck-'));
  const realpath = fs.realpathSync;
  const realpathAsync = fs.promises.realpath;

  before(async () => {
    pg = await startPostgres();
    store = await openPostgresStore(await pg.createDatabase(), { holdTimeout: 1 });
    admin = new UserAdmin(store.users, new PasswordHasher(2, { memoryCost: 1024, timeCost: 1, parallelism: 1 }), join(dir, 'data'), []);
    for (let i = 0; i < USERS; i++) await admin.add({ name: `u${i}`, password: 'a password 1', keys: [], home: join(dir, 'homes', `u${i}`) });
  });
  after(async () => {
    restore();
    await store?.close();
    await pg?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /**
   * Each realpath takes LOOKUP_MS, as a lookup on a slow network file system may (the whole check: over the
   * timeout): the synchronous one holds the event loop meanwhile, the asynchronous one a thread of the pool.
   */
  const slowDown = () => {
    const slow = (...args: Parameters<typeof realpath>) => {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, LOOKUP_MS);
      return realpath(...args);
    };
    fs.realpathSync = Object.assign(slow, { native: realpath.native }) as typeof realpath;
    fs.promises.realpath = (async (path: string) => {
      await new Promise((resolve) => setTimeout(resolve, LOOKUP_MS));
      return realpathAsync(path);
    }) as typeof realpathAsync;
    syncBuiltinESMExports();
  };
  const restore = () => {
    fs.realpathSync = realpath;
    fs.promises.realpath = realpathAsync;
    syncBuiltinESMExports();
  };

  /** The longest the event loop went without turning while `act` ran. */
  const longestStall = async (act: () => Promise<unknown>): Promise<number> => {
    let last = performance.now();
    let longest = 0;
    const tick = setInterval(() => {
      const now = performance.now();
      longest = Math.max(longest, now - last);
      last = now;
    }, 5);
    try {
      await act();
    } finally {
      clearInterval(tick);
    }
    return longest;
  };

  it('a new home, and a user added with one, are written, and the lookups do not hold the event loop', { timeout: 60_000 }, async () => {
    slowDown();
    try {
      const moving = admin.update('u0', { home: join(dir, 'homes', 'moved') });
      const stall = await longestStall(() => moving);
      assert.equal((await moving).home, join(dir, 'homes', 'moved'));
      // One lookup in the check (the home itself, where it leads now), the stored homes' off the loop.
      assert.ok(stall < 4 * LOOKUP_MS, `the event loop stood still ${stall.toFixed(0)} ms`);
      const added = await admin.add({ name: 'late', password: 'a password 1', keys: [], home: join(dir, 'homes', 'late') });
      assert.equal(added.home, join(dir, 'homes', 'late'));
    } finally {
      restore();
    }
    // Still checked in the transaction: a home in another's is refused.
    await assert.rejects(admin.update('u1', { home: join(dir, 'homes', 'u2', 'in') }), /would lie in user u2's home/);
  });
});
