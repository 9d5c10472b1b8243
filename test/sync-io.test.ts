import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { adminRequest, type AdminTarget } from './helpers/admin-http.js';
import { serverWithAdminToken } from './helpers/admin-server.js';
import { connectClient, FtpClient, KINDS } from './helpers/file-clients.js';
import { TestServer } from './helpers/server.js';

/*
 * No synchronous file system call while serving: one stops every session of
 * the process for as long as the disk (or a network mount) takes. Node's
 * --trace-sync-io names each synchronous call made after the start, with its
 * stack; those of the file system are the ones counted. It names crypto's
 * too (random bytes; ssh2's key exchange signs and derives synchronously),
 * which wait on no device.
 */
/** The synchronous file system calls --trace-sync-io warned of in `stderr`, each with its stack. */
function syncFsCalls(stderr: string): string[] {
  const warnings = stderr.split(/(?=\(node:\d+\) WARNING: Detected use of sync API)/).filter((w) => w.includes('Detected use of sync API'));
  return warnings.filter((w) => /^\s+at .*\(node:fs[:)]/m.exec(w)?.index === w.search(/^\s+at /m));
}

describe('serving makes no synchronous file system call', () => {
  let srv: TestServer;
  before(async () => {
    srv = await TestServer.start({ yaml: 'ftp:\n  tls: optional\n', users: [{ name: 'ann', password: 'ann password 1' }], nodeArgs: ['--trace-sync-io'] });
  });
  after(async () => {
    await srv.stop();
  });

  const syncCallsSince = (from: number) => syncFsCalls(srv.stderr.slice(from));

  for (const kind of KINDS) {
    it(`${kind}: login, upload, listing, download, rename, removal and logout`, { timeout: 60_000 }, async () => {
      const from = srv.stderr.length;
      const c = await connectClient(kind, srv, 'ann', 'ann password 1');
      await c.put(`${kind}.txt`, 'hello '.repeat(1000));
      assert.ok((await c.list('/')).includes(`${kind}.txt`));
      assert.equal((await c.get(`${kind}.txt`)).length, 6000);
      await c.rename(`${kind}.txt`, `${kind}-2.txt`);
      await c.remove(`${kind}-2.txt`);
      c.close();
      await srv.auditUntil((r) => r.event === 'logout' && r.protocol === (kind === 'sftp' ? 'sftp' : 'ftp'));
      assert.deepEqual(syncCallsSince(from), []);
    });
  }

  it('FTP: directories, sizes, times, facts, a checksum and a status listing', { timeout: 60_000 }, async () => {
    const from = srv.stderr.length;
    const c = await connectClient('ftpes', srv, 'ann', 'ann password 1');
    assert.ok(c instanceof FtpClient);
    await c.put('facts.txt', 'facts '.repeat(100));
    const replies = [];
    for (const line of ['MKD d', 'CWD d', 'CDUP', 'SIZE facts.txt', 'MDTM facts.txt', 'MFMT 20240102030405 facts.txt', 'MLST facts.txt', 'HASH facts.txt', 'STAT d', 'RMD d']) {
      replies.push(`${line}: ${(await c.cmd(line)).code}`);
    }
    assert.deepEqual(replies.filter((r) => !/: 2\d\d$/.test(r)), [], 'refused');
    c.close();
    await srv.auditUntil((r) => r.event === 'logout' && r.protocol === 'ftp');
    assert.deepEqual(syncCallsSince(from), []);
  });
});

/*
 * User administration runs in the serving process (the admin API): its file
 * system calls (a home looked up, made, refused because a removed user left
 * files in it, unmade) were synchronous, so a home on a slow or hung network
 * mount stopped every session of the process with it.
 */
describe('user administration off the event loop', () => {
  let srv: TestServer;
  let api: AdminTarget;
  let token: string;
  before(async () => {
    ({ srv, api, token } = await serverWithAdminToken('127.0.0.64', { nodeArgs: ['--trace-sync-io'] }));
  });
  after(async () => {
    await srv.stop();
  });

  it('adding, listing and removing users, changing a home, a refused add and a ban make no synchronous file system call', { timeout: 60_000 }, async () => {
    const before = srv.stderr.length;
    const add = (body: Record<string, unknown>) => adminRequest(api, 'POST', '/api/v1/users', { token, body });
    assert.equal((await add({ name: 'ann', password: 'ann password 1' })).status, 201);
    const elsewhere = join(srv.dir, 'elsewhere', 'bob');
    assert.equal((await add({ name: 'bob', password: 'bob password 1', home: elsewhere })).status, 201);
    const moved = await adminRequest(api, 'PATCH', '/api/v1/users/bob', { token, body: { home: join(srv.dir, 'moved', 'bob') } });
    assert.equal(moved.status, 200, moved.text);
    // Inside ann's home: refused.
    const nested = await add({ name: 'cat', password: 'cat password 1', home: join(srv.home('ann'), 'cat') });
    assert.equal(nested.status, 400, nested.text);
    assert.equal((await adminRequest(api, 'GET', '/api/v1/users', { token })).status, 200);
    assert.equal((await adminRequest(api, 'DELETE', '/api/v1/users/bob', { token })).status, 200);
    assert.equal((await adminRequest(api, 'POST', '/api/v1/bans', { token, body: { address: '192.0.2.7', seconds: 60 } })).status, 201);
    assert.deepEqual(syncFsCalls(srv.stderr.slice(before)), []);
  });
});
