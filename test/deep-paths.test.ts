// A user can make a tree as deep as the path limit allows (2,000 directories
// in 4 KiB). Resolving a path through it must not take a descriptor per
// directory: ten FTP sessions asking SIZE of a file down there exhausted the
// server's descriptors, and other users' logins and passive ports failed.
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { loggedIn, type RawFtp } from './helpers/ftp-raw.js';
import { TestServer } from './helpers/server.js';
import { call, sftpOf, sshConnect } from './helpers/ssh.js';

let srv: TestServer;
const deep = Array.from({ length: 1000 }, () => 'x').join('/');

before(async () => {
  srv = await TestServer.start({ yaml: 'ftp:\n  tls: optional\n', users: [{ name: 'carol', password: 'carol password' }] });
  mkdirSync(join(srv.home('carol'), deep), { recursive: true });
  writeFileSync(join(srv.home('carol'), deep, 'f'), 'hello');
});
after(() => srv.stop());

it('ten sessions asking SIZE 1,000 directories deep hold a few descriptors each, not one per directory', async () => {
  const fds = () => readdirSync(`/proc/${srv.pid}/fd`).length;
  const sessions: RawFtp[] = [];
  for (let i = 0; i < 10; i++) sessions.push(await loggedIn(srv.ftpPort, 'carol', 'carol password'));
  const base = fds();
  let peak = base;
  const sampler = setInterval(() => (peak = Math.max(peak, fds())), 2);
  try {
    const replies = await Promise.all(
      sessions.map(async (c) => {
        const got: string[] = [];
        for (let i = 0; i < 4; i++) got.push((await c.cmd(`SIZE /${deep}/f`)).text);
        return got;
      }),
    );
    assert.deepEqual(new Set(replies.flat()), new Set(['213 5']));
  } finally {
    clearInterval(sampler);
    for (const c of sessions) c.close();
  }
  assert.ok(peak - base <= 400, `descriptors rose by ${peak - base} (10 sessions, 1,000 directories deep)`);
});

// Found by a review: with many requests in flight on many SFTP channels, each walking a deep path at once,
// one user held 20,000 descriptors (the process's limit) and other users' sessions failed.
it('STATs 1,000 directories deep in flight on 20 SFTP channels walk a few at a time: descriptors stay bounded', { timeout: 120_000 }, async () => {
  const fds = () => readdirSync(`/proc/${srv.pid}/fd`).length;
  const connections = await Promise.all([0, 1].map(() => sshConnect({ port: srv.sftpPort, username: 'carol', password: 'carol password' })));
  try {
    const channels = await Promise.all(connections.flatMap((c) => Array.from({ length: 10 }, () => sftpOf(c))));
    const base = fds();
    let peak = base;
    const sampler = setInterval(() => (peak = Math.max(peak, fds())), 2);
    try {
      const sizes = await Promise.all(channels.flatMap((sftp) => Array.from({ length: 32 }, () => call<{ size: number }>((cb) => sftp.stat(`/${deep}/f`, cb)))));
      assert.deepEqual(new Set(sizes.map((st) => st.size)), new Set([5]));
    } finally {
      clearInterval(sampler);
    }
    assert.ok(peak - base <= 600, `descriptors rose by ${peak - base} (640 STATs in flight, 1,000 directories deep)`);
  } finally {
    for (const c of connections) c.end();
  }
});

// Found by a review: requests a connection left in flight kept walking after it closed, each waiting its
// turn and then walking the whole path, while the user's other sessions waited behind them.
it('a connection that leaves gives up its walks: another session of the user is not held behind them', { timeout: 120_000 }, async () => {
  const other = await sshConnect({ port: srv.sftpPort, username: 'carol', password: 'carol password' });
  const leaving = await sshConnect({ port: srv.sftpPort, username: 'carol', password: 'carol password' });
  try {
    const [mine, ...channels] = await Promise.all([sftpOf(other), ...Array.from({ length: 8 }, () => sftpOf(leaving))]);
    // One walk alone, for the scale of the bound below.
    let t = Date.now();
    await call<unknown>((cb) => mine!.stat(`/${deep}/f`, cb));
    const alone = Date.now() - t;
    const left = channels.flatMap((sftp) => Array.from({ length: 64 }, () => call<unknown>((cb) => sftp.stat(`/${deep}/f`, cb)).catch(() => undefined)));
    await Promise.race(left);
    leaving.destroy();
    t = Date.now();
    await call<unknown>((cb) => mine!.stat(`/${deep}/f`, cb));
    const behind = Date.now() - t;
    // 512 walks at 8 at once would be 64 rounds of one walk; a few rounds' worth is the walks under way.
    assert.ok(behind <= 5 * alone + 500, `a STAT took ${behind} ms after the other connection left (${alone} ms alone)`);
  } finally {
    other.end();
    leaving.end();
  }
});

// One connection's burst must not stall the user's other sessions: turns go round the sessions waiting.
it('a session with hundreds of deep walks in line does not hold up another session of the user', { timeout: 120_000 }, async () => {
  const other = await sshConnect({ port: srv.sftpPort, username: 'carol', password: 'carol password' });
  const busy = await sshConnect({ port: srv.sftpPort, username: 'carol', password: 'carol password' });
  try {
    const [mine, ...channels] = await Promise.all([sftpOf(other), ...Array.from({ length: 8 }, () => sftpOf(busy))]);
    let t = Date.now();
    await call<unknown>((cb) => mine!.stat(`/${deep}/f`, cb));
    const alone = Date.now() - t;
    const queued = channels.flatMap((sftp) => Array.from({ length: 64 }, () => call<unknown>((cb) => sftp.stat(`/${deep}/f`, cb)).then(() => 'ok', () => 'failed')));
    await Promise.race(queued);
    t = Date.now();
    await call<unknown>((cb) => mine!.stat(`/${deep}/f`, cb));
    const waited = Date.now() - t;
    assert.ok(waited <= 5 * alone + 1000, `a STAT took ${waited} ms behind another session's 512 (${alone} ms alone)`);
    // The busy session's walks were still in line, not refused to make room.
    const settled = await Promise.all(queued.map((q) => Promise.race([q, Promise.resolve('pending')])));
    assert.ok(settled.includes('pending'), 'the busy session still had walks in line');
    assert.ok(!settled.includes('failed'), 'none of its walks was refused');
  } finally {
    other.end();
    busy.end();
  }
});
