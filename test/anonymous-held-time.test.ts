import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { loggedIn, RawFtp } from './helpers/ftp-raw.js';
import { TestServer } from './helpers/server.js';

/*
 * Found by a review: with anonymous FTP on, an address could hold its
 * pre-login places unscored, where the same connections without it are
 * banned (HeldTime, the deadline). A login refused at anonymous FTP's
 * session limit, which the address keeps full with its own sessions, was
 * never counted as held time; and an anonymous login followed by REIN left
 * the connection vouched for, so neither the deadline that closed it nor
 * its close scored anything. Here the deadline is 3 s (1 s of held time is
 * one login timeout) and 3 offences ban.
 */
describe('anonymous FTP does not let an address hold places unscored', () => {
  let srv: TestServer;
  let root: string;
  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'sluice-anon-held-'));
    mkdirSync(join(root, 'pub'));
    srv = await TestServer.start({
      yaml:
        `ftp:\n  tls: optional\n  anonymous:\n    enabled: true\n    root: ${root}\n    maxSessions: 10\n    maxSessionsPerIp: 1\n` +
        'limits:\n  loginTimeout: 3\n  maxSessionsPerUser: 1\ndefender:\n  threshold: 3\n',
      users: [{ name: 'carol', password: 'carol password' }],
    });
  });
  after(async () => {
    await srv?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  /** Polls the bans a little: the ban is written as the server scores the closes. */
  const banned = async (from: string): Promise<boolean> => {
    for (let i = 0; i < 10; i++) {
      if (srv.bans().includes(from)) return true;
      await sleep(100);
    }
    return false;
  };
  /** Not banned, once the closes have had time to be scored (each `sluice ban list` takes a while). */
  const notBanned = async (from: string): Promise<boolean> => {
    await sleep(500);
    return !srv.bans().includes(from);
  };

  /** `count` connections from `from` that each log in as `user` after `first` ms (refused: the limit is full), stay `ms`, and leave. */
  const refusedAndHeld = async (from: string, user: string, password: string, count: number, ms: number, first = 0) => {
    await Promise.all(
      Array.from({ length: count }, async () => {
        const c = await RawFtp.connect(srv.ftpPort, false, from);
        assert.equal((await c.read())?.code, 220);
        await sleep(first);
        const r = await c.login(user, password);
        assert.equal(r.code, 530);
        assert.match(r.text, /Too many sessions/);
        await sleep(ms);
        c.close();
      }),
    );
  };

  it('logins refused at the anonymous limit, held until just before the deadline: scored as held time', { timeout: 60_000 }, async () => {
    // The address's one anonymous session keeps its share full; its other connections are refused at once.
    const hoarder = '127.0.0.71';
    const session = await loggedIn(srv.ftpPort, 'anonymous', 'a@b', hoarder);
    await refusedAndHeld(hoarder, 'anonymous', 'x@y', 3, 2500);
    assert.ok(await banned(hoarder), `${hoarder} held 3 places for 2.5 s each and was not banned; bans: ${srv.bans().join(', ')}`);
    session.close();

    // A user meeting its own session limit gave a good password: not held against its address, however long
    // it stays (the deadline still scores one that stays until it), nor is a client that leaves at once.
    const user = '127.0.0.72';
    const carol = await loggedIn(srv.ftpPort, 'carol', 'carol password', user);
    // 1.5 s of the 3 s deadline: each already more than one offence's worth of held time, were it counted.
    await refusedAndHeld(user, 'carol', 'carol password', 3, 1500);
    await refusedAndHeld(user, 'carol', 'carol password', 3, 0);
    assert.ok(await notBanned(user), 'a user at its session limit was banned');
    carol.close();

    // Anonymous users on a busy server, whose clients come and go with a session each: nothing scored.
    const busy = '127.0.0.73';
    for (let i = 0; i < 8; i++) {
      const c = await loggedIn(srv.ftpPort, 'anonymous', 'a@b', busy);
      assert.equal((await c.cmd('NOOP')).code, 200);
      await c.cmd('QUIT');
      c.close();
    }
    // Refused at the anonymous limit and leaving at once, as a client does: next to nothing held, however long
    // its login took to come (a slow handshake, a user typing; found by a review: counted from the connect,
    // these five summed 4 s, a ban).
    const kept = await loggedIn(srv.ftpPort, 'anonymous', 'a@b', busy);
    await refusedAndHeld(busy, 'anonymous', 'x@y', 5, 0, 800);
    assert.ok(await notBanned(busy), 'anonymous users coming and going were banned');
    kept.close();
  });

  it('an anonymous login then REIN: the connection is judged afresh, at its deadline and at its close', { timeout: 60_000 }, async () => {
    // Log in and REIN one at a time (the anonymous share is one session), then wait on all of them.
    const reinThen = async (from: string, count: number): Promise<RawFtp[]> => {
      const conns: RawFtp[] = [];
      for (let i = 0; i < count; i++) {
        const c = await loggedIn(srv.ftpPort, 'anonymous', 'x@y', from);
        assert.equal((await c.cmd('REIN')).code, 220);
        conns.push(c);
      }
      return conns;
    };

    // Left to the deadline, which closes them with 421: three login timeouts.
    const toDeadline = '127.0.0.74';
    const sat = await reinThen(toDeadline, 3);
    const goodbyes = await Promise.all(sat.map((c) => c.read(10_000)));
    assert.ok(goodbyes.every((r) => r?.code === 421 && /Login timeout/.test(r.text)), JSON.stringify(goodbyes));
    assert.ok(await banned(toDeadline), `${toDeadline}: 3 login timeouts after REIN, not banned; bans: ${srv.bans().join(', ')}`);

    // Left just before the deadline: their time since REIN is held time.
    const beforeDeadline = '127.0.0.75';
    const left = await reinThen(beforeDeadline, 3);
    await sleep(2500);
    left.forEach((c) => c.close());
    assert.ok(await banned(beforeDeadline), `${beforeDeadline}: held 3 places after REIN, not banned; bans: ${srv.bans().join(', ')}`);

    // REIN and a prompt new login, as a client switching users does: nothing scored.
    const switching = '127.0.0.76';
    for (let i = 0; i < 5; i++) {
      const c = await loggedIn(srv.ftpPort, 'anonymous', 'x@y', switching);
      assert.equal((await c.cmd('REIN')).code, 220);
      assert.equal((await c.login('anonymous', 'x@y')).code, 230);
      await c.cmd('QUIT');
      c.close();
    }
    assert.ok(await notBanned(switching), 'a client that logged in again after REIN was banned');
  });
});
