import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type ssh2 from 'ssh2';
import { advertisedExtensions } from '../src/sftp/handlers.js';
import { hasUnsafeChar } from '../src/session/unsafe-chars.js';
import { sluice } from './helpers/cli.js';
import { diskUsage, persistedUsage } from './helpers/quota.js';
import { TestServer } from './helpers/server.js';
import { call, sftpOf, sftpPackets, sshConnect } from './helpers/ssh.js';

const FXP = { INIT: 1, VERSION: 2, OPEN: 3, CLOSE: 4, OPENDIR: 11, STATUS: 101, HANDLE: 102, NAME: 104, EXTENDED: 200, EXTENDED_REPLY: 201 };
const OK = 0;
const OP_UNSUPPORTED = 8;
const READ = 0x01;
const WRITE_CREATE_TRUNCATE = 0x02 | 0x08 | 0x10;

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
};
const u64 = (n: number) => Buffer.concat([u32(Math.floor(n / 2 ** 32)), u32(n)]);
const str = (s: Buffer | string) => {
  const b = typeof s === 'string' ? Buffer.from(s, 'utf8') : s;
  return Buffer.concat([u32(b.length), b]);
};
const frame = (type: number, body: Buffer) => Buffer.concat([u32(body.length + 1), Buffer.from([type]), body]);
const NO_ATTRS = u32(0);

/** A raw SFTP channel: INIT sent, VERSION's extensions read, then one request at a time. */
class Raw {
  private nextId = 1;
  private constructor(
    readonly channel: ssh2.ClientChannel,
    private readonly next: () => Promise<Buffer>,
    readonly extensions: [string, string][],
  ) {}

  static async open(client: ssh2.Client): Promise<Raw> {
    const channel = await call<ssh2.ClientChannel>((cb) => client.subsys('sftp', cb));
    const next = sftpPackets(channel);
    channel.write(frame(FXP.INIT, u32(3)));
    const version = await next();
    assert.equal(version[0], FXP.VERSION);
    assert.equal(version.readUInt32BE(1), 3);
    const extensions: [string, string][] = [];
    for (let at = 5; at < version.length; ) {
      const fields: string[] = [];
      for (let i = 0; i < 2; i++) {
        const n = version.readUInt32BE(at);
        fields.push(version.subarray(at + 4, at + 4 + n).toString('utf8'));
        at += 4 + n;
      }
      extensions.push(fields as [string, string]);
    }
    return new Raw(channel, next, extensions);
  }

  /** The next packet the server sends, for a request written by hand. */
  nextReply(): Promise<Buffer> {
    return this.next();
  }

  /** Send one request, return its reply's type and what follows the id. */
  async request(type: number, body: Buffer): Promise<{ type: number; body: Buffer }> {
    const id = this.nextId++;
    this.channel.write(frame(type, Buffer.concat([u32(id), body])));
    const reply = await this.next();
    assert.equal(reply.readUInt32BE(1), id, 'the reply carries the request id');
    return { type: reply[0] as number, body: reply.subarray(5) };
  }

  /** Open, and remember the handle for closeAll(). */
  async handle(type: number, body: Buffer): Promise<Buffer> {
    const r = await this.request(type, body);
    assert.equal(r.type, FXP.HANDLE, `a handle (got ${r.type}, status ${r.type === FXP.STATUS ? r.body.readUInt32BE(0) : '-'})`);
    const handle = r.body.subarray(4, 4 + r.body.readUInt32BE(0));
    this.opened.push(handle);
    return handle;
  }

  private readonly opened: Buffer[] = [];

  async closeAll(): Promise<void> {
    for (const handle of this.opened.splice(0)) assert.equal(status(await this.request(FXP.CLOSE, str(handle))).code, OK);
  }
}

function status(reply: { type: number; body: Buffer }): { code: number; message: string; language: string } {
  assert.equal(reply.type, FXP.STATUS, `a STATUS reply (got ${reply.type})`);
  const b = reply.body;
  const n = b.readUInt32BE(4);
  const message = b.subarray(8, 8 + n).toString('utf8');
  const m = b.readUInt32BE(8 + n);
  return { code: b.readUInt32BE(0), message, language: b.subarray(12 + n, 12 + n + m).toString('utf8') };
}

