import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import ssh2 from 'ssh2';
import { sluice } from './helpers/cli.js';
import { RawFtp } from './helpers/ftp-raw.js';
import { need } from './helpers/programs.js';
import { TestServer } from './helpers/server.js';
import { sftpOf, sshConnect, userKeyPair } from './helpers/ssh.js';

describe('login policy: sessions per user over every protocol, names as stored', () => {
  let srv: TestServer;
  before(async () => {
    srv = await TestServer.start({
      yaml: 'limits:\n  maxSessionsPerUser: 2\nauth:\n  failureDelay: 0\n',
      users: [{ name: 'carol', password: 'carol password' }],
    });
  });
  after(() => srv.stop());

  it('counts FTP and SFTP sessions of one user together, refusing the third with a clear message', { timeout: 60_000 }, async () => {
    const ftp = await RawFtp.secureLogin(srv.ftpPort, 'carol', 'carol password');
    const ssh = await sshConnect({ port: srv.sftpPort, username: 'carol', password: 'carol password' });
    await sftpOf(ssh);
    const third = await RawFtp.connect(srv.ftpPort);
    await third.read();
    await third.startTls();
    const r = await third.login('carol', 'carol password');
    assert.equal(r.code, 530);
    assert.match(r.text, /too many sessions/i);
    await assert.rejects(sshConnect({ port: srv.sftpPort, username: 'carol', password: 'carol password' }));
    // A slot freed by logging out (FTP REIN) is free for any protocol.
    assert.equal((await ftp.cmd('REIN')).code, 220);
    const again = await sshConnect({ port: srv.sftpPort, username: 'carol', password: 'carol password' });
    again.end();
    ssh.end();
    ftp.close();
    third.close();
    // Both refusals came while carol's first two sessions were open: any logout of hers is recorded after them.
    const refused = (await srv.auditUntil((l) => l.event === 'logout' && l.user === 'carol')).filter((l) => l.event === 'login-failed' && l.reason === 'session-limit');
    assert.equal(refused.length, 2);
  });

  it('an SSH login past the limit is told why in the DISCONNECT, not left to guess a bad password: ssh2, OpenSSH sftp, rclone', { timeout: 60_000 }, async (t) => {
    const ftp = await RawFtp.secureLogin(srv.ftpPort, 'carol', 'carol password');
    const ssh = await sshConnect({ port: srv.sftpPort, username: 'carol', password: 'carol password' });
    try {
      // ssh2 raises a DISCONNECT's description with its reason as the code (12: too many connections).
      await assert.rejects(sshConnect({ port: srv.sftpPort, username: 'carol', password: 'carol password' }), (err: Error & { code?: unknown }) => {
        assert.match(err.message, /too many sessions/i);
        assert.equal(err.code, 12);
        return true;
      });
      const openssh = ['-o', 'BatchMode=no', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-P', String(srv.sftpPort), '-b', '-', 'carol@127.0.0.1'];
      if (need(t, 'sshpass') && need(t, 'sftp')) {
        const r = spawnSync('sshpass', ['-p', 'carol password', 'sftp', ...openssh], { input: 'ls\n', encoding: 'utf8', timeout: 30_000 });
        assert.notEqual(r.status, 0);
        assert.match(r.stderr, /too many sessions/i, r.stderr);
      }
      // Go's x/crypto/ssh (rclone): "unable to authenticate" before, which reads as a wrong password.
      if (need(t, 'rclone')) {
        const pass = spawnSync('rclone', ['obscure', 'carol password'], { encoding: 'utf8' }).stdout.trim();
        const r = spawnSync('rclone', ['lsf', '--config', '/dev/null', '--retries', '1', '--low-level-retries', '1', `:sftp,host=127.0.0.1,port=${srv.sftpPort},user=carol,pass=${pass}:`], { encoding: 'utf8', timeout: 30_000 });
        assert.notEqual(r.status, 0);
        assert.match(r.stderr, /reason 12: too many sessions/i, r.stderr);
      }
    } finally {
      ssh.end();
      ftp.close();
    }
  });

  it('audits a login as CAROL under the stored name carol, on both protocols', { timeout: 60_000 }, async () => {
    const ftp = await RawFtp.secureLogin(srv.ftpPort, 'CAROL', 'carol password');
    ftp.close();
    const ssh = await sshConnect({ port: srv.sftpPort, username: 'Carol', password: 'carol password' });
    ssh.end();
    await assert.rejects(sshConnect({ port: srv.sftpPort, username: 'CaRoL', password: 'wrong' }));
    // The last of the three: the wrong password over SFTP (the earlier test's failures are session-limit ones).
    const audit = await srv.auditUntil((l) => l.event === 'login-failed' && l.protocol === 'sftp' && l.reason !== 'session-limit');
    const logins = audit.filter((l) => l.event === 'login' || l.event === 'login-failed');
    assert.ok(logins.length >= 3);
    for (const l of logins) assert.equal(l.user, 'carol', JSON.stringify(l));
  });
});

/** A login that must fail, ended with the DISCONNECT for used-up attempts: reason 14 and OpenSSH's words. */
async function endedUsedUp(login: ssh2.ConnectConfig & { port: number; username: string }): Promise<void> {
  const err = await sshConnect(login).then(
    (c) => (c.end(), null),
    (e: Error & { code?: unknown }) => e,
  );
  assert.ok(err, 'the login must fail');
  assert.match(err.message, /too many authentication failures/i);
  assert.equal(err.code, 14);
}

describe('an SSH connection that used up its login attempts', () => {
  let srv: TestServer;
  before(async () => {
    srv = await TestServer.start({
      yaml: 'defender:\n  enabled: false\nauth:\n  maxTries: 3\n  failureDelay: 0\n',
      users: [
        { name: 'dave', password: 'dave password' },
        { name: 'erin', password: 'erin password' },
      ],
    });
  });
  after(() => srv.stop());

  it('is ended with a DISCONNECT saying so, as OpenSSH says it', { timeout: 60_000 }, async () => {
    let tries = 0;
    await endedUsedUp({
      port: srv.sftpPort,
      username: 'dave',
      authHandler: (_left: unknown, _partial: unknown, next: (m: ssh2.AuthenticationType | ssh2.PasswordAuthMethod) => void) => {
        tries++;
        next({ type: 'password', username: 'dave', password: `wrong ${tries}` });
      },
    });
    // The third refusal, then the end: ssh2 may have made its fourth attempt before it read the DISCONNECT.
    assert.ok(tries === 3 || tries === 4, `attempts made: ${tries}`);
  });

  // Found by an adversarial review: its address banned between two attempts (by its failures on other
  // connections, or `sluice ban add`), the next attempt got an empty list of methods and the connection stayed
  // open, unheard, until the login deadline (paramiko: "allowed types: ['']").
  it('banned meanwhile, its next attempt gets no hearing and the same DISCONNECT, at once', { timeout: 60_000 }, async () => {
    let tries = 0;
    const began = Date.now();
    await endedUsedUp({
      port: srv.sftpPort,
      username: 'dave',
      localAddress: '127.0.0.7',
      authHandler: (_left: unknown, _partial: unknown, next: (m: ssh2.AuthenticationType | ssh2.PasswordAuthMethod) => void) => {
        if (++tries > 1) return next(false as never);
        assert.equal(sluice(srv.dir, ['ban', 'add', '127.0.0.7']).code, 0);
        next({ type: 'password', username: 'dave', password: 'dave password' });
      },
    });
    assert.ok(Date.now() - began < 10_000, 'ended at once, not at the login deadline');
  });

  // Such keys are the questions a client could have asked (Guest.ownKey): not failed logins, but as bounded.
  it('end the connection at the 10th, as unknown keys asked about do, and write nothing to the audit trail', { timeout: 60_000 }, async () => {
    for (const name of ['erin', 'nobody-here', 'A'.repeat(30 * 1024)]) {
      const { sent, error } = await bogusLogins(srv.sftpPort, name, 100, 'signed-key');
      // The 11th may be on the wire as the 10th is refused: it gets no hearing.
      assert.ok(sent >= 10 && sent <= 11, `${name.slice(0, 20)}: attempts made before the end: ${sent}`);
      assert.match(String(error?.message), /too many authentication failures/i);
    }
    await srv.restart();
    const audit = await srv.auditUntil((l) => l.event === 'audit-start');
    assert.deepEqual(audit.filter((l) => String(l.event).startsWith('login') && ['erin', 'nobody-here'].includes(String(l.user).slice(0, 11))), []);
    assert.deepEqual(audit.filter((l) => String(l.user).startsWith('AAAA')), []);
  });
});

describe('a login whose home cannot be opened is no login: the deadline runs on, the session slot is freed', () => {
  let srv: TestServer;
  before(async () => {
    srv = await TestServer.start({
      yaml: 'limits:\n  maxSessionsPerUser: 1\n  loginTimeout: 4\nauth:\n  failureDelay: 0\n',
      users: [{ name: 'bob', password: 'bob password' }],
    });
  });
  after(() => srv.stop());

  /** Bob's home gone, as after an unmounted volume or a botched migration. */
  const withoutHome = () => rmSync(srv.home('bob'), { recursive: true, force: true });
  const withHome = () => mkdirSync(srv.home('bob'), { recursive: true });

  it('FTP: after the 451 the connection is closed at the login deadline, and bob can log in elsewhere meanwhile', { timeout: 60_000 }, async () => {
    withoutHome();
    const c = await RawFtp.connect(srv.ftpPort);
    await c.read();
    await c.startTls();
    const started = Date.now();
    assert.equal((await c.login('bob', 'bob password')).code, 451);
    withHome();
    // The only slot bob has (maxSessionsPerUser 1) is not held by the failed login.
    const other = await RawFtp.secureLogin(srv.ftpPort, 'bob', 'bob password', { localAddress: '127.0.0.2' });
    other.close();
    let last = null;
    while (Date.now() - started < 20_000) {
      last = await c.cmd('NOOP').catch(() => null);
      if (last === null || last.code !== 200) break;
      await new Promise((r) => setTimeout(r, 300));
    }
    assert.equal(last?.code, 421, 'the login deadline ended the connection');
    assert.match(last?.text ?? '', /timeout/i);
    assert.ok(Date.now() - started < 12_000, 'closed at the 4 s deadline');
    c.close();
    // A failure would be recorded at the deadline, before the 421: a failed login from another address,
    // made now, is recorded after it, and waited for.
    const later = await RawFtp.connect(srv.ftpPort, false, '127.0.0.5');
    await later.read();
    await later.startTls();
    assert.equal((await later.login('nobody', 'no password')).code, 530);
    later.close();
    const failed = (await srv.auditUntil((l) => l.event === 'login-failed' && l.ip === '127.0.0.5')).filter((l) => l.event === 'login-failed' && l.user === 'bob');
    assert.equal(failed.length, 0, 'not scored or audited as a failed login: the credentials were good');
  });

  it('SFTP: the session cannot open, the connection is ended and the slot freed', { timeout: 60_000 }, async () => {
    withoutHome();
    const ssh = await sshConnect({ port: srv.sftpPort, username: 'bob', password: 'bob password' });
    const closed = new Promise<boolean>((r) => ssh.once('close', () => r(true)));
    await assert.rejects(sftpOf(ssh));
    const timer = new Promise<boolean>((r) => setTimeout(() => r(false), 15_000).unref());
    assert.ok(await Promise.race([closed, timer]), 'the connection was ended');
    // Said once, at warn, with its reason: an operator's error alerts are for the server's faults, not a missing home.
    await srv.logs(/"level":40[^\n]*"user":"bob"[^\n]*"reason":"[^"]*home[^\n]*"msg":"session not opened"/);
    assert.doesNotMatch(srv.log, /"level":50[^\n]*"msg":"could not open session"/);
    withHome();
    const ftp = await RawFtp.secureLogin(srv.ftpPort, 'bob', 'bob password', { localAddress: '127.0.0.3' });
    ftp.close();
  });

  it('SFTP: channels opened at once on that connection end its one login once in the audit', { timeout: 60_000 }, async () => {
    withoutHome();
    // From an address of its own: the earlier tests' records (the last of them perhaps not yet written) are not this connection's.
    const ip = '127.0.0.4';
    const ssh = await sshConnect({ port: srv.sftpPort, username: 'bob', password: 'bob password', localAddress: ip });
    ssh.on('error', () => undefined);
    const closed = new Promise<void>((r) => ssh.once('close', () => r()));
    const channels = await Promise.allSettled([sftpOf(ssh), sftpOf(ssh), sftpOf(ssh)]);
    assert.ok(channels.every((c) => c.status === 'rejected'), 'no channel got a session');
    await closed;
    // The home back as soon as the client is gone: channels still opening on the server must not open a session then.
    withHome();
    await srv.auditUntil((l) => l.event === 'logout' && l.ip === ip && String(l.reason).startsWith('session not opened'));
    // A flush later, for any record that would follow it: a fixed wait, as no record is sure to come after
    // a session such a channel would have opened late (the client is gone), nor could the test make one.
    const records = await srv.audit();
    const bySession = new Map<unknown, unknown[]>();
    for (const l of records) {
      if (l.user === 'bob' && l.ip === ip && (l.event === 'login' || l.event === 'logout')) bySession.set(l.session, [...(bySession.get(l.session) ?? []), l.event]);
    }
    assert.equal(bySession.size, 1, 'one connection');
    for (const [session, events] of bySession) assert.deepEqual(events, ['login', 'logout'], `session ${String(session)}`);
  });
});

