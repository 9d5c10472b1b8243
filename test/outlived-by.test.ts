import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { LiveSessionInfo } from '../src/session/live.js';
import type { Permission } from '../src/session/permissions.js';
import type { UserRecord } from '../src/store/records.js';
import { outlivesAccess } from '../src/session/live.js';
import { scansWith, type UploadScanning } from '../src/session/scanning.js';
import { outlivedBy } from '../src/users/admin.js';
import { OutlivedSessions } from '../src/users/outlived-sessions.js';

/*
 * What a node ends its live sessions by when a user changed elsewhere (on
 * another node, in the CLI, by hand in SQL): the user as stored now against
 * what each session's login, and each of its channels, was given.
 */
const stored: UserRecord = {
  id: 7, name: 'fay', passwordHash: 'x', home: '/srv/fay', enabled: true, expiresAt: null,
  protocols: ['ftp', 'sftp'], requireTls: false, requireKey: false, permissions: ['list', 'download', 'upload'],
  quotaBytes: 0, quotaFiles: 0, rateUp: null, rateDown: null, scan: null, usedBytes: 0, usedFiles: 0,
  createdAt: new Date(0), updatedAt: new Date(0), lastLoginAt: null, allowIps: [], denyIps: [], dirPermissions: [],
};
const grants = (root: Permission[], dirs: [string, Permission[]][] = []) => ({ root, dirs });
const live: LiveSessionInfo = {
  id: 's1', user: 'fay', userId: 7, protocol: 'sftp', ip: '192.0.2.5', port: 50000, method: 'password', key: null,
  permissions: [grants(['list', 'download', 'upload'])], homes: ['/srv/fay'], revisions: [0], worker: 0, since: new Date(0).toISOString(), transfers: [],
};

describe('a live session against its user as stored now (pure)', () => {
  it('goes on when nothing it holds or logged in by is taken away', () => {
    assert.equal(outlivedBy(stored, live), null);
    assert.equal(outlivedBy({ ...stored, permissions: ['list', 'download', 'upload', 'delete'], quotaBytes: 5 }, live), null, 'widened');
    assert.equal(outlivedBy({ ...stored, denyIps: ['198.51.100.0/24'] }, live), null, 'another address denied');
    assert.equal(outlivedBy({ ...stored, protocols: ['sftp'] }, live), null, 'another protocol taken away');
  });
  it('an expiry that merely came ends nothing (one set already past is a revocation of its own)', () => {
    assert.equal(outlivedBy({ ...stored, expiresAt: new Date(Date.now() - 1000) }, live), null);
  });
  it('ends when the user is gone, or its name is another user now', () => {
    assert.equal(outlivedBy(null, live), 'user removed by an administrator');
    assert.equal(outlivedBy({ ...stored, id: 8 }, live), 'user removed by an administrator');
  });
  it('ends when the login would be refused now', () => {
    const rules = 'rules changed by an administrator';
    assert.equal(outlivedBy({ ...stored, enabled: false }, live), 'user disabled by an administrator');
    assert.equal(outlivedBy({ ...stored, denyIps: ['192.0.2.0/24'] }, live), rules);
    assert.equal(outlivedBy({ ...stored, allowIps: ['198.51.100.0/24'] }, live), rules);
    assert.equal(outlivedBy({ ...stored, protocols: ['ftp'] }, live), rules);
    assert.equal(outlivedBy({ ...stored, requireKey: true }, live), rules, 'a key required of a password login');
    assert.equal(outlivedBy({ ...stored, requireKey: true }, { ...live, method: 'publickey' }), null);
    assert.equal(outlivedBy({ ...stored, protocols: ['sftp'] }, { ...live, protocol: 'scp' }), null, 'scp rides an sftp login');
    assert.equal(outlivedBy({ ...stored, expiresAt: new Date(Date.now() - 1000), denyIps: ['192.0.2.5/32'] }, live), rules, 'expired, and refused besides');
  });
  it('ends when the home any of its channels serves is no longer the user\'s', () => {
    const moved = 'home changed by an administrator';
    assert.equal(outlivedBy({ ...stored, home: '/srv/fay2' }, live), moved);
    // The first channel opened before the home moved, the second after it: the first is left on a place no longer fay's.
    assert.equal(outlivedBy({ ...stored, home: '/srv/fay2' }, { ...live, homes: ['/srv/fay', '/srv/fay2'], permissions: [...live.permissions, ...live.permissions] }), moved);
    assert.equal(outlivedBy(stored, { ...live, homes: ['/srv/fay', '/srv/fay'] }), null);
  });
  // What the revocation notices say, for a look after they went unheard (found by a review: a node whose
  // notices connection was lost kept such sessions).
  it('ends when the key its login proved is no longer the user\'s', () => {
    const byKey = { ...live, method: 'publickey' as const, key: 'SHA256:abc' };
    assert.equal(outlivedBy(stored, byKey, ['SHA256:other']), 'key removed by an administrator');
    assert.equal(outlivedBy(stored, byKey, ['SHA256:other', 'SHA256:abc']), null);
    assert.equal(outlivedBy(stored, byKey, null), null, 'keys not read');
    assert.equal(outlivedBy(stored, live, []), null, 'a password login');
  });
  it('ends when an administrator set an expiry from before the session began', () => {
    const began = Date.parse('2026-12-01T10:00:00Z');
    const since = { ...live, since: new Date(began).toISOString() };
    // Set by hand in SQL (updatedAt as it was), to before the session began: its login would have been refused.
    assert.equal(outlivedBy({ ...stored, expiresAt: new Date(began - 1000), updatedAt: new Date(began - 500) }, since), 'user expired by an administrator');
    // Come after the session began, the user changed otherwise since: goes on (a review of b7455c2).
    assert.equal(outlivedBy({ ...stored, expiresAt: new Date(began + 1000), updatedAt: new Date(began + 5000) }, since), null);
  });
  it('ends when any of its channels holds a permission taken away, in any directory', () => {
    const taken = 'permissions taken away by an administrator';
    assert.equal(outlivedBy({ ...stored, permissions: ['list', 'download'] }, live), taken);
    assert.equal(outlivedBy({ ...stored, dirPermissions: [{ path: '/in', permissions: ['list'] }] }, live), taken);
    // The first channel opened before upload was given, the second after: taking it back concerns the second.
    const twoChannels = { ...live, permissions: [grants(['list', 'download']), grants(['list', 'download', 'upload'])] };
    assert.equal(outlivedBy({ ...stored, permissions: ['list', 'download'] }, twoChannels), taken);
  });
});

