import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { ServerPlaces, kernelFileSystem } from '../src/session/storage/server-places.js';
import { hookNamedFiles, hookSearchPath } from '../src/hooks/named-files.js';
import { sluice } from './helpers/cli.js';
import { RawFtp } from './helpers/ftp-raw.js';
import { TestServer } from './helpers/server.js';
import { REPO } from './helpers/repo.js';
import type ssh2 from 'ssh2';
import { call, sshConnect } from './helpers/ssh.js';

/** Point `user`'s home at `home` in sluice.db, as a release before the check stored it, or an edit of the database. */
function storedHome(srv: TestServer, user: string, home: string): void {
  const db = new Database(join(srv.dir, 'data', 'sluice.db'));
  try {
    db.pragma('busy_timeout = 5000');
    assert.equal(db.prepare('UPDATE users SET home = ? WHERE name = ?').run(home, user).changes, 1);
  } finally {
    db.close();
  }
}

/*
 * Administration refuses a home that holds the server's own files, but a
 * home stored before that check (or a config changed later, naming a hook
 * program inside an existing home) is only met at login: the login must not
 * open it, over any protocol.
 */
describe("a stored home that holds the server's own files is not opened at login", () => {
  let srv: TestServer;
  let outside: string;
  const script = () => join(outside, 'hooks', 'notify.sh');
  const storeHome = (user: string, home: string) => storedHome(srv, user, home);
  const passReply = async (user: string, password: string) => {
    const c = await RawFtp.connect(srv.ftpPort, false);
    await c.read();
    const reply = await c.login(user, password);
    c.close();
    return reply.code;
  };
  before(async () => {
    outside = mkdtempSync(join(tmpdir(), 'sluice-old-home-'));
    for (const d of ['hooks', 'shelled', 'beside']) mkdirSync(join(outside, d));
    writeFileSync(script(), '#!/bin/sh\n', { mode: 0o755 });
    const yaml = [
      'auth:',
      '  failureDelay: 0',
      'limits:',
      '  loginTimeout: 3',
      'defender:',
      '  threshold: 2',
      'hooks:',
      '  actions:',
      '    - name: notify',
      '      on: [upload]',
      `      command: ['${script()}', '{path}']`,
      // Found by a review: a script named relative to the server's directory, or inside a shell command, was no server file.
      '    - name: relative',
      '      on: [upload]',
      "      command: ['/bin/sh', './scripts/relative.sh', '{path}']",
      '    - name: shelled',
      '      on: [upload]',
      `      command: ['/bin/sh', '-c', '${join(outside, 'shelled', 'run.sh')} "$1"', 'sh', '{path}']`,
      '',
    ].join('\n');
    srv = await TestServer.start({
      yaml,
      env: { SLUICE_FTP_TLS: 'optional' },
      users: ['older', 'relative', 'shelled', 'beside', 'other', 'kernel'].map((name) => ({ name, password: `${name} password`, args: ['--protocols', 'ftp,ftps,sftp'] })),
    });
    mkdirSync(join(srv.dir, 'scripts'));
    storeHome('older', join(outside, 'hooks'));
    storeHome('relative', join(srv.dir, 'scripts'));
    storeHome('shelled', join(outside, 'shelled'));
    storeHome('beside', join(outside, 'beside'));
    storeHome('kernel', '/proc/self');
  });
  after(async () => {
    await srv.stop();
    rmSync(outside, { recursive: true, force: true });
  });

  it('FTP: the password is right, the home is refused, nothing in it reached', { timeout: 60_000 }, async () => {
    const c = await RawFtp.connect(srv.ftpPort, false);
    assert.equal((await c.read())?.code, 220);
    const reply = await c.login('older', 'older password');
    assert.equal(reply.code, 451, reply.text);
    assert.notEqual((await c.cmd('STOR notify.sh')).code, 150, 'no upload without a session');
    c.close();
    assert.equal(readFileSync(script(), 'utf8'), '#!/bin/sh\n');
    await srv.logs(/"reason":"home [^"]* would hold the server's own [^"]*notify\.sh \(named by hook notify\)"/);
  });

  it('a script named relative to the server, or in a shell command, is a server file too; a directory beside them is not', { timeout: 60_000 }, async () => {
    assert.equal(await passReply('relative', 'relative password'), 451);
    assert.equal(await passReply('shelled', 'shelled password'), 451);
    assert.equal(await passReply('beside', 'beside password'), 230);
    const added = sluice(srv.dir, ['user', 'add', 'newbie', '--password-stdin', '--home', join(srv.dir, 'scripts')], 'newbie password\n');
    assert.notEqual(added.code, 0, 'the CLI refuses it too');
    assert.match(added.stderr, /would hold the server's own/);
  });

  it("a home in a hook's script directory is refused naming the hook and what to do, not the directory alone", { timeout: 60_000 }, () => {
    // Found by an operator's walk: a hook's script put beside the data directory refused every default home with
    // "would lie in the server's own /srv/sluice", nothing saying that the hook made that directory the server's.
    const added = sluice(srv.dir, ['user', 'add', 'beside2', '--password-stdin', '--home', join(outside, 'hooks', 'sub')], 'beside2 password\n');
    assert.equal(added.code, 2, added.stderr);
    assert.match(added.stderr, /would lie in the server's own \S*hooks \(hook notify may load code from there: give its program or script a directory of its own/);
  });

  it('SFTP: no session opens', { timeout: 60_000 }, async () => {
    const conn = await sshConnect({ port: srv.sftpPort, username: 'older', password: 'older password' }).catch((err: Error) => err);
    if (!(conn instanceof Error)) {
      const opened = await new Promise<boolean>((resolve) => conn.sftp((err) => resolve(!err)));
      conn.end();
      assert.equal(opened, false, 'the sftp subsystem must not start on that home');
    }
  });

  it('retries on one connection are bounded by auth.maxTries; the deadline after them scores nothing', { timeout: 60_000 }, async () => {
    // Found by a review: each 451 left the connection open for unlimited retries, and its login deadline
    // then scored a login-timeout, so a client with good credentials was banned (threshold 2 here).
    for (let round = 0; round < 2; round++) {
      const c = await RawFtp.connect(srv.ftpPort, false, '127.0.0.7');
      await c.read();
      const codes = [];
      for (let i = 0; i < 4; i++) codes.push((await c.login('older', 'older password').catch(() => null))?.code ?? 'closed');
      assert.deepEqual(codes, [451, 451, 451, 421], 'three tries, then closed');
      c.close();
    }
    const idle = await RawFtp.connect(srv.ftpPort, false, '127.0.0.7');
    await idle.read();
    assert.equal((await idle.login('older', 'older password')).code, 451);
    await new Promise((r) => setTimeout(r, 4500));
    assert.equal(await RawFtp.greeting(srv.ftpPort, '127.0.0.7'), 220, 'not banned');
    idle.close();
    // A ban at the idle connection's deadline would be recorded by now: a failed login from another
    // address, made now, is recorded after it, and waited for.
    const later = await RawFtp.connect(srv.ftpPort, false, '127.0.0.9');
    await later.read();
    assert.equal((await later.login('nobody', 'no password')).code, 530);
    later.close();
    assert.ok(!(await srv.auditUntil((r) => r.event === 'login-failed' && r.ip === '127.0.0.9')).some((r) => r.event === 'ban'));
  });

  it('a home in the kernel\'s /proc, /sys or /dev is refused: at login, and by the CLI', { timeout: 60_000 }, async () => {
    // Found by a review: a home of /proc/self served the server's own memory over SFTP, /mem read and written.
    const conn = await sshConnect({ port: srv.sftpPort, username: 'kernel', password: 'kernel password' }).catch((err: Error) => err);
    if (!(conn instanceof Error)) {
      const environ = await new Promise<string>((resolve) =>
        conn.sftp((err, sftp) => (err ? resolve(`no session: ${err.message}`) : sftp.readFile('/environ', (e, data) => resolve(e ? `refused: ${e.message}` : data.toString('latin1'))))),
      );
      conn.end();
      assert.match(environ, /^no session/, 'the sftp subsystem must not start on /proc/self');
    }
    assert.equal(await passReply('kernel', 'kernel password'), 451);
    await srv.logs(/"reason":"home \/proc\/\d+ would lie in the kernel's \/proc"/);
    for (const home of ['/proc/self', '/proc', '/sys/kernel', '/dev/shm/x', '/dev']) {
      const added = sluice(srv.dir, ['user', 'add', 'kernel2', '--password-stdin', '--home', home], 'kernel2 password\n');
      assert.equal(added.code, 2, `${home}: ${added.stderr}`);
      assert.match(added.stderr, /would lie in the kernel's \/(proc|sys|dev)/);
    }
  });

  it("a home that is, holds or lies in the server's program is refused", { timeout: 60_000 }, () => {
    // Found by a review: a user made through the API with its home at the checkout's dist/ overwrote bin.cjs over SFTP.
    const install = REPO;
    for (const home of [join(install, 'dist'), join(install, 'node_modules', 'ssh2'), join(install, 'migrations'), install, dirname(realpathSync(process.execPath))]) {
      const added = sluice(srv.dir, ['user', 'add', 'coder', '--password-stdin', '--home', home], 'coder password\n');
      assert.equal(added.code, 2, `${home}: ${added.stderr}`);
      assert.match(added.stderr, /(would hold|would lie in) the server's own/);
    }
  });

  it("a home that is or holds the server account's home, or lies in a hidden directory of it, is refused; one elsewhere in it is not", { timeout: 60_000 }, () => {
    // Found by an adversarial review: what runs as the server reads its settings there (a hook's curl its ~/.curlrc,
    // sshd the account's .ssh/authorized_keys), which such a home's user could write.
    const account = process.env.HOME as string;
    const refusals: [string, RegExp][] = [
      // Refused for holding Node's ~/.node_modules as well, which comes first.
      [account, /would hold the server's own/],
      [dirname(account), /would hold the server's own/],
      [join(account, '.config', 'curl'), /would lie in a hidden directory of the server's own \S+ \(the server account's home/],
      [join(account, '.ssh'), /would lie in a hidden directory of the server's own \S+ \(the server account's home/],
    ];
    for (const [home, why] of refusals) {
      const added = sluice(srv.dir, ['user', 'add', 'dotty', '--password-stdin', '--home', home], 'dotty password\n');
      assert.equal(added.code, 2, `${home}: ${added.stderr}`);
      assert.match(added.stderr, why);
    }
    const inside = sluice(srv.dir, ['user', 'add', 'dotty', '--password-stdin', '--home', join(account, 'ftp', 'dotty')], 'dotty password\n');
    assert.equal(inside.code, 0, inside.stderr);
  });

  it('everyone else logs in as before', { timeout: 60_000 }, async () => {
    assert.equal(await passReply('other', 'other password'), 230);
  });

  it('the next start says which users every login will refuse, once each, before the first attempt', { timeout: 60_000 }, async () => {
    // Found by an operator's walk: a quarantine configured inside a home locked its user out, said only at each login.
    await srv.restart();
    const lines = srv.log.split('\n').filter((l) => l.includes('every login of'));
    const users = lines.map((l) => (JSON.parse(l) as { user: string }).user).sort();
    assert.deepEqual(users, ['kernel', 'older', 'relative', 'shelled']);
    assert.match(lines.find((l) => l.includes('"older"')) ?? '', /would hold the server's own [^"]*notify\.sh \(named by hook notify\): every login of older is refused until the home or the configured place moves/);
  });
});

describe('ServerPlaces, hookNamedFiles', () => {
  it('exempts homes/ of the data directory only, not a server directory configured under it', () => {
    const data = mkdtempSync(join(tmpdir(), 'sluice-places-'));
    try {
      const places = new ServerPlaces(data, [data, join(data, 'homes', 'quarantine')]);
      assert.equal(places.conflict(join(data, 'homes', 'alice')), null);
      assert.match(places.conflict(join(data, 'homes', 'quarantine', 'evil')) ?? '', /would lie in the server's own .*quarantine/);
      assert.match(places.conflict(join(data, 'homes')) ?? '', /the server's own/, 'homes/ itself is no home');
    } finally {
      rmSync(data, { recursive: true, force: true });
    }
  });
  it('knows the kernel\'s file systems by their statfs type, wherever they are mounted', async () => {
    assert.equal(await kernelFileSystem('/proc'), 'proc');
    assert.equal(await kernelFileSystem('/sys'), 'sysfs');
    assert.equal(await kernelFileSystem(tmpdir()), null);
  });
  it('names the program as PATH finds it and every path in the arguments, placeholders aside', () => {
    const files = hookNamedFiles(['sh', '-c', '/opt/x/run.sh "{path}" > /var/log/x.log; ./local/y.sh', '{path}', '/srv/{user}/z'], '/nonexistent:/bin');
    assert.deepEqual(files, ['/bin/sh', '/opt/x/run.sh', '/var/log/x.log', join(process.cwd(), 'local/y.sh')]);
  });
  it("keeps homes from being or holding the PATH hooks run with, an empty or relative entry the working directory's; one inside is free", () => {
    assert.deepEqual(hookSearchPath('/opt/bin::rel:/opt/bin'), ['/opt/bin', process.cwd(), join(process.cwd(), 'rel')]);
    const data = mkdtempSync(join(tmpdir(), 'sluice-places-'));
    try {
      const bin = join(data, 'bin');
      const places = new ServerPlaces(join(data, 'data'), [{ path: bin, what: 'in the PATH', holdOnly: true }]);
      assert.match(places.conflict(bin) ?? '', /would hold the server's own \S*bin \(in the PATH\)/);
      assert.match(places.conflict(data) ?? '', /would hold/);
      assert.equal(places.conflict(join(bin, 'alice')), null);
      assert.match(places.conflict(join(bin, '.config', 'alice')) ?? '', /would lie in a hidden directory of the server's own \S*bin/);
      assert.equal(places.conflict(join(bin, 'a.b', '.c')), null, 'a hidden entry further down is the home\'s own');
      const hiddenData = new ServerPlaces(join(bin, '.local', 'sluice'), [{ path: bin, what: 'an account home', holdOnly: true }]);
      assert.equal(hiddenData.conflict(join(bin, '.local', 'sluice', 'homes', 'alice')), null, 'the default homes of a data directory kept in a hidden one');
    } finally {
      rmSync(data, { recursive: true, force: true });
    }
  });
});

/*
 * Found by an adversarial review: what a hook runs by a bare name (its
 * program, or one its script calls) is looked for in PATH at each run, and
 * a home at a directory of PATH (a ~/bin of the service account) let its
 * user upload a file of that name, chmod it 755, and have it run as the
 * server at the next event. Such a home now opens no session.
 */
describe('a home at a directory of the PATH hooks run with', () => {
  let srv: TestServer;
  const bin = mkdtempSync(join(tmpdir(), 'sluice-path-home-'));
  const marker = join(bin, 'ran-as-server');
  before(async () => {
    chmodSync(bin, 0o777);
    srv = await TestServer.start({
      env: { PATH: `${bin}:${process.env.PATH ?? ''}` },
      yaml: ['hooks:', '  actions:', '    - name: note', '      on: [login]', "      command: ['/bin/sh', '-c', 'sluice-test-notify']", ''].join('\n'),
      users: [{ name: 'pathy', password: 'pathy password', args: ['--perms', 'list,download,upload,overwrite,chmod'] }],
    });
    // The CLI refuses it now (see below): stored as an older release took it.
    storedHome(srv, 'pathy', bin);
  });
  after(async () => {
    await srv.stop();
    rmSync(bin, { recursive: true, force: true });
  });

  it('opens no session: its user cannot put there a program that a hook runs', { timeout: 60_000 }, async () => {
    const conn = await sshConnect({ port: srv.sftpPort, username: 'pathy', password: 'pathy password' });
    const sftp = await new Promise<ssh2.SFTPWrapper | null>((resolve) => conn.sftp((err, s) => resolve(err ? null : s)));
    if (sftp) {
      // What the user could do with it: the program the hook's script calls, of their own, run at the next login.
      await call((cb) => sftp.writeFile('/sluice-test-notify', `#!/bin/sh\nid > ${marker}\n`, cb));
      await call((cb) => sftp.chmod('/sluice-test-notify', 0o755, cb));
      conn.end();
      (await sshConnect({ port: srv.sftpPort, username: 'pathy', password: 'pathy password' })).end();
      const ran = () => (existsSync(marker) ? readFileSync(marker, 'utf8') : '');
      for (let i = 0; i < 100 && ran() === ''; i++) await new Promise((r) => setTimeout(r, 100));
      assert.fail(`a session opened on a home in the hooks' PATH; the hook ran the user's file: ${ran() || 'not yet'}`);
    }
    conn.end();
    await srv.logs(/"reason":"home [^"]* would hold the server's own [^"]*sluice-path-home-[^"]* \(in the PATH hook commands run with/);
    const added = sluice(srv.dir, ['user', 'add', 'pathy2', '--password-stdin', '--home', bin], 'pathy2 password\n', { PATH: `${bin}:${process.env.PATH ?? ''}` });
    assert.notEqual(added.code, 0, 'the CLI refuses it too');
    assert.match(added.stderr, /would hold the server's own \S*sluice-path-home-\S* \(in the PATH hook commands run with/);
  });
});
