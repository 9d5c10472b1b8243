import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { adminRequest, type AdminTarget } from './helpers/admin-http.js';
import { sluice } from './helpers/cli.js';
import { loggedIn } from './helpers/ftp-raw.js';
import { userKeyPair } from './helpers/ssh.js';
import { freePort, TestServer } from './helpers/server.js';

/*
 * What a review of the user administration found, against the real server,
 * its admin API on the unix socket and the CLI as a process: each rule holds
 * for the API and the CLI alike (both go through UserAdmin).
 */

type Json = { [k: string]: unknown };
const PASSWORD = 'user rules password';
const SOCKET = { SLUICE_ADMIN_LISTEN: './admin.sock' };

describe('user administration: what is refused, API and CLI alike', () => {
  let srv: TestServer;
  let api: AdminTarget;
  let anonRoot: string;
  const call = (method: string, path: string, body?: unknown) => adminRequest(api, method, `/api/v1${path}`, body === undefined ? {} : { body });
  const error = (r: { json: unknown }) => (r.json as { error?: string } | null)?.error ?? '';

  before(async () => {
    anonRoot = mkdtempSync(join(tmpdir(), 'sluice-anon-'));
    srv = await TestServer.start({
      env: SOCKET,
      yaml: `ftp:\n  tls: optional\n  anonymous:\n    enabled: true\n    root: ${anonRoot}\n`,
    });
    api = { socketPath: join(srv.dir, 'admin.sock') };
  });
  after(async () => {
    await srv.stop();
    rmSync(anonRoot, { recursive: true, force: true });
  });

  it('expiresAt: a date the schema passes but no clock has (a leap second) is a 400 naming the field, and an expired account stays expired', { timeout: 60_000 }, async () => {
    const leap = await call('POST', '/users', { name: 'leap', password: PASSWORD, expiresAt: '2016-12-31T23:59:60Z' });
    assert.equal(leap.status, 400, leap.text);
    assert.match(error(leap), /^body\.expiresAt: /);
    assert.equal((await call('GET', '/users/leap')).status, 404, 'nothing written');
    const made = await call('POST', '/users', { name: 'expired', password: PASSWORD, expiresAt: '2020-01-01T00:00:00Z' });
    assert.equal(made.status, 201, made.text);
    const patched = await call('PATCH', '/users/expired', { expiresAt: '2016-12-31T23:59:60Z' });
    assert.equal(patched.status, 400, patched.text);
    assert.match(error(patched), /^body\.expiresAt: /);
    assert.equal(((await call('GET', '/users/expired')).json as Json).expiresAt, '2020-01-01T00:00:00.000Z', 'still expired');
  });

  it('--expires: an impossible day is refused, not rolled into the next month', { timeout: 60_000 }, () => {
    for (const date of ['2026-02-30', '2026-13-01', '2026-04-31T10:00', '2026-01-01T24:30']) {
      const r = sluice(srv.dir, ['user', 'add', 'feb', '--password-stdin', '--expires', date], `${PASSWORD}\n`, SOCKET);
      assert.equal(r.code, 2, `${date}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, /--expires: .* is not a date/);
    }
    const ok = sluice(srv.dir, ['user', 'add', 'leapday', '--password-stdin', '--expires', '2028-02-29'], `${PASSWORD}\n`, SOCKET);
    assert.equal(ok.code, 0, ok.stderr);
  });

  it('the anonymous logins are no user name, and the anonymous account gets no password or key; the server still starts', { timeout: 60_000 }, async () => {
    for (const name of ['FTP', 'ftp', 'Anonymous']) {
      const r = await call('POST', '/users', { name, password: PASSWORD });
      assert.equal(r.status, 400, `${name}: ${r.text}`);
      assert.match(error(r), /^body\.name: .*reserved/);
      const cli = sluice(srv.dir, ['user', 'add', name, '--password-stdin'], `${PASSWORD}\n`, SOCKET);
      assert.equal(cli.code, 2, `${name}: ${cli.stdout}${cli.stderr}`);
      assert.match(cli.stderr, /reserved/);
    }
    const password = await call('PATCH', '/users/anonymous', { password: PASSWORD });
    assert.equal(password.status, 400, password.text);
    // Refused as a whole: a setting given beside the refused password is not written either.
    const before = ((await call('GET', '/users/anonymous')).json as Json).quotaBytes;
    const both = await call('PATCH', '/users/anonymous', { password: PASSWORD, quotaBytes: 12345 });
    assert.equal(both.status, 400, both.text);
    assert.equal(((await call('GET', '/users/anonymous')).json as Json).quotaBytes, before);
    const key = await call('POST', '/users/ANONYMOUS/keys', { key: userKeyPair().public });
    assert.equal(key.status, 400, key.text);
    const passwd = sluice(srv.dir, ['user', 'passwd', 'anonymous', '--password-stdin'], `${PASSWORD}\n`, SOCKET);
    assert.equal(passwd.code, 2, passwd.stdout + passwd.stderr);
    const shown = (await call('GET', '/users/anonymous')).json as Json;
    assert.deepEqual([shown.password, shown.keys], ['none', []]);
    // Its other settings are the administrator's, as the README says.
    assert.equal((await call('PATCH', '/users/anonymous', { quotaBytes: 1_000_000 })).status, 200);
    await srv.restart();
    assert.equal((await call('GET', '/users/anonymous')).status, 200);
  });

  it('a user removed just after logging in leaves no last login to the next user made', { timeout: 60_000 }, async () => {
    assert.equal((await call('POST', '/users', { name: 'first', password: PASSWORD })).status, 201);
    const { public: pub } = userKeyPair();
    const c = await loggedIn(srv.ftpPort, 'first', PASSWORD);
    // Within the 100 ms the last login waits to be written; a key, not a password, so no hashing delays the new user.
    const removed = await call('DELETE', '/users/first');
    assert.equal(removed.status, 200, removed.text);
    c.close();
    const next = await call('POST', '/users', { name: 'second', keys: [pub] });
    assert.equal(next.status, 201, next.text);
    assert.equal((next.json as Json).lastLoginAt, null);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(((await call('GET', '/users/second')).json as Json).lastLoginAt, null, 'nor once written');
  });

  it('the same key twice in one request is named as such, not as a user that exists', { timeout: 60_000 }, async () => {
    const { public: pub } = userKeyPair('twice');
    const r = await call('POST', '/users', { name: 'twokeys', keys: [pub, pub] });
    assert.equal(r.status, 400, r.text);
    assert.match(error(r), /^body\.keys\.1: .*same key as body\.keys\.0/);
    assert.doesNotMatch(error(r), /already exists/);
    assert.equal((await call('GET', '/users/twokeys')).status, 404);
  });

  it('a home that cannot be made is a 400 (exit 2 from the CLI), not a 500', { timeout: 60_000 }, async () => {
    const locked = mkdtempSync(join(tmpdir(), 'sluice-locked-'));
    chmodSync(locked, 0o555);
    try {
      const home = join(locked, 'home');
      const r = await call('POST', '/users', { name: 'nohome', password: PASSWORD, home });
      assert.equal(r.status, 400, r.text);
      assert.equal(error(r), `home "${home}": permission denied`);
      assert.equal((await call('POST', '/users', { name: 'movehome', password: PASSWORD })).status, 201);
      const moved = await call('PATCH', '/users/movehome', { home });
      assert.equal(moved.status, 400, moved.text);
      assert.equal(error(moved), `home "${home}": permission denied`);
      const cli = sluice(srv.dir, ['user', 'add', 'nohome', '--password-stdin', '--home', home], `${PASSWORD}\n`, SOCKET);
      assert.equal(cli.code, 2, cli.stdout + cli.stderr);
      assert.equal(cli.stderr, `sluice: home "${home}": permission denied\n`);
      assert.doesNotMatch(srv.log, /EACCES/, 'no stack in the log');
    } finally {
      chmodSync(locked, 0o755);
      rmSync(locked, { recursive: true, force: true });
    }
  });

  it('control and bidi characters are refused in homes and key comments', { timeout: 60_000 }, async () => {
    const base = mkdtempSync(join(tmpdir(), 'sluice-ctl-'));
    try {
      for (const bad of ['\n', '\x1b[2J', '\x7f', '\x85', '\u202e', '\u2066', '\u2028']) {
        const r = await call('POST', '/users', { name: 'ctl', password: PASSWORD, home: join(base, `a${bad}b`) });
        assert.equal(r.status, 400, `${JSON.stringify(bad)}: ${r.text}`);
        assert.match(error(r), /^body\.home: /);
      }
      assert.equal((await call('POST', '/users', { name: 'ctl', password: PASSWORD })).status, 201);
      const line = userKeyPair().public.split(' ').slice(0, 2).join(' ');
      for (const bad of ['\x1b[31mred', 'a\u202eb', 'x\x00y']) {
        const r = await call('POST', '/users/ctl/keys', { key: `${line} ${bad}` });
        assert.equal(r.status, 400, `${JSON.stringify(bad)}: ${r.text}`);
        assert.match(error(r), /^body\.key: /);
      }
      const cli = sluice(srv.dir, ['user', 'set', 'ctl', '--home', join(base, 'x\x1by')], '', SOCKET);
      assert.equal(cli.code, 2, cli.stdout + cli.stderr);
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  });

  it('user list, show and key list print a stored control character escaped, on its own row', { timeout: 60_000 }, async () => {
    assert.equal((await call('POST', '/users', { name: 'legacy', password: PASSWORD })).status, 201);
    // As written before the check (or straight into the database).
    const db = new Database(join(srv.dir, 'data', 'sluice.db'));
    try {
      db.pragma('busy_timeout = 5000');
      db.prepare('UPDATE users SET home = ? WHERE name = ?').run('/srv/legacy\nroot     enabled  ftp  -  /\x1b[2J', 'legacy');
      db.prepare("INSERT INTO user_keys (user_id, algorithm, public_key, fingerprint, comment, created_at) SELECT id, 'ssh-ed25519', x'00', 'SHA256:fake', ?, 0 FROM users WHERE name = 'legacy'").run('me\x1b]0;owned\x07\u202e');
    } finally {
      db.close();
    }
    for (const args of [['user', 'list'], ['user', 'show', 'legacy'], ['user', 'key', 'list', 'legacy']]) {
      const r = sluice(srv.dir, args, '', SOCKET);
      assert.equal(r.code, 0, r.stderr);
      // eslint-disable-next-line no-control-regex
      assert.doesNotMatch(r.stdout, /[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029]/, `${args.join(' ')}: ${JSON.stringify(r.stdout)}`);
      assert.ok(!/^root /m.test(r.stdout), `${args.join(' ')}: no fake row`);
    }
    assert.match(sluice(srv.dir, ['user', 'list'], '', SOCKET).stdout, /\/srv\/legacy\\nroot +enabled +ftp +- +\/\\x1b\[2J/);
  });

  it('homes from the API are absolute; the CLI takes one relative to its own directory', { timeout: 60_000 }, async () => {
    const r = await call('POST', '/users', { name: 'relative', password: PASSWORD, home: 'homes/relative' });
    assert.equal(r.status, 400, r.text);
    assert.match(error(r), /^body\.home: /);
    assert.equal((await call('POST', '/users', { name: 'relative', password: PASSWORD })).status, 201);
    const p = await call('PATCH', '/users/relative', { home: 'elsewhere' });
    assert.equal(p.status, 400, p.text);
    assert.match(error(p), /^body\.home: /);
    // The CLI runs in the server's directory here (its config is there); its own directory is what counts.
    const cli = sluice(srv.dir, ['user', 'set', 'relative', '--home', 'mine'], '', SOCKET);
    assert.equal(cli.code, 0, cli.stderr);
    assert.equal(((await call('GET', '/users/relative')).json as Json).home, join(srv.dir, 'mine'));
  });
});

describe('the CLI and the admin API on TCP', () => {
  let srv: TestServer;
  let port: number;
  let token: string;
  before(async () => {
    port = await freePort();
    srv = await TestServer.start({ env: { SLUICE_ADMIN_LISTEN: `127.0.0.1:${port}` } });
    token = sluice(srv.dir, ['admin', 'token', 'create', 'ops']).stdout.trim();
  });
  after(async () => {
    await srv.stop();
  });

  it('refuses to ban the address the request comes from (it would lock that client out)', { timeout: 60_000 }, async () => {
    const from = '127.0.0.81';
    const self = await adminRequest({ port, from }, 'POST', '/api/v1/bans', { token, body: { address: from } });
    assert.equal(self.status, 400, self.text);
    assert.match((self.json as Json).error as string, /^body\.address: .*your own address/);
    assert.ok(!srv.bans().includes(from));
    const other = await adminRequest({ port, from }, 'POST', '/api/v1/bans', { token, body: { address: '127.0.0.82' } });
    assert.equal(other.status, 201, other.text);
    // The way out README gives for an address locked out anyway: the store itself, which the running server reads.
    const lift = sluice(srv.dir, ['ban', 'remove', '127.0.0.82'], '', { SLUICE_ADMIN_LISTEN: '' });
    assert.equal(lift.stdout, 'lifted the ban on 127.0.0.82\n', lift.stderr);
    assert.equal((await adminRequest({ port, from: '127.0.0.82' }, 'GET', '/api/v1/server', { token })).status, 200);
    const cli = sluice(srv.dir, ['ban', 'add', '127.0.0.1'], '', { SLUICE_ADMIN_LISTEN: `127.0.0.1:${port}`, SLUICE_ADMIN_TOKEN: token });
    assert.equal(cli.code, 2, cli.stdout + cli.stderr);
    assert.equal((await adminRequest({ port }, 'GET', '/api/v1/server', { token })).status, 200, 'the CLI\u2019s address is not banned');
  });

  it('with no server running, user and ban commands need no token; with one, a missing token is said before anything is sent', { timeout: 60_000 }, async () => {
    const env = { SLUICE_ADMIN_LISTEN: `127.0.0.1:${port}` };
    const running = sluice(srv.dir, ['user', 'disable', 'nobody-here'], '', env);
    assert.equal(running.code, 1, running.stdout + running.stderr);
    assert.match(running.stderr, /set SLUICE_ADMIN_TOKEN/);
    await srv.terminate();
    const ban = sluice(srv.dir, ['ban', 'add', '127.0.0.83'], '', env);
    assert.equal(ban.code, 0, ban.stderr);
    assert.equal(ban.stdout, 'banned 127.0.0.83 until removed\n');
    const add = sluice(srv.dir, ['user', 'add', 'offline', '--password-stdin'], `${PASSWORD}\n`, env);
    assert.equal(add.code, 0, add.stderr);
    assert.equal(sluice(srv.dir, ['user', 'remove', 'offline'], '', env).stdout, 'removed user offline\n');
    const session = sluice(srv.dir, ['session', 'list'], '', env);
    assert.match(session.stderr, /no server is running/);
  });
});
