import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { sluice } from './helpers/cli.js';
import { RawFtp } from './helpers/ftp-raw.js';
import { TestServer } from './helpers/server.js';
import { sshConnect } from './helpers/ssh.js';

/**
 * A password that verified is answered without argon2 on the next logins
 * (auth.passwordCache, src/auth/verified-passwords.ts). What that must never
 * do: let an old password in after a change, or let a kept login past the
 * account's rules.
 */
/** Server CPU (user + system) of the process so far, ms. */
function cpuMs(pid: number | undefined): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100;
}

/**
 * Server CPU (ms) of `a` and of `b`, each run `rounds` times, alternately:
 * what a case costs is judged against a yardstick measured in the server
 * itself, next to it. A verification timed in this test process measured
 * twice the server's under the suite's load, and a bound on it failed once;
 * one measured in the server before the case drifted with the process's
 * warm-up (its first logins cost two or three times the later ones).
 */
async function interleaved(pid: number | undefined, a: () => Promise<unknown>, b: () => Promise<unknown>, rounds = 4): Promise<[number, number]> {
  const spent: [number, number] = [0, 0];
  for (let i = 0; i < rounds; i++) {
    for (const [k, run] of [a, b].entries()) {
      const c0 = cpuMs(pid);
      await run();
      spent[k as 0 | 1] += cpuMs(pid) - c0;
    }
  }
  return spent;
}

async function ftpLogin(port: number, user: string, password: string, from?: string): Promise<number> {
  const c = await RawFtp.connect(port, false, from);
  try {
    await c.read();
    return (await c.login(user, password)).code;
  } finally {
    c.close();
  }
}

