import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type ssh2 from 'ssh2';
import { RawFtp, listingLines } from './helpers/ftp-raw.js';
import { hasRecord, hookRecorder } from './helpers/hook-recorder.js';
import { persistedUsage } from './helpers/quota.js';
import { TestServer } from './helpers/server.js';
import { call, sftpOf, sshConnect } from './helpers/ssh.js';

/*
 * Names made on the host (another process, a local account) that a client can
 * read in a listing but not give back as the same name: a backslash separates
 * in every path a client gives (Windows clients send them), so `x\y` listed
 * and given back named `x/y`. Found by an adversarial review: a listed `p\q`
 * read another file's bytes (and a DELE or REMOVE of it removed that file);
 * SFTP REALPATH through a link to `x\y` answered that name, and the client's
 * next path led into `x/y`; and a directory holding two directories named
 * `a\..` and `b\..` (each naming the directory holding it again) made
 * `scp -r -f` walk it for ever.
 */
describe('names made on the host that a client would give back as another name', () => {
  let srv: TestServer;
  before(async () => {
    srv = await TestServer.start({ users: [{ name: 'alice', password: 'alice password' }] });
    const home = srv.home('alice');
    mkdirSync(join(home, 'd', 'x'), { recursive: true });
    mkdirSync(join(home, 'd', 'x', 'y'));
    mkdirSync(join(home, 'd', 'x\\y'));
    writeFileSync(join(home, 'd', 'plain.txt'), 'plain');
    writeFileSync(join(home, 'd', 'x\\y', 'f'), 'f in x\\y');
    writeFileSync(join(home, 'd', 'x', 'y', 'f'), 'f in x/y');
    symlinkSync('d/x\\y', join(home, 'link'));
    symlinkSync(join(home, 'd', 'x\\y'), join(home, 'absolute-link'));
    mkdirSync(join(home, 'd', 'p'));
    writeFileSync(join(home, 'd', 'p', 'q'), 'p/q, a file of its own');
    writeFileSync(join(home, 'd', 'p\\q'), 'p\\q');
    mkdirSync(join(home, 'tree', 'a\\..'), { recursive: true });
    mkdirSync(join(home, 'tree', 'b\\..'), { recursive: true });
    writeFileSync(join(home, 'tree', 'f'), 'f');
  });
  after(() => srv.stop());

  it('every name SFTP READDIR and FTP NLST list leads to the entry listed', async () => {
    const conn = await sshConnect({ port: srv.sftpPort, username: 'alice', password: 'alice password' });
    try {
      const s = await sftpOf(conn);
      const listed = await call<ssh2.FileEntryWithStats[]>((cb) => s.readdir('/d', cb));
      for (const entry of listed) {
        const named = await call<ssh2.Stats>((cb) => s.lstat(`/d/${entry.filename}`, cb));
        assert.deepEqual([named.size, named.mode], [entry.attrs.size, entry.attrs.mode], `${entry.filename} listed, but that name leads to another entry`);
      }
      assert.deepEqual(listed.map((e) => e.filename).sort(), ['p', 'plain.txt', 'x']);
    } finally {
      conn.end();
    }
    const c = await RawFtp.secureLogin(srv.ftpPort, 'alice', 'alice password');
    try {
      const names = await listingLines(c, 'NLST d', true);
      assert.deepEqual(names.sort(), ['d/p', 'd/plain.txt', 'd/x']);
    } finally {
      c.close();
    }
  });

  it('SFTP REALPATH through a link to such a name answers the path as asked, which leads where the link does', async () => {
    const conn = await sshConnect({ port: srv.sftpPort, username: 'alice', password: 'alice password' });
    try {
      const s = await sftpOf(conn);
      // As OpenSSH's sftp does for `cd link` and then `get f`.
      const dir = await call<string>((cb) => s.realpath('link', cb));
      assert.equal((await call<Buffer>((cb) => s.readFile(`${dir}/f`, cb))).toString(), 'f in x\\y', `REALPATH answered ${dir}`);
    } finally {
      conn.end();
    }
  });

  it('SFTP READLINK of a link to such a name answers nothing that, given back, leads elsewhere', async () => {
    const conn = await sshConnect({ port: srv.sftpPort, username: 'alice', password: 'alice password' });
    try {
      const s = await sftpOf(conn);
      for (const link of ['/link', '/absolute-link']) {
        // As WinSCP does to open a linked directory: the target read, then used as a path.
        const target = await call<string>((cb) => s.readlink(link, cb)).catch(() => null);
        if (target === null) continue;
        const f = await call<Buffer>((cb) => s.readFile(`${target.startsWith('/') ? '' : '/'}${target}/f`, cb)).catch((e: unknown) => String(e));
        assert.equal(f.toString(), 'f in x\\y', `READLINK ${link} answered ${target}`);
      }
    } finally {
      conn.end();
    }
  });

  it('scp -r -f of a directory holding such names sends it once and ends', async () => {
    const conn = await sshConnect({ port: srv.sftpPort, username: 'alice', password: 'alice password' });
    try {
      const ch = await new Promise<ssh2.ClientChannel>((resolve, reject) => conn.exec('scp -r -f /tree', (err, c) => (err ? reject(err) : resolve(c))));
      let got = '';
      const sent = new Promise<string>((resolve, reject) => {
        ch.on('data', (d: Buffer) => {
          got += d.toString('latin1');
          // The whole tree is 30 bytes or so; a walk that never ends is stopped here rather than by the test's timeout.
          if (got.length > 64 * 1024) reject(new Error(`scp -r sent ${got.length} bytes and goes on: ${JSON.stringify(got.slice(0, 120))}...`));
          // Each line and each file's bytes is answered OK, as OpenSSH's scp does.
          else ch.write(Buffer.from([0]));
        });
        ch.on('close', () => resolve(got));
      });
      ch.write(Buffer.from([0]));
      assert.equal(await sent, 'D0755 0 tree\nC0644 1 f\nf\0E\n');
    } finally {
      conn.end();
    }
  });
});

