import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { unitMallocEnv } from './helpers/deploy.js';
import { TestServer } from './helpers/server.js';
import { sshConnect } from './helpers/ssh.js';

const MiB = 1024 * 1024;

function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(m, 'VmRSS readable');
  return Number(m[1]) * 1024;
}

/**
 * Each argon2 verification mallocs its 19 MiB on whichever of libuv's 16
 * threads runs it, and glibc keeps the freed block in that thread's arena
 * (after the first free, blocks of that size are no longer mmapped). With
 * glibc's default of one arena per thread, a few dozen logins left about
 * 19 MiB behind on every thread: the server grew by some 200-300 MiB and kept
 * it, whatever the number of sessions. The unit caps the arenas.
 */
describe('password logins under the systemd unit settings', () => {
  let srv: TestServer;
  before(async () => {
    srv = await TestServer.start({
      env: unitMallocEnv(),
      users: [{ name: 'alice', password: 'alice password' }],
    });
  });
  after(() => srv.stop());

  it('leave the server at most 120 MiB larger after 48 of them', async (t) => {
    const login = async () => (await sshConnect({ port: srv.sftpPort, username: 'alice', password: 'alice password' })).end();
    // The first login computes the dummy hash and warms every code path.
    await login();
    const before = rssOf(srv.pid as number);
    // More at once than auth.maxConcurrentHashes, so that the hashes spread over the pool's threads.
    for (let round = 0; round < 12; round++) await Promise.all([login(), login(), login(), login()]);
    await new Promise((r) => setTimeout(r, 500));
    const grown = rssOf(srv.pid as number) - before;
    t.diagnostic(`grew by ${(grown / MiB).toFixed(0)} MiB`);
    assert.ok(grown < 120 * MiB, `grew by ${(grown / MiB).toFixed(0)} MiB`);
  });
});