type Sign = (data: Buffer, cb: (signature: Buffer) => void) => void;
/** ssh2's wire protocol object: lets a test send what a hostile client sends. */
interface ClientProtocol {
  authPK(user: string, key: ssh2.ParsedKey, algo: string | undefined, sign: Sign): void;
}

/**
 * An attacker's loop: signed public-key requests with `name` and a signature
 * of random bytes, one after the other on one connection. OpenSSH and ssh2
 * ask before signing; the attacker does not.
 */
/**
 * `attempts` logins on one connection, each answered before the next: public-key logins signed at once
 * with a key nobody has, or passwords; what was sent when the connection closed, and its error, if any.
 */
function bogusLogins(port: number, name: string, attempts: number, method: 'signed-key' | 'password'): Promise<{ sent: number; error: (Error & { code?: unknown }) | null }> {
  const key = ssh2.utils.parseKey(userKeyPair().private) as ssh2.ParsedKey;
  return new Promise((resolve) => {
    const c = new ssh2.Client();
    let sent = 0;
    let error: (Error & { code?: unknown }) | null = null;
    c.on('error', (err) => (error ??= err));
    c.on('close', () => resolve({ sent, error }));
    c.connect({
      host: '127.0.0.1',
      port,
      username: name,
      readyTimeout: 120_000,
      authHandler: (_methods, _partial, next) => {
        // The first round only gets ssh2's bookkeeping going ("none" is no attempt).
        if (sent === 0 && !started) {
          started = true;
          return next({ type: 'none', username: name });
        }
        if (sent >= attempts) return next(false as never);
        sent++;
        if (method === 'password') return next({ type: 'password', username: name, password: 'not it' });
        (c as unknown as { _protocol: ClientProtocol })._protocol.authPK(name, key, undefined, (_d, cb) => cb(randomBytes(64)));
        return undefined;
      },
    });
    let started = false;
  });
}

