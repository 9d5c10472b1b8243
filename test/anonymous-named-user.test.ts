import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { SCANS_PER_USER } from '../src/session/scanning.js';
import { SlowClamd } from './helpers/clamd.js';
import { loggedIn, passiveFrom, RawFtp } from './helpers/ftp-raw.js';
import { TestServer } from './helpers/server.js';
import { until } from './helpers/stall.js';

/*
 * Found by a review: with ftp.anonymous off, a real user named `anonymous`
 * (made before the name was reserved, with a password) was taken for
 * anonymous FTP by its name wherever its clients were counted: a share of
 * the scanner's turns (and of the hook queue) per address, its transfers
 * marked `a` in the xferlog, and its own session limit, met with its good
 * password, held against its address as anonymous FTP's is. Who is anonymous
 * is told by how the login was made now.
 */
const PASSWORD = 'an old password';

/** A server whose user `anonymous` has a password: made by an old version (the CLI refuses the name now), as it left it. */
async function withLegacyAnonymous(yaml: string): Promise<TestServer> {
  const srv = await TestServer.start({ yaml, users: [{ name: 'legacy', password: PASSWORD }] });
  await srv.restart(() => {
    const db = new Database(join(srv.dir, 'data', 'sluice.db'));
    try {
      db.prepare("UPDATE users SET name = 'anonymous' WHERE name = 'legacy'").run();
    } finally {
      db.close();
    }
  });
  return srv;
}

describe('a user named anonymous, anonymous FTP off: its uploads', () => {
  // Every stream answered a second after it came, however many: the peak is what the server let through.
  const clamd = new SlowClamd(1000);
  let srv: TestServer;
  before(async () => {
    await clamd.start();
    srv = await withLegacyAnonymous(`ftp:\n  tls: optional\naudit:\n  xferlog: xferlog\nuploads:\n  scan: clamd\n  clamdSocket: ${clamd.socket}\n  scanTimeout: 20\n`);
  });
  after(async () => {
    await srv?.stop();
    await clamd.cleanup();
  });

  it('take its one share of the scanner from all its addresses, and are marked r in the xferlog', { timeout: 60_000 }, async () => {
    // Two sessions from each of three addresses: by address, all six would be at the scanner at once.
    const froms = ['127.0.0.2', '127.0.0.3', '127.0.0.4'].flatMap((a) => [a, a]);
    const clients = await Promise.all(froms.map((from) => loggedIn(srv.ftpPort, 'anonymous', PASSWORD, from)));
    try {
      const replies = await Promise.all(
        clients.map(async (c, i) => {
          assert.equal((await c.cmd('TYPE I')).code, 200);
          const data = await passiveFrom(c, froms[i] as string);
          assert.equal((await c.cmd(`STOR /u${i}.txt`)).code, 150);
          data.end(`upload ${i}\n`);
          return (await c.read(30_000))?.text ?? 'closed';
        }),
      );
      for (const r of replies) assert.match(r, /^226/);
    } finally {
      for (const c of clients) c.close();
    }
    assert.equal(clamd.streams, 6);
    const xferlog = join(srv.dir, 'data', 'xferlog');
    const lines = () => (existsSync(xferlog) ? readFileSync(xferlog, 'utf8').split('\n').filter((l) => l !== '') : []);
    await until('six xferlog lines', () => lines().length === 6);
    // Its uploads at the scanner at once; and each line's direction, access-mode, username and service-name (`r`: a real user's).
    const modes = lines().map((l) => l.split(' ').slice(-7, -3).join(' '));
    assert.deepEqual({ peak: clamd.peak, modes }, { peak: SCANS_PER_USER, modes: Array<string>(6).fill('i r anonymous ftp') });
  });
});

describe('a user named anonymous, anonymous FTP off: its own session limit', () => {
  let srv: TestServer;
  before(async () => {
    srv = await withLegacyAnonymous('ftp:\n  tls: optional\nlimits:\n  loginTimeout: 3\n  maxSessionsPerUser: 1\ndefender:\n  threshold: 3\n');
  });
  after(async () => {
    await srv?.stop();
  });

  it('met with its good password, is not held against its address', { timeout: 60_000 }, async () => {
    const from = '127.0.0.72';
    const session = await loggedIn(srv.ftpPort, 'anonymous', PASSWORD, from);
    try {
      // 1.5 s of the 3 s deadline each: more than one offence's worth of held time, were it counted (3 ban).
      await Promise.all(
        Array.from({ length: 3 }, async () => {
          const c = await RawFtp.connect(srv.ftpPort, false, from);
          assert.equal((await c.read())?.code, 220);
          const r = await c.login('anonymous', PASSWORD);
          assert.equal(r.code, 530);
          assert.match(r.text, /Too many sessions/);
          await sleep(1500);
          c.close();
        }),
      );
      // The closes scored (were they to be) as they come: a ban is written within this.
      await sleep(1000);
      assert.deepEqual(srv.bans(), []);
    } finally {
      session.close();
    }
  });
});