describe('SFTP protocol edges, against the running server', () => {
  let srv: TestServer;
  let client: ssh2.Client;
  let sftp: ssh2.SFTPWrapper;

  before(async () => {
    srv = await TestServer.start({
      // The short-packet test opens a channel per case on one connection.
      yaml: 'sftp:\n  maxChannelsPerConnection: 100\n',
      users: [
        { name: 'pat', password: 'pat password', args: ['--perms', 'all'] },
        { name: 'quoted', password: 'quoted password', args: ['--quota-bytes', String(1024 * 1024), '--quota-files', '10'] },
        { name: 'copier', password: 'copier password', args: ['--perms', 'all', '--quota-bytes', String(1024 * 1024)] },
        { name: 'opener', password: 'opener password', args: ['--perms', 'all', '--quota-bytes', String(1024 * 1024), '--quota-files', '10'] },
        { name: 'reader', password: 'reader password', args: ['--perms', 'all'] },
        // A drop box: may only upload into /incoming.
        { name: 'dropper', password: 'dropper password', args: ['--perms', 'none'] },
      ],
    });
    client = await sshConnect({ port: srv.sftpPort, username: 'pat', password: 'pat password' });
    sftp = await sftpOf(client);
  });
  after(async () => {
    client?.end();
    await srv.stop();
  });

  it('VERSION advertises exactly the extensions with a handler, and each of them answers', async () => {
    const raw = await Raw.open(client);
    assert.deepEqual(raw.extensions, advertisedExtensions(), 'VERSION lists the handler table');
    await call((cb) => sftp.writeFile('/a.txt', 'copy me', cb));
    await call((cb) => sftp.writeFile('/w.txt', '', cb));
    // A well-formed request for each extension and the reply it must get; a new extension without one here fails.
    const requests: Record<string, () => Promise<{ body: Buffer; reply: number }>> = {
      'posix-rename@openssh.com': async () => ({ body: Buffer.concat([str('/a.txt'), str('/b.txt')]), reply: FXP.STATUS }),
      'statvfs@openssh.com': async () => ({ body: str('/'), reply: FXP.EXTENDED_REPLY }),
      'fstatvfs@openssh.com': async () => ({ body: str(await raw.handle(FXP.OPENDIR, str('/'))), reply: FXP.EXTENDED_REPLY }),
      'hardlink@openssh.com': async () => ({ body: Buffer.concat([str('/b.txt'), str('/h.txt')]), reply: FXP.STATUS }),
      'fsync@openssh.com': async () => ({ body: str(await raw.handle(FXP.OPEN, Buffer.concat([str('/w.txt'), u32(0x02), NO_ATTRS]))), reply: FXP.STATUS }),
      'limits@openssh.com': async () => ({ body: Buffer.alloc(0), reply: FXP.EXTENDED_REPLY }),
      'expand-path@openssh.com': async () => ({ body: str('~/b.txt'), reply: FXP.NAME }),
      'lsetstat@openssh.com': async () => ({ body: Buffer.concat([str('/b.txt'), u32(0x04), u32(0o600)]), reply: FXP.STATUS }),
      'check-file-name': async () => ({ body: Buffer.concat([str('/b.txt'), str('sha256'), u64(0), u64(0), u32(0)]), reply: FXP.EXTENDED_REPLY }),
      'check-file-handle': async () => ({
        body: Buffer.concat([str(await raw.handle(FXP.OPEN, Buffer.concat([str('/b.txt'), u32(READ), NO_ATTRS]))), str('sha256'), u64(0), u64(0), u32(0)]),
        reply: FXP.EXTENDED_REPLY,
      }),
      'check-file': async () => ({
        body: Buffer.concat([str(await raw.handle(FXP.OPEN, Buffer.concat([str('/b.txt'), u32(READ), NO_ATTRS]))), str('sha256'), u64(0), u64(0), u32(0)]),
        reply: FXP.EXTENDED_REPLY,
      }),
      'copy-data': async () => {
        const from = await raw.handle(FXP.OPEN, Buffer.concat([str('/b.txt'), u32(READ), NO_ATTRS]));
        const to = await raw.handle(FXP.OPEN, Buffer.concat([str('/c.txt'), u32(WRITE_CREATE_TRUNCATE), NO_ATTRS]));
        return { body: Buffer.concat([str(from), u64(0), u64(0), str(to), u64(0)]), reply: FXP.STATUS };
      },
    };
    assert.deepEqual(raw.extensions.map(([name]) => name).sort(), Object.keys(requests).sort(), 'every advertised extension is exercised here');
    for (const [name] of raw.extensions) {
      const want = await (requests[name] as () => Promise<{ body: Buffer; reply: number }>)();
      const r = await raw.request(FXP.EXTENDED, Buffer.concat([str(name), want.body]));
      assert.equal(r.type, want.reply, `${name}: reply type`);
      if (r.type === FXP.STATUS) assert.equal(status(r).code, OK, `${name}: ${status(r).message}`);
    }
    // What the extensions did, seen on disk.
    await raw.closeAll();
    const home = srv.home('pat');
    assert.deepEqual(readdirSync(home).sort(), ['b.txt', 'c.txt', 'h.txt', 'w.txt']);
    assert.equal(readFileSync(join(home, 'c.txt'), 'utf8'), 'copy me');
    assert.equal(statSync(join(home, 'b.txt')).nlink, 2);
    assert.equal(statSync(join(home, 'b.txt')).mode & 0o777, 0o600);
    // Names nobody serves, including OpenSSH extensions sluice does not offer.
    for (const name of ['home-directory', 'users-groups-by-id@openssh.com', 'no-such@example.com', '']) {
      assert.equal(status(await raw.request(FXP.EXTENDED, str(name))).code, OP_UNSUPPORTED, name);
    }
    raw.channel.close();
  });

  it('copy-data into its own file ends: the same name is refused, another link stops at the size it had', async () => {
    // Under a 1 MiB quota, so that a copy chasing its own end fails fast instead of filling the disk.
    const quoted = await sshConnect({ port: srv.sftpPort, username: 'copier', password: 'copier password' });
    try {
      const raw = await Raw.open(quoted);
      const q = await sftpOf(quoted);
      await call((cb) => q.writeFile('/self.bin', Buffer.alloc(100_000, 7), cb));
      const copy = (from: Buffer, to: Buffer) =>
        raw.request(FXP.EXTENDED, Buffer.concat([str('copy-data'), str(from), u64(0), u64(2 ** 40), str(to), u64(65_536)]));
      const IN_PLACE = 0x02 | 0x08; // WRITE|CREAT, no TRUNC: writes into the file itself
      const from = await raw.handle(FXP.OPEN, Buffer.concat([str('/self.bin'), u32(READ), NO_ATTRS]));
      const same = await raw.handle(FXP.OPEN, Buffer.concat([str('/self.bin'), u32(IN_PLACE), NO_ATTRS]));
      assert.notEqual(status(await copy(from, same)).code, OK, 'a copy onto its own name is refused');
      await raw.closeAll();
      assert.equal(statSync(join(srv.home('copier'), 'self.bin')).size, 100_000);
      // Through a symlink the names differ: writing ahead of the reader must not chase the end it moves.
      await call((cb) => q.symlink('self.bin', '/alias.bin', cb));
      const source = await raw.handle(FXP.OPEN, Buffer.concat([str('/self.bin'), u32(READ), NO_ATTRS]));
      const alias = await raw.handle(FXP.OPEN, Buffer.concat([str('/alias.bin'), u32(IN_PLACE), NO_ATTRS]));
      assert.equal(status(await copy(source, alias)).code, OK);
      await raw.closeAll();
      assert.equal(statSync(join(srv.home('copier'), 'self.bin')).size, 65_536 + 100_000, 'the copy stopped at the size the source had');
      raw.channel.close();
    } finally {
      quoted.end();
    }
  });

  it('copies from many files into one name the first 16 in its audit record and counts the others', async () => {
    // Found by a review: 300 copies of long names into one file made a 1.2 MB audit line, which broke the chain's restart.
    const raw = await Raw.open(client);
    const names = Array.from({ length: 20 }, (_, i) => `/many-${String(i).padStart(2, '0')}-${'n'.repeat(200)}`);
    for (const name of names) await call((cb) => sftp.writeFile(name, 'x', cb));
    const sink = await raw.handle(FXP.OPEN, Buffer.concat([str('/many-sink.bin'), u32(0x02 | 0x08 | 0x10), NO_ATTRS]));
    for (const name of [...names, names[0] as string]) {
      const from = await raw.handle(FXP.OPEN, Buffer.concat([str(name), u32(READ), NO_ATTRS]));
      assert.equal(status(await raw.request(FXP.EXTENDED, Buffer.concat([str('copy-data'), str(from), u64(0), u64(0), str(sink), u64(0)]))).code, OK);
    }
    await raw.closeAll();
    raw.channel.close();
    const upload = (await srv.auditUntil((l) => l.event === 'upload' && l.path === '/many-sink.bin')).find((l) => l.event === 'upload' && l.path === '/many-sink.bin');
    assert.ok(upload);
    assert.deepEqual(upload.copied_from, names.slice(0, 16));
    assert.equal(upload.copied_others, 4, 'the repeated name counts once');
  });

  it('a FIFO planted in a home neither hangs a truncate nor starves the file system of threads', async () => {
    const made = spawnSync('mkfifo', [join(srv.home('pat'), 'pipe')]);
    assert.equal(made.status, 0, String(made.stderr));
    // More than libuv's pool: if each open blocked, every later file operation of the server would wait.
    const tries = Array.from({ length: 8 }, () => call((cb) => sftp.setstat('/pipe', { size: 0 }, cb)).then(() => 'ok', (err: Error) => err.message));
    const outcomes = await Promise.race([Promise.all(tries), new Promise<string>((r) => setTimeout(() => r('hung'), 10_000).unref())]);
    assert.notEqual(outcomes, 'hung');
    for (const outcome of outcomes) assert.notEqual(outcome, 'ok');
    await call((cb) => sftp.writeFile('/after-fifo.txt', 'still serving', cb));
  });

  it('a request sent a byte per SSH message costs the server its bytes, not their square: other sessions keep their answers', async () => {
    const raw = await Raw.open(client);
    const other = await sshConnect({ port: srv.sftpPort, username: 'pat', password: 'pat password' });
    try {
      const sftp = await sftpOf(other);
      // A 48 KB WRITE through a handle that does not exist: framed whole, then refused.
      const write = frame(6, Buffer.concat([u32(77), str('no such handle'), u64(0), str(Buffer.alloc(48_000, 1))]));
      const replied = raw.nextReply();
      let slowest = 0;
      for (let at = 0; at < write.length; at += 1000) {
        for (let i = at; i < Math.min(at + 1000, write.length); i++) raw.channel.write(write.subarray(i, i + 1));
        const asked = performance.now();
        await call((cb) => sftp.stat('/', (err) => cb(err)));
        slowest = Math.max(slowest, performance.now() - asked);
      }
      const reply = await replied;
      assert.equal(reply[0], FXP.STATUS);
      assert.equal(reply.readUInt32BE(1), 77, 'the WRITE arrived whole and was answered');
      // Joining every waiting chunk for each one that came took tens of seconds of the event loop here.
      assert.ok(slowest < 2000, `another session's STAT waited ${slowest.toFixed(0)} ms`);
    } finally {
      other.end();
      raw.channel.close();
    }
  });

  it('a packet too short for a type and a uint32 ends its channel, INIT included; the server serves on', async () => {
    const cases: [string, number, boolean][] = [];
    for (const length of [1, 2, 3, 4]) {
      cases.push([`INIT of length ${length}`, FXP.INIT, false]);
      for (let type = 3; type <= 20; type++) cases.push([`type ${type} of length ${length}`, type, true]);
      cases.push([`EXTENDED of length ${length}`, FXP.EXTENDED, true]);
    }
    for (const [what, type, afterInit] of cases) {
      const length = Number(/length (\d)/.exec(what)?.[1]);
      const channel = afterInit
        ? (await Raw.open(client)).channel
        : await call<ssh2.ClientChannel>((cb) => client.subsys('sftp', cb));
      const outcome = new Promise<string>((resolve) => {
        channel.once('data', (d: Buffer) => resolve(`a reply of type ${d[4]}`));
        channel.once('close', () => resolve('closed'));
      });
      channel.write(Buffer.concat([u32(length), Buffer.from([type]), Buffer.alloc(length - 1)]));
      const got = await outcome;
      if (got !== 'closed') channel.close();
      assert.equal(got, 'closed', `${what}: no reply, the channel ends`);
    }
    assert.ok(srv.alive);
    assert.equal(String(await call<Buffer>((cb) => sftp.readFile('/c.txt', cb))), 'copy me', 'the first channel still works');
  });

  it('refuses names with C1, bidi, invisible or line-separator characters in OPEN, MKDIR, RENAME and SYMLINK, with a clear FAILURE', async () => {
    // NEL (a line break to many xferlog readers), C1 (CSI drives terminals), U+2028/U+2029, bidi controls (RLO spoofs `aexe.txt`).
    const names = ['a\u0085b\u202Etxt.exe', 'c1\u009b2J', 'ls\u2028ps\u2029', 'lre\u202A', 'pdi\u2069', 'lri\u2066', 'rlo\u202D', 'pdf\u202C'];
    // Invisible and bidi-mark characters: `invoice<U+200B>.pdf` looks like `invoice.pdf` in listings and the audit trail.
    names.push('lrm\u200E', 'rlm\u200F', 'alm\u061C', 'invoice\u200B.pdf', 'wj\u2060', 'bom\uFEFFmid', '\uFEFFbom', 'mvs\u180E', 'soft\u00ADhyphen', 'op\u2062');
    // A joiner, a variation selector or tags where they do nothing: `invoice<ZWJ>.pdf` looks like `invoice.pdf` just as well.
    names.push('invoice\u200D.pdf', 'invoice\u200C.pdf', 'invoice\uFE0F.pdf', 'hidden\u{E0041}\u{E0042}');
    await call((cb) => sftp.writeFile('/plain.txt', 'x', cb));
    const FAILURE = 4;
    const ascii = (s: string) => [...s].map((c) => (c >= ' ' && c <= '~' ? c : `<U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}>`)).join('');
    const refused = async (what: string, p: Promise<unknown>) => {
      const err = await p.then(() => null, (e: unknown) => e as { code?: number; message?: string });
      assert.deepEqual([err?.code, err?.message], [FAILURE, 'Invalid character in path'], what);
    };
    for (const name of names) {
      const what = ascii(name);
      await refused(`upload ${what}`, call((cb) => sftp.writeFile(`/${name}`, 'MZ', cb)));
      await refused(`mkdir ${what}`, call((cb) => sftp.mkdir(`/dir-${name}`, cb)));
      await refused(`rename to ${what}`, call((cb) => sftp.rename('/plain.txt', `/${name}`, cb)));
      await refused(`symlink ${what}`, call((cb) => sftp.symlink('plain.txt', `/${name}`, cb)));
    }
    assert.deepEqual(readdirSync(srv.home('pat')).filter(hasUnsafeChar), []);
    assert.equal(readFileSync(join(srv.home('pat'), 'plain.txt'), 'utf8'), 'x');
    // ZWNJ is ordinary Persian spelling (`mi-khaham`), ZWJ joins an emoji sequence (woman technologist): both kept.
    const joined = ['\u0645\u06CC\u200C\u062E\u0648\u0627\u0647\u0645', '\u{1F469}\u200D\u{1F4BB}'];
    for (const name of joined) {
      await call((cb) => sftp.writeFile(`/${name}.txt`, 'ok', cb));
      await call((cb) => sftp.mkdir(`/${name}-dir`, cb));
    }
    const listed = (await call<ssh2.FileEntry[]>((cb) => sftp.readdir('/', cb))).map((e) => e.filename);
    for (const name of joined) assert.ok(listed.includes(`${name}.txt`) && listed.includes(`${name}-dir`), ascii(name));
  });

  it('a failing request never shows a server path in its STATUS', async () => {
    await call((cb) => sftp.writeFile('/f.txt', 'file', cb));
    await call((cb) => sftp.mkdir('/d', cb));
    await call((cb) => sftp.mkdir('/full', cb));
    await call((cb) => sftp.writeFile('/full/x', 'x', cb));
    const raw = await Raw.open(client);
    // Each fails in a system call on a real path (the jail's /proc/self/fd/N/name): errno messages name it.
    const failing: [string, number, Buffer][] = [
      ['OPEN under a file (ENOTDIR)', FXP.OPEN, Buffer.concat([str('/f.txt/x'), u32(READ), NO_ATTRS])],
      ['OPEN to create under a file (ENOTDIR)', FXP.OPEN, Buffer.concat([str('/f.txt/x'), u32(WRITE_CREATE_TRUNCATE), NO_ATTRS])],
      ['OPEN of a directory for writing (EISDIR)', FXP.OPEN, Buffer.concat([str('/d'), u32(WRITE_CREATE_TRUNCATE), NO_ATTRS])],
      ['OPENDIR of a file (ENOTDIR)', FXP.OPENDIR, str('/f.txt')],
      ['MKDIR under a file (ENOTDIR)', 14, Buffer.concat([str('/f.txt/sub'), NO_ATTRS])],
      ['MKDIR of an existing name (EEXIST)', 14, Buffer.concat([str('/d'), NO_ATTRS])],
      ['RMDIR of a file (ENOTDIR)', 15, str('/f.txt')],
      ['RMDIR of a full directory (ENOTEMPTY)', 15, str('/full')],
      ['READLINK of a file (EINVAL)', 19, str('/f.txt')],
      ['RENAME under a file (ENOTDIR)', 18, Buffer.concat([str('/f.txt'), str('/f.txt/y')])],
      ['RENAME of a directory into itself (EINVAL)', 18, Buffer.concat([str('/d'), str('/d/inner')])],
      ['STAT of a missing name (ENOENT)', 17, str('/missing/x')],
    ];
    for (const [what, type, body] of failing) {
      const s = status(await raw.request(type, body));
      assert.notEqual(s.code, OK, `${what} fails`);
      // No path at all: neither the home's nor the descriptor path the system call saw.
      assert.doesNotMatch(`${s.message} ${s.language}`, /\//, `${what}: "${s.message}"`);
    }
    raw.channel.close();
  });

  it('an owner change is refused alike by SETSTAT, FSETSTAT (file or directory) and lsetstat, before any other attribute', async () => {
    await call((cb) => sftp.writeFile('/own.txt', 'mine', cb));
    await call((cb) => sftp.mkdir('/owndir', cb));
    const raw = await Raw.open(client);
    // UIDGID and PERMISSIONS together: the mode must not change either.
    const attrs = Buffer.concat([u32(0x02 | 0x04), u32(0), u32(0), u32(0o600)]);
    const file = await raw.handle(FXP.OPEN, Buffer.concat([str('/own.txt'), u32(READ), NO_ATTRS]));
    const dir = await raw.handle(FXP.OPENDIR, str('/owndir'));
    for (const [what, type, body] of [
      ['SETSTAT', 9, Buffer.concat([str('/own.txt'), attrs])],
      ['FSETSTAT on a file', 10, Buffer.concat([str(file), attrs])],
      ['FSETSTAT on a directory', 10, Buffer.concat([str(dir), attrs])],
      ['lsetstat', FXP.EXTENDED, Buffer.concat([str('lsetstat@openssh.com'), str('/own.txt'), attrs])],
    ] as const) {
      const s = status(await raw.request(type, body));
      assert.deepEqual([s.code, s.message], [3, 'Changing the owner is not allowed'], what);
    }
    await raw.closeAll();
    raw.channel.close();
    assert.equal(statSync(join(srv.home('pat'), 'own.txt')).mode & 0o777, 0o644);
    assert.equal(statSync(join(srv.home('pat'), 'owndir')).mode & 0o777, 0o755);
  });

  // Measured on OpenSSH 9.2's sftp-server (run over a pipe): an OPEN without WRITE is open(2) O_RDONLY with the other
  // flags, which empties (TRUNC) or creates (CREAT|EXCL) the file; a WRITE or copy-data into it is write(2)'s EBADF,
  // answered NO_SUCH_FILE, and an FSETSTAT size ftruncate(2)'s EINVAL, BAD_MESSAGE; the file stays as the open left it.
  it('a handle opened without WRITE (TRUNC, CREAT|EXCL, APPEND, READ) refuses WRITEs and size changes as OpenSSH: the file as the open left it', async () => {
    const [TRUNC, CREAT, EXCL, APPEND] = [0x10, 0x08, 0x20, 0x04];
    const home = srv.home('opener');
    const c = await sshConnect({ port: srv.sftpPort, username: 'opener', password: 'opener password' });
    try {
      // Uploaded, so that the quota counts them from the start.
      const planter = await sftpOf(c);
      for (const name of ['emptied.txt', 'trunc.txt', 'appended.txt', 'read.txt', 'source.txt']) await call((cb) => planter.writeFile(`/${name}`, 'old content', cb));
      const raw = await Raw.open(c);
      const hello = (h: Buffer) => raw.request(6, Buffer.concat([str(h), u64(0), str('hello')]));
      const readAt0 = (h: Buffer) => raw.request(5, Buffer.concat([str(h), u64(0), u32(100)]));
      const resize = (h: Buffer) => raw.request(10, Buffer.concat([str(h), u32(0x01), u64(3)]));
      const copyInto = async (h: Buffer) => {
        const from = await raw.handle(FXP.OPEN, Buffer.concat([str('/source.txt'), u32(READ), NO_ATTRS]));
        return raw.request(FXP.EXTENDED, Buffer.concat([str('copy-data'), str(from), u64(0), u64(0), str(h), u64(0)]));
      };
      // Per open: WRITE's status, FSETSTAT size's, copy-data into it, READ's (EOF or the bytes; '-': not opened
      // READ), the file after CLOSE.
      const expected: [string, number, number, number, string, string][] = [
        ['TRUNC|READ emptied.txt', 2, 5, 2, 'EOF', ''],
        ['CREAT|EXCL made.txt', 2, 5, 2, '-', ''],
        ['CREAT|EXCL|READ made-r.txt', 2, 5, 2, 'EOF', ''],
        ['TRUNC trunc.txt', 2, 5, 2, '-', ''],
        ['APPEND appended.txt', 2, 5, 2, '-', 'old content'],
        ['READ read.txt', 2, 5, 2, 'old content', 'old content'],
      ];
      const flags: Record<string, number> = { TRUNC, CREAT, EXCL, APPEND, READ };
      const seen: typeof expected = [];
      for (const [what] of expected) {
        const [named, name] = what.split(' ') as [string, string];
        const h = await raw.handle(FXP.OPEN, Buffer.concat([str(`/${name}`), u32(named.split('|').reduce((f, n) => f | (flags[n] as number), 0)), NO_ATTRS]));
        const written = status(await hello(h)).code;
        const resized = status(await resize(h)).code;
        const copied = status(await copyInto(h)).code;
        let read = '-';
        if (named.includes('READ')) {
          const r = await readAt0(h);
          read = r.type === FXP.STATUS ? (status(r).code === 1 ? 'EOF' : `status ${status(r).code}`) : r.body.subarray(4, 4 + r.body.readUInt32BE(0)).toString();
        }
        await raw.closeAll();
        seen.push([what, written, resized, copied, read, readFileSync(join(home, name), 'utf8')]);
      }
      assert.deepEqual(seen, expected);
      raw.channel.close();
    } finally {
      c.end();
    }
    // Recorded as what each open did: an upload of nothing, which emptied the old file or made a new one.
    const paths = ['/emptied.txt', '/made.txt', '/made-r.txt', '/trunc.txt'];
    const emptied = (r: Record<string, unknown>) => r.event === 'upload' && r.user === 'opener' && paths.includes(String(r.path)) && r.bytes === 0;
    const uploads = (await srv.auditWhen((records) => records.filter(emptied).length === paths.length)).filter(emptied);
    for (const r of uploads) {
      assert.deepEqual([r.result, r.size], ['ok', 0], String(r.path));
      assert.equal(r.replaced === undefined, String(r.path).startsWith('/made'), `${String(r.path)}: replaced ${JSON.stringify(r.replaced)}`);
    }
    // Nothing held on the quota by the refused writes: the usage is what the disk holds.
    assert.deepEqual(persistedUsage(srv, 'opener'), { bytes: 33, files: 7 });
    const disk = diskUsage(home);
    assert.deepEqual([disk.bytes, disk.files], [33, 7]);
  });

  // Measured on OpenSSH 9.2's sftp-server: an OPEN is open(2) O_RDONLY without WRITE, O_WRONLY with WRITE alone and
  // O_RDWR with both. A READ through an O_WRONLY one, or copy-data from it, is read(2)'s EBADF, answered NO_SUCH_FILE;
  // one opened without WRITE reads (EOF on a file TRUNC emptied or CREAT|EXCL made). A drop box is not read: a handle
  // opened for reading there is refused its READs (PERMISSION_DENIED), one opened WRITE alone answers as anywhere.
  it('a handle reads as OpenSSH opens it: WRITE alone is not open for reading, no WRITE is; a drop box is not read', async () => {
    const [WRITE, APPEND, CREAT, TRUNC, EXCL] = [0x02, 0x04, 0x08, 0x10, 0x20];
    const flags: Record<string, number> = { READ, WRITE, APPEND, CREAT, TRUNC, EXCL };
    for (const name of ['w.txt', 'wa.txt', 't.txt', 'a.txt', 'rw.txt', 'source.txt']) writeFileSync(join(srv.home('reader'), name), 'old content');
    mkdirSync(join(srv.home('dropper'), 'incoming'));
    assert.equal(sluice(srv.dir, ['user', 'perm', 'dropper', '/incoming', 'upload'], undefined, { SLUICE_LOG_LEVEL: 'warn' }).code, 0);
    // Per open: READ's answer (EOF, the bytes, or a status), copy-data's from it into a new file.
    const expected: Record<string, [string, string, number][]> = {
      reader: [
        ['WRITE w.txt', 'status 2', 2],
        ['WRITE|CREAT|TRUNC wct.txt', 'status 2', 2],
        ['WRITE|APPEND wa.txt', 'status 2', 2],
        // OpenSSH copies from these too (OK); sluice copies from a download only.
        ['TRUNC t.txt', 'EOF', OP_UNSUPPORTED],
        ['CREAT|EXCL x.txt', 'EOF', OP_UNSUPPORTED],
        ['APPEND a.txt', 'old content', OP_UNSUPPORTED],
        ['READ|WRITE rw.txt', 'old content', OP_UNSUPPORTED],
      ],
      dropper: [
        ['WRITE|CREAT incoming/w.txt', 'status 2', 2],
        ['CREAT|TRUNC incoming/t.txt', 'status 3', 3],
        ['CREAT|EXCL incoming/x.txt', 'status 3', 3],
        ['READ|WRITE|CREAT|TRUNC incoming/rw.txt', 'status 3', 3],
      ],
    };
    const seen: typeof expected = {};
    for (const [user, rows] of Object.entries(expected)) {
      const c = await sshConnect({ port: srv.sftpPort, username: user, password: `${user} password` });
      try {
        const raw = await Raw.open(c);
        const dir = user === 'dropper' ? '/incoming' : '';
        seen[user] = [];
        for (const [i, [what]] of rows.entries()) {
          const [named, name] = what.split(' ') as [string, string];
          const h = await raw.handle(FXP.OPEN, Buffer.concat([str(`/${name}`), u32(named.split('|').reduce((f, n) => f | (flags[n] as number), 0)), NO_ATTRS]));
          const r = await raw.request(5, Buffer.concat([str(h), u64(0), u32(100)]));
          const read = r.type === FXP.STATUS ? (status(r).code === 1 ? 'EOF' : `status ${status(r).code}`) : r.body.subarray(4, 4 + r.body.readUInt32BE(0)).toString();
          const to = await raw.handle(FXP.OPEN, Buffer.concat([str(`${dir}/copy-${i}.txt`), u32(WRITE_CREATE_TRUNCATE), NO_ATTRS]));
          const copied = status(await raw.request(FXP.EXTENDED, Buffer.concat([str('copy-data'), str(h), u64(0), u64(0), str(to), u64(0)]))).code;
          await raw.closeAll();
          seen[user].push([what, read, copied]);
        }
        raw.channel.close();
      } finally {
        c.end();
      }
    }
    assert.deepEqual(seen, expected);
  });

  // Measured on OpenSSH 9.2's sftp-server: process_fsetstat() tries each attribute in turn and answers the last
  // failure, so through a handle opened READ it answers BAD_MESSAGE (ftruncate(2)'s EINVAL) yet changes the mode.
  // sluice stops at the first step that fails, as in any FSETSTAT or SETSTAT, and the size comes first (see README).
  it('an FSETSTAT of size and mode through a handle opened without WRITE is refused whole: BAD_MESSAGE, the mode kept', async () => {
    const file = join(srv.home('reader'), 'sized.txt');
    writeFileSync(file, 'old content', { mode: 0o644 });
    const c = await sshConnect({ port: srv.sftpPort, username: 'reader', password: 'reader password' });
    try {
      const raw = await Raw.open(c);
      const seen: [string, number, string, number][] = [];
      for (const [named, flags] of [['READ', READ], ['TRUNC', 0x10]] as const) {
        const h = await raw.handle(FXP.OPEN, Buffer.concat([str('/sized.txt'), u32(flags), NO_ATTRS]));
        const code = status(await raw.request(10, Buffer.concat([str(h), u32(0x01 | 0x04), u64(3), u32(0o600)]))).code;
        await raw.closeAll();
        seen.push([named, code, readFileSync(file, 'utf8'), statSync(file).mode & 0o777]);
      }
      assert.deepEqual(seen, [
        ['READ', 5, 'old content', 0o644],
        ['TRUNC', 5, '', 0o644],
      ]);
      raw.channel.close();
    } finally {
      c.end();
    }
  });

  it('statvfs shows a quota as the file system (df in sftp)', async () => {
    const c = await sshConnect({ port: srv.sftpPort, username: 'quoted', password: 'quoted password' });
    try {
      const s = await sftpOf(c);
      await call((cb) => s.writeFile('/100k', Buffer.alloc(100 * 1024), cb));
      const v = await call<Record<string, number>>((cb) => s.ext_openssh_statvfs('/', cb));
      const blocks = (bytes: number) => Math.floor(bytes / (v.f_bsize as number));
      assert.ok((v.f_bsize as number) > 0);
      assert.equal(v.f_frsize, v.f_bsize);
      assert.equal(v.f_blocks, blocks(1024 * 1024));
      assert.equal(v.f_bavail, blocks(1024 * 1024 - 100 * 1024));
      assert.ok((v.f_bfree as number) <= (v.f_bavail as number));
      assert.deepEqual([v.f_files, v.f_ffree, v.f_favail], [10, 9, 9]);
    } finally {
      c.end();
    }
  });
});