describe('failed logins before authentication cannot fill the audit trail', () => {
  let srv: TestServer;
  before(async () => {
    // Without the defender (or for an allow-listed address) only the aggregation bounds the log.
    srv = await TestServer.start({ yaml: 'defender:\n  enabled: false\nauth:\n  maxTries: 100\n  failureDelay: 0\n' });
  });
  after(() => srv.stop());

  it('2,000 bogus SSH password attempts with 30 KB user names add a few KB, then one summary line', { timeout: 300_000 }, async () => {
    const log = join(srv.dir, 'data', 'audit.log');
    await srv.auditUntil((l) => l.event === 'audit-start');
    const before = statSync(log).size;
    const name = 'A'.repeat(30 * 1024);
    let total = 0;
    // auth.maxTries (at most 100) per connection: 20 connections, 5 at a time.
    for (let round = 0; round < 4; round++) {
      const ended = await Promise.all([0, 1, 2, 3, 4].map(() => bogusLogins(srv.sftpPort, name, 100, 'password')));
      total += ended.reduce((a, b) => a + b.sent, 0);
    }
    assert.ok(total >= 1900, `attempts sent: ${total}`);
    // A fixed wait for the flush: what is bounded is all the attempts wrote, and no record is sure to follow
    // them (the window's tally comes at its end) that the test could wait for without adding its own bytes.
    await srv.audit();
    const grown = statSync(log).size - before;
    assert.ok(grown < 20_000, `the audit log grew by ${grown} bytes for ${total} attempts`);
    // The window's tally is written when it ends, at the latest on shutdown.
    await srv.restart();
    // The tally, written at the stop, after every failure of the window.
    const audit = await srv.auditUntil((l) => l.event === 'login-failed-repeated');
    const failed = audit.filter((l) => l.event === 'login-failed');
    assert.ok(failed.length <= 10);
    for (const l of failed) assert.ok(String(l.user).length < 100, 'the name is not written whole');
    const summary = audit.filter((l) => l.event === 'login-failed-repeated');
    assert.equal(summary.length, 1);
    assert.equal(summary[0]?.ip, '127.0.0.1');
    assert.ok((summary[0]?.count as number) + failed.length >= total - 8, 'every failure accounted for');
  });
});

describe('an account disabled between its SFTP login and its first channel', () => {
  it('opens no session, and its login gets its logout', { timeout: 60_000 }, async () => {
    const srv = await TestServer.start({ users: [{ name: 'dave', password: 'dave password' }] });
    try {
      const ssh = await sshConnect({ port: srv.sftpPort, username: 'dave', password: 'dave password' });
      ssh.on('error', () => undefined);
      assert.equal(sluice(srv.dir, ['user', 'disable', 'dave']).code, 0);
      await assert.rejects(sftpOf(ssh));
      ssh.end();
      const records = await srv.auditUntil((l) => l.event === 'logout' && l.user === 'dave');
      const mine = records.filter((l) => l.user === 'dave' && (l.event === 'login' || l.event === 'logout'));
      assert.deepEqual(
        mine.map((l) => l.event),
        ['login', 'logout'],
      );
      assert.match(String(mine[1]?.reason), /^session not opened: account disabled, removed or expired since the login/);
    } finally {
      await srv.stop();
    }
  });
});