/*
 * A notice names the user whose row changed (migrations/postgres/012): the
 * look reads that user alone. Before, every notice read every user with a
 * session on the node, one query each, and a portal where customers change
 * their own passwords changes users all day.
 */
describe('the look at a notice (users/outlived-sessions.ts)', () => {
  const gus: LiveSessionInfo = { ...live, id: 's2', user: 'gus', userId: 8 };
  const view = (told: (number | null)[]) => ({
    list: async () => [live, gus],
    end: async () => true,
    endUser: async () => 0,
    userChanged: async (id: number | null) => {
      told.push(id);
      return { renewed: 0, ended: 0 };
    },
  });
  const looked = async (which: number | null, failFirst = false): Promise<{ read: string[]; told: (number | null)[] }> => {
    const read: string[] = [];
    const told: (number | null)[] = [];
    const expected = (which === null ? 2 : 1) + (failFirst ? 1 : 0);
    let done: () => void = () => undefined;
    const finished = new Promise<void>((r) => (done = r));
    let fail = failFirst;
    const outlived = new OutlivedSessions(async (name) => {
      read.push(name);
      if (read.length === expected) setImmediate(done);
      if (fail) {
        fail = false;
        throw new Error('connection terminated (simulated)');
      }
      return { ...stored, id: name === 'fay' ? 7 : 8, name };
    }, async () => [], view(told), () => undefined, 10);
    outlived.check(which);
    // The retry's timer does not keep a process alive (a server stopping must not wait for it): this test does.
    const alive = setInterval(() => undefined, 1000);
    try {
      await finished;
    } finally {
      clearInterval(alive);
    }
    return { read, told };
  };
  it('reads only the user a notice names, and tells every process once', async () => {
    assert.deepEqual(await looked(8), { read: ['gus'], told: [null] });
  });
  it('reads every user with a session here when the notice names nobody', async () => {
    assert.deepEqual(await looked(null), { read: ['fay', 'gus'], told: [null] });
  });
  it('reads the keys of a user with a session logged in by one, and ends that session when its key is gone', async () => {
    const byKey: LiveSessionInfo = { ...live, method: 'publickey', key: 'SHA256:abc' };
    const ended: [string, string][] = [];
    const keysRead: number[] = [];
    let done: () => void = () => undefined;
    const finished = new Promise<void>((r) => (done = r));
    const outlived = new OutlivedSessions(
      async () => stored,
      async (id) => {
        keysRead.push(id);
        return ['SHA256:other'];
      },
      {
        list: async () => [byKey],
        end: async (id, why) => {
          ended.push([id, why]);
          done();
          return true;
        },
        endUser: async () => 0,
        userChanged: async () => ({ renewed: 0, ended: 0 }),
      },
      () => undefined,
    );
    outlived.check(null);
    await finished;
    assert.deepEqual({ keysRead, ended }, { keysRead: [7], ended: [['s1', 'key removed by an administrator']] });
  });
  it('reads again, a little later, a user it could not read', { timeout: 5000 }, async () => {
    assert.deepEqual(await looked(8, true), { read: ['gus', 'gus'], told: [null, null] });
  });
});

/*
 * Found by an adversarial review of be2dc1f: a session decides at its start
 * whether its uploads are scanned, and one from before `sluice user set
 * --scan` took EICAR unscanned for as long as it lasted. A session that does
 * not scan may not go on once its user's sessions would. Found by a review of
 * the fix: it compared the settings (never, the server's default, always),
 * so `--scan` for a user the server scans already ended sessions that scan.
 */
describe('a live session against its user\'s scanning now (pure)', () => {
  const at = (scans: boolean) => ({ home: '/srv/fay', scans });
  const turnedOn = 'scanning turned on by an administrator';
  const cases: [boolean, boolean, string | null][] = [
    [false, true, turnedOn],
    [false, false, null],
    [true, true, null],
    [true, false, null],
  ];
  for (const [held, now, why] of cases) {
    it(`scans ${held}, would now ${now}: ${why ?? 'goes on'}`, () => assert.equal(outlivesAccess(at(held), at(now)), why));
  }
  it('a home moved ends it whatever the scanning', () => {
    assert.equal(outlivesAccess(at(true), { home: '/srv/elsewhere', scans: true }), 'home changed by an administrator');
  });
  const scanner = { byDefault: false } as UploadScanning;
  const everyone = { byDefault: true } as UploadScanning;
  const settings: [UploadScanning | null, boolean | null, boolean][] = [
    [null, true, false],
    [null, null, false],
    [scanner, null, false],
    [scanner, true, true],
    [everyone, null, true],
    [everyone, false, false],
  ];
  for (const [scanning, setting, scans] of settings) {
    it(`server ${scanning === null ? 'without a scanner' : `scanning ${scanning.byDefault ? 'every user' : 'by setting'}`}, user ${setting}: ${scans ? 'scans' : 'does not'}`, () =>
      assert.equal(scansWith(scanning, setting), scans));
  }
});
