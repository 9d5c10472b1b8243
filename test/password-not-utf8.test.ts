import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { BIN } from './helpers/cli.js';
import { adminRequest } from './helpers/admin-http.js';
import { RawFtp } from './helpers/ftp-raw.js';
import { TestServer } from './helpers/server.js';

/*
 * `sluice user add|passwd --password-stdin` reads bytes. Bytes that are not
 * UTF-8 (a Latin-1 terminal's "pässword1", a file in another encoding) were
 * decoded with U+FFFD for each bad byte: "p\xe4ssword1" and "p\xf6ssword1"
 * became one password, p\uFFFDssword1, which any byte that is not UTF-8 in
 * that place matched at login (the FTP and SSH front-ends decode alike). A
 * password that cannot be read as it was given is refused, not changed.
 */
describe('sluice user add --password-stdin with bytes that are not UTF-8', () => {
  let srv: TestServer;
  const add = (name: string, input: Buffer) =>
    spawnSync(process.execPath, [BIN, 'user', 'add', name, '--password-stdin'], {
      cwd: srv.dir,
      input,
      encoding: 'utf8',
      // The store itself, not the running server's API (user add writes the store in either case).
      env: { ...process.env, SLUICE_LOG_LEVEL: 'warn', SLUICE_ADMIN_LISTEN: '' },
      timeout: 60_000,
    });
  const ftpLogin = async (user: string, password: Buffer) => {
    const c = await RawFtp.connect(srv.ftpPort);
    try {
      await c.read();
      await c.cmd(`USER ${user}`);
      c.send(Buffer.concat([Buffer.from('PASS '), password, Buffer.from('\r\n')]));
      return (await c.read())?.code;
    } finally {
      c.close();
    }
  };

  before(async () => {
    srv = await TestServer.start({ yaml: 'ftp:\n  tls: optional\n', env: { SLUICE_ADMIN_LISTEN: './admin.sock' } });
  });
  after(async () => {
    await srv?.stop();
  });

  it('is refused, so no other bytes log in as that password', { timeout: 60_000 }, async () => {
    const r = add('lat', Buffer.from('p\xe4ssword1\n', 'latin1'));
    if (r.status === 0) {
      // What the code before did: the user was made; a login with a byte that is not the one given goes through.
      assert.notEqual(await ftpLogin('lat', Buffer.from('p\xf6ssword1', 'latin1')), 230, 'logged in with "p\\xf6ssword1", a password never given');
    }
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /^sluice: the password is not UTF-8/);
    assert.equal(await ftpLogin('lat', Buffer.from('p\xe4ssword1', 'latin1')), 530, 'no user made');
  });

  it('a password in UTF-8 still works, and only as given', { timeout: 60_000 }, async () => {
    const r = add('utf', Buffer.from('pässword1\n', 'utf8'));
    assert.equal(r.status, 0, r.stderr);
    assert.equal(await ftpLogin('utf', Buffer.from('pässword1', 'utf8')), 230);
    assert.equal(await ftpLogin('utf', Buffer.from('p\xe4ssword1', 'latin1')), 530);
  });

  it('the admin API likewise: a JSON body whose password is not UTF-8 is a 400 naming it, and no user is made', { timeout: 60_000 }, async () => {
    const api = { socketPath: join(srv.dir, 'admin.sock') };
    const body = Buffer.concat([Buffer.from('{"name":"latapi","password":"p'), Buffer.from([0xe4]), Buffer.from('ssword1"}')]);
    const r = await adminRequest(api, 'POST', '/api/v1/users', { rawBody: body });
    if (r.status === 201) assert.notEqual(await ftpLogin('latapi', Buffer.from('p\xf6ssword1', 'latin1')), 230, 'logged in with "p\\xf6ssword1", a password never given');
    assert.equal(r.status, 400, r.text);
    // Refused by the body's parser since the API reads bodies as UTF-8 strictly (whatever the field).
    assert.equal((r.json as { error: string }).error, 'body.password: not UTF-8: send JSON in UTF-8');
    assert.equal((await adminRequest(api, 'GET', '/api/v1/users/latapi')).status, 404);
  });

  it('a password or home holding half of a UTF-16 surrogate pair (a JSON escape) is a 400, not the same text as U+FFFD', { timeout: 60_000 }, async () => {
    // Found by a review: UTF-8 writes each lone surrogate as U+FFFD, so this password let in any two bytes that are not UTF-8.
    const api = { socketPath: join(srv.dir, 'admin.sock') };
    const post = (body: string) => adminRequest(api, 'POST', '/api/v1/users', { rawBody: Buffer.from(body) });
    const password = await post('{"name":"surrogate","password":"secret-pw\\ud800\\udbff"}');
    if (password.status === 201) assert.notEqual(await ftpLogin('surrogate', Buffer.from([...Buffer.from('secret-pw'), 0xc0, 0x80])), 230, 'logged in with bytes that are not UTF-8');
    assert.equal(password.status, 400, password.text);
    assert.match((password.json as { error: string }).error, /^body\.password: the password holds half of a UTF-16 surrogate pair/);
    const home = await post(`{"name":"surrogate","password":"secret-pw-1","home":"${join(srv.dir, 'h')}\\udfff"}`);
    assert.equal(home.status, 400, home.text);
    assert.match((home.json as { error: string }).error, /the home holds half of a UTF-16 surrogate pair/);
    assert.equal((await adminRequest(api, 'GET', '/api/v1/users/surrogate')).status, 404);
    // A pair whole is a character like any other.
    assert.equal((await post('{"name":"surrogate","password":"secret-pw-\\ud83d\\ude00"}')).status, 201);
  });

  // Found by a review of the refusal of U+FFFD in homes: a home stored before it, sent back as it was read
  // (GET, then PATCH with it and the change), was a 400 "not UTF-8", the change with it. A new one still is.
  it('a home holding U+FFFD stored before such homes were refused may be sent back as it stands', { timeout: 60_000 }, async () => {
    const api = { socketPath: join(srv.dir, 'admin.sock') };
    assert.equal(add('storedhome', Buffer.from('secret-pw-2\n')).status, 0);
    const home = join(srv.dir, 'donn\uFFFDes');
    mkdirSync(home);
    const db = new Database(join(srv.dir, 'data', 'sluice.db'));
    try {
      db.pragma('busy_timeout = 10000');
      db.prepare('UPDATE users SET home = ? WHERE name = ?').run(home, 'storedhome');
    } finally {
      db.close();
    }
    const shown = await adminRequest(api, 'GET', '/api/v1/users/storedhome');
    assert.equal((shown.json as { home: string }).home, home);
    const again = await adminRequest(api, 'PATCH', '/api/v1/users/storedhome', { body: { home, quotaFiles: 7 } });
    assert.equal(again.status, 200, again.text);
    assert.deepEqual([(again.json as { home: string }).home, (again.json as { quotaFiles: number }).quotaFiles], [home, 7]);
    const other = await adminRequest(api, 'PATCH', '/api/v1/users/storedhome', { body: { home: join(srv.dir, 'autre\uFFFD') } });
    assert.equal(other.status, 400, other.text);
    assert.match((other.json as { error: string }).error, /^body\.home: the home is not UTF-8/);
  });
});
