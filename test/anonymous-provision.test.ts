import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { openSqliteStore } from '../src/store/sqlite/store.js';
import type { UserRepository } from '../src/store/store.js';
import { ServerPlaces } from '../src/session/storage/server-places.js';
import { provisionAnonymous } from '../src/users/anonymous.js';

/** The server's own places for a data directory in `dir`, with a hook script beside it. */
const places = (dir: string) => new ServerPlaces(join(dir, 'data'), [join(dir, 'data'), join(dir, 'hooks', 'notify.sh')]);

/*
 * The anonymous account made at start against the real SQLite store, with a
 * Proxy only to let a user in at the moment a race would.
 */
describe('anonymous FTP provisioning', () => {
  it('a user whose home lies in the root, added after the first look, is seen in the transaction that writes the account', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-anon-provision-'));
    const store = await openSqliteStore(join(dir, 'sluice.db'));
    try {
      const root = join(dir, 'ftp');
      const settings = { enabled: true, root, incoming: '', maxSessions: 10, maxSessionsPerIp: 3 };
      // Found by a review: the root was looked at once, outside the store's lock on homes, so a user added
      // by the CLI (or another node) between that look and the write held a home inside the anonymous root,
      // which anonymous logins then read (and the user could put a link there).
      const users: UserRepository = new Proxy(store.users, {
        get(target, prop, recv) {
          const v = Reflect.get(target, prop, recv);
          if (prop !== 'all') return typeof v === 'function' ? v.bind(target) : v;
          return async () => {
            const seen = await target.all();
            if (!seen.some((u) => u.name === 'late')) {
              await target.create('late', null, { home: join(root, 'late'), quotaBytes: 0, quotaFiles: 0, rateUp: null, rateDown: null, scan: null, allowIps: [], denyIps: [], enabled: true, expiresAt: null, protocols: ['ftp', 'sftp'], requireTls: false, requireKey: false, permissions: ['list', 'download', 'upload'] });
            }
            return seen;
          };
        },
      });
      await assert.rejects(provisionAnonymous(users, settings, places(dir)), /ftp\.anonymous\.root .* needs a root of its own/);
      assert.equal(await store.users.get('anonymous'), null, 'no account was written');
      // Without such a user it is made, and made again the same at the next start.
      await store.users.remove((await store.users.get('late'))!.id);
      await provisionAnonymous(store.users, settings, places(dir));
      await provisionAnonymous(store.users, settings, places(dir));
      assert.equal((await store.users.get('anonymous'))?.home, root);
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  // Found by an operator's review: a root that would lie in the server's own files (here a hook's directory)
  // started the server, and every anonymous login then failed with "Home directory unavailable".
  it('a root that does not exist is made, and said to be made once (a typo in its path shows at start)', async () => {
    // Found by an operator's walk: a mistyped root was made empty without a word, and served.
    const dir = mkdtempSync(join(tmpdir(), 'sluice-anon-made-'));
    const store = await openSqliteStore(join(dir, 'sluice.db'));
    try {
      const root = join(dir, 'fpt');
      const settings = { enabled: true, root, incoming: '/incoming', maxSessions: 10, maxSessionsPerIp: 3 };
      assert.deepEqual(await provisionAnonymous(store.users, settings, places(dir)), { madeRoot: root, unboundedUploads: true });
      assert.deepEqual(await provisionAnonymous(store.users, settings, places(dir)), { madeRoot: null, unboundedUploads: true });
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('uploads into incoming without a quota of bytes and of files are said to be unbounded, at every start until both are set', async () => {
    // Found by a review: strangers could fill the disk through incoming, and nothing at start said so.
    const dir = mkdtempSync(join(tmpdir(), 'sluice-anon-quota-'));
    const store = await openSqliteStore(join(dir, 'sluice.db'));
    try {
      const settings = { enabled: true, root: join(dir, 'ftp'), incoming: '/incoming', maxSessions: 10, maxSessionsPerIp: 3 };
      const unbounded = async (s = settings) => (await provisionAnonymous(store.users, s, places(dir))).unboundedUploads;
      assert.equal(await unbounded(), true);
      const id = (await store.users.get('anonymous'))!.id;
      await store.users.update(id, { quotaBytes: 1 << 30 });
      assert.equal(await unbounded(), true, 'bytes bounded, files not');
      await store.users.update(id, { quotaFiles: 10_000 });
      assert.equal(await unbounded(), false, 'both set, kept across starts');
      await store.users.update(id, { quotaBytes: 0, quotaFiles: 0 });
      assert.equal(await unbounded({ ...settings, incoming: '' }), false, 'no incoming: nothing to upload into');
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a root among the server\'s own files refuses the start, naming them', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-anon-provision-'));
    const store = await openSqliteStore(join(dir, 'sluice.db'));
    try {
      for (const root of [join(dir, 'hooks'), join(dir, 'data', 'audit')]) {
        const settings = { enabled: true, root, incoming: '', maxSessions: 10, maxSessionsPerIp: 3 };
        await assert.rejects(provisionAnonymous(store.users, settings, places(dir)), /ftp\.anonymous\.root: .* would (hold|lie in) the server's own/);
        assert.equal(await store.users.get('anonymous'), null, 'no account was written');
      }
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
