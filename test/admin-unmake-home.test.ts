import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { PasswordHasher } from '../src/auth/passwords.js';
import { openSqliteStore } from '../src/store/sqlite/store.js';
import type { UserRepository } from '../src/store/store.js';
import { UserAdmin } from '../src/users/admin.js';

/*
 * What a refused add or change takes away of the home it made, found by a
 * review of bdf2398 (homes checked in the store's transaction): the real
 * SQLite store, with a Proxy only to hold a call back as a race would.
 */
describe('a home made for a change that was not written', () => {
  it("a refused add takes away what it made, but never a home stored meanwhile (the winner's, made as its parent)", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-unmake-'));
    const store = await openSqliteStore(join(dir, 'sluice.db'));
    try {
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      let paused!: () => void;
      const reached = new Promise<void>((r) => (paused = r));
      // The inner add's insert waits until the outer add has committed (what a race may do).
      const users: UserRepository = new Proxy(store.users, {
        get(target, prop, recv) {
          const v = Reflect.get(target, prop, recv);
          if (prop !== 'create') return typeof v === 'function' ? v.bind(target) : v;
          return async (...args: Parameters<UserRepository['create']>) => {
            if (args[0] === 'inner') {
              paused();
              await gate;
            }
            return target.create(...args);
          };
        },
      });
      const hasher = new PasswordHasher(2, { memoryCost: 1024, timeCost: 1, parallelism: 1 });
      const admin = new UserAdmin(users, hasher, join(dir, 'data'), []);
      const outer = join(dir, 'sites', 'shop');
      const inner = admin.add({ name: 'inner', password: 'inner password 1', keys: [], home: join(outer, 'inner') });
      await reached; // inner's makeHome made sites/shop (its first) and sites/shop/inner
      assert.ok(existsSync(outer));
      const made = await admin.add({ name: 'outer', password: 'outer password 1', keys: [], home: outer });
      assert.equal(made.home, outer);
      release();
      await assert.rejects(inner, /would lie in user outer's home/);
      assert.ok(existsSync(outer), "outer's home, stored and committed, is still there");
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('an update whose user was removed meanwhile is refused and takes away the home it made', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-unmake-'));
    const store = await openSqliteStore(join(dir, 'sluice.db'));
    try {
      const users: UserRepository = new Proxy(store.users, {
        get(target, prop, recv) {
          const v = Reflect.get(target, prop, recv);
          if (prop !== 'update') return typeof v === 'function' ? v.bind(target) : v;
          return async (...args: Parameters<UserRepository['update']>) => {
            await target.remove(args[0]); // another administrator removes bob meanwhile
            return target.update(...args);
          };
        },
      });
      const hasher = new PasswordHasher(2, { memoryCost: 1024, timeCost: 1, parallelism: 1 });
      const admin = new UserAdmin(users, hasher, join(dir, 'data'), []);
      await admin.add({ name: 'bob', password: 'bob password 1', keys: [], home: join(dir, 'bob') });
      const moved = join(dir, 'new', 'bob');
      await assert.rejects(admin.update('bob', { home: moved }), /no user named "bob"/);
      assert.ok(!existsSync(join(dir, 'new')), 'the home made for a user that is gone is left behind');
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a link put at the new home's path after the first check is seen by the store's: the add is refused", async () => {
    // Found by a review: the home itself was looked up before the transaction with the stored homes, so a link
    // made at its path in between (by someone who may write its parent) was not seen, and a home leading into
    // another user's was written. The password's hash runs between the two checks.
    const dir = mkdtempSync(join(tmpdir(), 'sluice-unmake-'));
    const store = await openSqliteStore(join(dir, 'sluice.db'));
    try {
      mkdirSync(join(dir, 'shared'));
      const hasher = new PasswordHasher(2, { memoryCost: 1024, timeCost: 1, parallelism: 1 });
      const admin = new UserAdmin(store.users, hasher, join(dir, 'data'), []);
      await admin.add({ name: 'bob', password: 'bob password 1', keys: [], home: join(dir, 'bob') });
      const planted = join(dir, 'shared', 'carol');
      const hash = hasher.hash.bind(hasher);
      hasher.hash = async (password: string) => {
        mkdirSync(join(dir, 'bob', 'sub'));
        symlinkSync(join(dir, 'bob', 'sub'), planted);
        return hash(password);
      };
      await assert.rejects(admin.add({ name: 'carol', password: 'carol password 1', keys: [], home: planted }), /would lie in user bob's home/);
      assert.equal(await store.users.get('carol'), null);
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