describe('passwords kept after they verified', () => {
  let srv: TestServer;
  before(async () => {
    srv = await TestServer.start({
      // The refusals below would otherwise ban 127.0.0.1 before the last case.
      yaml: 'ftp:\n  tls: optional\nauth:\n  failureDelay: 0\ndefender:\n  threshold: 100\n',
      env: { SLUICE_WORKERS: '1' },
      users: [
        { name: 'alice', password: 'alice old password' },
        { name: 'bob', password: 'bob password' },
        { name: 'cpu', password: 'cpu password' },
        { name: 'far', password: 'far password', args: ['--allow-ip', '10.0.0.0/8'] },
        { name: 'ref', password: 'ref password' },
      ],
    });
  });
  after(() => srv?.stop());

  const ftp = (user: string, password: string, from?: string) => ftpLogin(srv.ftpPort, user, password, from);
  const ssh = async (user: string, password: string): Promise<void> => {
    (await sshConnect({ port: srv.sftpPort, username: user, password })).end();
  };
  /** The reasons of `user`'s failed logins, once there are at least `n` (each attempt's record comes before its refusal is answered). */
  const failures = async (user: string, n: number) => {
    const of = (records: Record<string, unknown>[]) => records.filter((r) => r.event === 'login-failed' && r.user === user);
    return of(await srv.auditWhen((records) => of(records).length >= n)).map((r) => r.reason);
  };

  it('a changed password: the old one is refused at once over FTP and SFTP, a wrong one always was, the new one is taken', async () => {
    for (let i = 0; i < 2; i++) {
      assert.equal(await ftp('alice', 'alice old password'), 230);
      await ssh('alice', 'alice old password');
    }
    assert.equal(await ftp('alice', 'alice old password!'), 530);
    const changed = sluice(srv.dir, ['user', 'passwd', 'alice', '--password-stdin'], 'alice new password\n');
    assert.equal(changed.code, 0, changed.stderr);
    assert.equal(await ftp('alice', 'alice old password'), 530);
    await assert.rejects(ssh('alice', 'alice old password'));
    assert.equal(await ftp('alice', 'alice new password'), 230);
    await ssh('alice', 'alice new password');
    assert.deepEqual(await failures('alice', 3), ['bad-password', 'bad-password', 'bad-password']);
  });

  it("a kept password does not outlive the account's rules: a disabled user is refused", async () => {
    assert.equal(await ftp('bob', 'bob password'), 230);
    await ssh('bob', 'bob password');
    assert.equal(sluice(srv.dir, ['user', 'disable', 'bob']).code, 0);
    assert.equal(await ftp('bob', 'bob password'), 530);
    await assert.rejects(ssh('bob', 'bob password'));
    assert.deepEqual(await failures('bob', 2), ['disabled', 'disabled']);
  });

  // The yardstick: a wrong password, which always verifies in full. From an address of its own, so
  // that the failures the cases below look for stay among the few audited in full per address.
  const wrong = async () => assert.equal(await ftp('ref', 'not the password', '127.0.0.3'), 530);

  it('repeated logins cost the server less CPU than a handful of argon2 verifications', async () => {
    assert.equal(await ftp('cpu', 'cpu password'), 230);
    const kept = async () => {
      for (let i = 0; i < 5; i++) assert.equal(await ftp('cpu', 'cpu password'), 230);
    };
    const [used, verifying] = await interleaved(srv.pid, kept, wrong, 6);
    // Each of the 30 would be one full verification without the cache, as each of the 6 wrong ones is.
    assert.ok(used < verifying * 2, `30 kept logins took ${used} ms of server CPU, 6 that verify ${verifying} ms`);
  });

  it('a right password for an account refused anyway is never kept: every refusal verifies in full', async (t) => {
    const refused = async () => assert.equal(await ftp('far', 'far password'), 530);
    // The yardstick is the same refusal with a wrong password: the same path but for the password. A wrong
    // password of another user (which also pays for a failed password's scoring) made the ratio 0.30-0.55
    // when both verified in full, too close to the quarter a kept password would give (failed once in CI).
    const refusedWrong = async () => assert.equal(await ftp('far', 'not the password', '127.0.0.4'), 530);
    const [used, verifying] = await interleaved(srv.pid, refused, refusedWrong, 8);
    // Kept after the first, the other seven would be answered at once: about an eighth of the yardstick.
    // Verified in full it is about 1, but CPU read in 10 ms ticks on a loaded machine gave 0.53 once
    // (a clean-clone run; the bound was 0.6 then): the bound sits between the two.
    t.diagnostic(`refusals ${used} ms, with a wrong password ${verifying} ms: ${(used / verifying).toFixed(2)}`);
    assert.ok(used > verifying * 0.4, `8 refusals took ${used} ms of server CPU, 8 with a wrong password ${verifying} ms`);
    // As many of the refusals as are recorded in full (a few per address and window): a failed login from
    // another address, made now, is recorded after them, and waited for.
    assert.equal(await ftp('nobody', 'no password', '127.0.0.5'), 530);
    const far = (r: Record<string, unknown>) => r.event === 'login-failed' && r.user === 'far' && r.ip === '127.0.0.1';
    const right = (await srv.auditUntil((r) => r.event === 'login-failed' && r.ip === '127.0.0.5')).filter(far);
    assert.ok(right.length > 0 && right.every((r) => r.reason === 'address-not-allowed'), JSON.stringify(right.map((r) => r.reason)));
  });
});

describe('auth.passwordCache: 0', () => {
  let srv: TestServer;
  before(async () => {
    srv = await TestServer.start({
      yaml: 'ftp:\n  tls: optional\nauth:\n  passwordCache: 0\n  failureDelay: 0\ndefender:\n  threshold: 100\n',
      env: { SLUICE_WORKERS: '1' },
      users: [{ name: 'every', password: 'every password' }, { name: 'ref', password: 'ref password' }],
    });
  });
  after(() => srv?.stop());

  it('verifies every login with argon2', async () => {
    assert.equal(await ftpLogin(srv.ftpPort, 'every', 'every password'), 230);
    const right = async () => assert.equal(await ftpLogin(srv.ftpPort, 'every', 'every password'), 230);
    const wrong = async () => assert.equal(await ftpLogin(srv.ftpPort, 'ref', 'not the password'), 530);
    const [used, verifying] = await interleaved(srv.pid, right, wrong, 8);
    assert.ok(used > verifying * 0.5, `8 logins took ${used} ms of server CPU, 8 wrong passwords ${verifying} ms`);
  });
});