/*
 * A directory renamed on the host while an upload into it runs: the upload's
 * record names where its file is at the end, and so do its hooks' {path}. A
 * review had the host rename the directory to `Q<LF><ESC>[31mFAKE LINE`
 * meanwhile: the line break and the escape reached the hook's argv as they
 * were (a forged line in what it writes), where a client's words are escaped.
 */
describe('a path that names what no client may give reaches hooks escaped', () => {
  let srv: TestServer;
  let dir: string;
  const out = () => join(dir, 'runs.jsonl');
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-host-names-'));
    const yaml = [
      'hooks:',
      '  actions:',
      '    - name: record',
      '      on: [upload]',
      `      command: ['${process.execPath}', '${hookRecorder(dir)}', '${out()}', '{path}']`,
      '',
    ].join('\n');
    srv = await TestServer.start({ yaml, users: [{ name: 'alice', password: 'alice password' }] });
    mkdirSync(join(srv.home('alice'), 'work'));
  });
  after(async () => {
    await srv?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('SFTP upload whose directory the host renamed to a name with a line break and ESC meanwhile', async () => {
    const conn = await sshConnect({ port: srv.sftpPort, username: 'alice', password: 'alice password' });
    try {
      const s = await sftpOf(conn);
      const handle = await call<Buffer>((cb) => s.open('/work/f', 'w', cb));
      await call((cb) => s.write(handle, Buffer.from('data'), 0, 4, 0, cb));
      renameSync(join(srv.home('alice'), 'work'), join(srv.home('alice'), 'Q\n\x1b[31mFAKE LINE'));
      await call((cb) => s.close(handle, cb));
    } finally {
      conn.end();
    }
    for (const t0 = Date.now(); !hasRecord(out()) && Date.now() - t0 < 10_000; ) await new Promise((r) => setTimeout(r, 50));
    const [path] = JSON.parse(readFileSync(out(), 'utf8').split('\n')[0] as string) as string[];
    assert.equal(path, '/Q\\n\\x1b[31mFAKE LINE/f');
  });
});

/*
 * Such names, and those an older version let clients make before their
 * characters were refused (a zero width space), are reached by nobody but the
 * operator: the start says how many each home holds, with one shown escaped.
 */
describe('names no client may give, found at the start', () => {
  let srv: TestServer;
  before(async () => {
    srv = await TestServer.start({ users: [{ name: 'alice', password: 'alice password' }, { name: 'carol', password: 'carol password' }] });
  });
  after(() => srv.stop());

  it('are counted per home in a warning', async () => {
    const home = srv.home('alice');
    await srv.restart(() => {
      mkdirSync(join(home, 'sub\\dir'));
      writeFileSync(join(home, 'sub\\dir', 'inside.txt'), 'x');
      writeFileSync(join(home, 'invoice\u200b.pdf'), 'look-alike');
      writeFileSync(join(home, 'invoice.pdf'), 'the real one');
    });
    await srv.logs(/no client may give/);
    const line = srv.log.split('\n').find((l) => l.includes('no client may give'));
    const warning = JSON.parse(line ?? '{}') as Record<string, unknown>;
    assert.equal(warning.names, 2, line);
    assert.equal(warning.level, 40, line);
    // Shown as a terminal may print it: the backslash doubled, the zero width space an escape.
    assert.ok(warning.example === 'sub\\\\dir' || warning.example === 'invoice\\u{200b}.pdf', line);
  });

  // Names of bytes that are no UTF-8 (Latin-1 ones): read as text, each such byte was U+FFFD, and the sweep
  // counted `caf<U+FFFD>` for both Latin-1 names and did not walk the directory (found by a review).
  it('of bytes that are no UTF-8 are counted whole in the recounted usage, and temporaries under them removed', async () => {
    const home = srv.home('carol');
    const bytes = (...parts: (string | Buffer)[]) => Buffer.concat([Buffer.from(`${home}/`), ...parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : p))]);
    const latin1 = (text: string) => Buffer.from(text, 'latin1');
    const temp = bytes(latin1('bad\xe9dir'), '/.sluice-upload-left');
    await srv.restart(() => {
      writeFileSync(bytes(latin1('caf\xe9')), 'x'.repeat(10));
      writeFileSync(bytes(latin1('caf\xe8')), 'x'.repeat(20));
      writeFileSync(bytes('caf\ufffd'), 'x'.repeat(5));
      mkdirSync(bytes(latin1('bad\xe9dir')));
      writeFileSync(bytes(latin1('bad\xe9dir'), '/f'), 'x'.repeat(100));
      writeFileSync(temp, 'partial');
    });
    assert.deepEqual(persistedUsage(srv, 'carol'), { bytes: 135, files: 5 });
    assert.equal(existsSync(temp), false, 'the temporary under the Latin-1 directory was removed');
  });
});
