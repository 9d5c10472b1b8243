import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { appendFileSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fuseDeviceUnusable, programMissing } from './helpers/programs.js';
import { KiB, MiB, diskUsage, persistedUsage, waitFor } from './helpers/quota.js';
import { TestServer } from './helpers/server.js';

/** rclone's SFTP backend: Go's x/crypto/ssh and pkg/sftp, a client of its own beside OpenSSH, libssh2 and ssh2. */
const rcloneMissing = programMissing('rclone');

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Names that a shell, a URL or a flag parser would take apart. */
const ODD = ['sp ace.txt', '  lead space.txt', 'trail space .txt', '-dash.txt', 'hash#tag.txt', 'per%cent.txt', 'per%20cent.txt', 'ünï cödé ✓.txt', '日本語.bin'];

const files: Record<string, Buffer> = {
  'big.bin': randomBytes(12 * MiB),
  ...Object.fromEntries(Array.from({ length: 60 }, (_, i) => [`many/f${i}.txt`, randomBytes(i * 97)])),
  ...Object.fromEntries(ODD.map((name) => [`odd/${name}`, Buffer.from(`${name} content\n`)])),
};

const PASSWORD = 'rclone sftp password';
/** Less than the tree: the big file crosses it. */
const QUOTA = 8 * MiB;

type Rec = Record<string, unknown>;

describe('rclone (Go pkg/sftp) over SFTP', { skip: rcloneMissing }, () => {
  let srv: TestServer;
  const local = mkdtempSync(join(tmpdir(), 'sluice-rclone-sftp-'));
  const source = join(local, 'source');
  before(async () => {
    srv = await TestServer.start({
      // rclone opens a connection per transfer, per part of a part-wise download, and for listing:
      // --transfers 8 with 4 streams each went past the default 10 sessions a user may hold.
      yaml: 'limits:\n  maxSessionsPerUser: 64\n',
      users: [
        { name: 'rita', password: PASSWORD },
        { name: 'quo', password: PASSWORD, args: ['--quota-bytes', String(QUOTA)] },
        // The default permissions but delete and overwrite (chtimes kept: rclone sets each upload's time, and fails it when refused).
        { name: 'nod', password: PASSWORD, args: ['--perms', 'list,download,upload,rename,mkdir,rmdir,chtimes'] },
        { name: 'notime', password: PASSWORD, args: ['--perms', 'list,download,upload,mkdir'] },
      ],
    });
    for (const [name, data] of Object.entries(files)) {
      mkdirSync(join(source, name, '..'), { recursive: true });
      writeFileSync(join(source, name), data);
    }
    const pass = rclone(['obscure', PASSWORD]).stdout.trim();
    const remotes = ['rita', 'quo', 'nod', 'notime'].map((user) => `[${user}]\ntype = sftp\nhost = 127.0.0.1\nport = ${srv.sftpPort}\nuser = ${user}\npass = ${pass}\n`);
    writeFileSync(join(local, 'rclone.conf'), remotes.join('\n'));
  });
  after(async () => {
    await srv.stop();
    rmSync(local, { recursive: true, force: true });
  });

  /** No retries: a retried transfer would hide a failure of the first. */
  function rclone(args: string[]) {
    const r = spawnSync('rclone', ['--config', join(local, 'rclone.conf'), '--cache-dir', join(local, 'cache'), '--retries', '1', '--low-level-retries', '1', ...args], {
      encoding: 'utf8',
      timeout: 120_000,
    });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  }

  function ok(args: string[]): string {
    const r = rclone(args);
    assert.equal(r.code, 0, `rclone ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  }

  const transfers = (records: Rec[], event: string, prefix: string) => records.filter((r) => r.event === event && String(r.path).startsWith(prefix));

  /** Every file of the tree recorded once under `prefix`, whole, with its SHA-256. */
  async function recordedOnce(event: 'upload' | 'download', prefix: string): Promise<void> {
    const records = transfers(await srv.auditWhen((all) => transfers(all, event, prefix).length >= Object.keys(files).length), event, prefix);
    assert.equal(records.length, Object.keys(files).length, `one ${event} record a file`);
    for (const [name, data] of Object.entries(files)) {
      const r = records.find((x) => x.path === `${prefix}/${name}`);
      assert.deepEqual(r && { bytes: r.bytes, offset: r.offset, result: r.result, sha256: r.sha256 }, { bytes: data.length, offset: 0, result: 'ok', sha256: sha256(data) }, name);
    }
  }

  it('copy a tree with 255 KiB chunks, 128 requests in flight and 8 transfers; check by size, by time and by content', async () => {
    ok(['copy', '--transfers', '8', '--sftp-chunk-size', '255k', '--sftp-concurrency', '128', source, 'rita:tree']);
    for (const [name, data] of Object.entries(files)) assert.ok(readFileSync(join(srv.home('rita'), 'tree', name)).equals(data), name);
    ok(['check', source, 'rita:tree']);
    ok(['check', '--size-only', source, 'rita:tree']);
    ok(['check', '--download', source, 'rita:tree']);
    await recordedOnce('upload', '/tree');
    await recordedOnce('download', '/tree');
  });

  it('downloads a file in 4 parts over 4 connections: the file whole, each part recorded from where it began, with its SHA-256', async () => {
    const into = join(local, 'parts');
    ok(['copy', '--multi-thread-streams', '4', '--multi-thread-cutoff', '1M', 'rita:tree/big.bin', into]);
    const big = files['big.bin']!;
    assert.ok(readFileSync(join(into, 'big.bin')).equals(big));
    // Each part reads on past its end (pkg/sftp reads ahead) until rclone closes it: a part's bytes are what was sent.
    // After the whole one of check --download.
    const done = (all: Rec[]) => transfers(all, 'download', '/tree/big.bin').length >= 1 + 4;
    const parts = transfers(await srv.auditWhen(done), 'download', '/tree/big.bin').slice(1);
    assert.equal(parts.length, 4);
    parts.sort((a, b) => Number(a.offset) - Number(b.offset));
    // Before: every part said offset 0, and all but the first had no hash (nor, its reorder room taken by theirs, the first).
    let covered = 0;
    for (const p of parts) {
      const [offset, bytes] = [Number(p.offset), Number(p.bytes)];
      assert.ok(offset <= covered && offset + bytes > covered, `part ${offset}+${bytes} goes on from ${covered}`);
      assert.equal(p.sha256, sha256(big.subarray(offset, offset + bytes)), `part from ${offset}`);
      assert.equal(p.resumed, offset > 0);
      covered = offset + bytes;
    }
    assert.equal(covered, big.length);
  });

  it('with each of the backend options that change what it sends, a copy up and back is whole', () => {
    const sample = join(local, 'sample');
    mkdirSync(join(sample, 'odd'), { recursive: true });
    writeFileSync(join(sample, 'big.bin'), files['big.bin']!.subarray(0, 3 * MiB));
    for (const name of ODD) writeFileSync(join(sample, 'odd', name), files[`odd/${name}`]!);
    for (const option of ['--sftp-disable-concurrent-writes', '--sftp-disable-concurrent-reads', '--sftp-use-fstat', '--sftp-disable-hashcheck', '--sftp-set-modtime=false']) {
      const dir = option.replace(/\W/g, '');
      ok(['copy', option, sample, `rita:options/${dir}`]);
      ok(['check', option, sample, `rita:options/${dir}`]);
      ok(['copy', option, `rita:options/${dir}`, join(local, 'back', dir)]);
      assert.ok(readFileSync(join(local, 'back', dir, 'big.bin')).equals(files['big.bin']!.subarray(0, 3 * MiB)), option);
      for (const name of ODD) assert.ok(readFileSync(join(local, 'back', dir, 'odd', name)).equals(files[`odd/${name}`]!), `${option} ${name}`);
    }
  });

  it('--sftp-chunk-size past 255k fails as against OpenSSH, whose limits these are (README)', () => {
    // 256 KiB of data in one WRITE is more than a message may hold: the session ends.
    const up = rclone(['copy', '--sftp-chunk-size', '256k', join(source, 'big.bin'), 'rita:chunk256']);
    assert.notEqual(up.code, 0);
    assert.match(up.stderr, /connection lost/);
    assert.ok(!existsSync(join(srv.home('rita'), 'chunk256', 'big.bin')));
    // READs are answered with 255 KiB at most; rclone 1.60 takes each short reply as all there is at its offset.
    const down = rclone(['copy', '--sftp-chunk-size', '256k', 'rita:tree/big.bin', join(local, 'chunk256')]);
    assert.notEqual(down.code, 0);
    assert.match(down.stderr, /corrupted on transfer: sizes differ/);
  });

  it('sync, move, moveto, delete, rmdirs, purge, mkdir, touch and lsjson with odd names', () => {
    const home = srv.home('rita');
    ok(['sync', join(source, 'odd'), 'rita:work']);
    const changed = join(local, 'changed');
    mkdirSync(changed);
    for (const name of ODD.slice(1)) writeFileSync(join(changed, name), `${name} changed\n`);
    ok(['sync', changed, 'rita:work']);
    assert.deepEqual(readdirSync(join(home, 'work')).sort(), ODD.slice(1).sort(), 'the name gone from the source is deleted');
    for (const name of ODD.slice(1)) assert.equal(readFileSync(join(home, 'work', name), 'utf8'), `${name} changed\n`);

    ok(['moveto', 'rita:work/-dash.txt', 'rita:work/moved #%ü.txt']);
    ok(['move', 'rita:work', 'rita:moved/deeper']);
    assert.ok(!existsSync(join(home, 'work')), 'a directory moved on the server');
    assert.equal(readFileSync(join(home, 'moved', 'deeper', 'moved #%ü.txt'), 'utf8'), '-dash.txt changed\n');

    ok(['mkdir', 'rita:moved/empty one/-x']);
    ok(['touch', '--timestamp', '2020-01-02T03:04:05', 'rita:moved/touched #.txt']);
    const listed = JSON.parse(ok(['lsjson', '-R', 'rita:moved'])) as { Path: string; Size: number; ModTime: string; IsDir: boolean }[];
    const touched = listed.find((e) => e.Path === 'touched #.txt');
    assert.deepEqual(touched && { size: touched.Size, time: touched.ModTime }, { size: 0, time: '2020-01-02T03:04:05Z' });
    assert.ok(listed.some((e) => e.Path === 'empty one/-x' && e.IsDir));

    ok(['delete', '--include', 'per*', 'rita:moved']);
    assert.deepEqual(readdirSync(join(home, 'moved', 'deeper')).filter((n) => n.startsWith('per')), []);
    ok(['rmdirs', 'rita:moved']);
    assert.ok(!existsSync(join(home, 'moved', 'empty one')), 'the empty directories went');
    assert.ok(existsSync(join(home, 'moved', 'touched #.txt')), 'files stay');
    ok(['purge', 'rita:moved']);
    assert.ok(!existsSync(join(home, 'moved')));
  });

  it('over the byte quota mid-copy: rclone says "Quota exceeded", the usage is exact and no file is half-written', async () => {
    const r = rclone(['copy', source, 'quo:q']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /big\.bin: Failed to copy: .*Quota exceeded/);
    const home = srv.home('quo');
    assert.ok(!existsSync(join(home, 'q', 'big.bin')), 'the upload over the quota left nothing');
    for (const name of Object.keys(files).filter((n) => n !== 'big.bin')) assert.ok(existsSync(join(home, 'q', name)), name);
    const disk = diskUsage(home);
    assert.deepEqual(disk.temps, [], 'no temporary left');
    assert.deepEqual(persistedUsage(srv, 'quo'), { bytes: disk.bytes, files: disk.files });
    assert.ok(disk.bytes <= QUOTA);
    // about reads statvfs@openssh.com, which tells the quota.
    assert.match(ok(['about', 'quo:']), /Total:\s+8 MiB/);
    const records = await srv.auditUntil((x) => x.user === 'quo' && x.event === 'upload' && x.path === '/q/big.bin');
    assert.ok(records.some((x) => x.user === 'quo' && x.event === 'quota-exceeded' && x.path === '/q/big.bin'));
    const up = records.find((x) => x.user === 'quo' && x.event === 'upload' && x.path === '/q/big.bin');
    assert.deepEqual([up?.result, up?.reason], ['failed', 'write failed: quota-exceeded']);
  });

  it('a file over the room left gives its room back at once: the next file of the run, which fits, lands', async () => {
    const room = QUOTA - persistedUsage(srv, 'quo').bytes;
    const dir = join(local, 'over-then-fits');
    mkdirSync(dir);
    writeFileSync(join(dir, 'a-over.bin'), randomBytes(room + MiB));
    const fits = randomBytes(Math.floor(room / 2));
    writeFileSync(join(dir, 'b-fits.bin'), fits);
    // One at a time, in name order: pkg/sftp leaves the failed file's handle open and its connection serves the next.
    const r = rclone(['copy', '--transfers', '1', '--order-by', 'name', dir, 'quo:next']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /a-over\.bin: Failed to copy: .*Quota exceeded/);
    // Before: 'b-fits.bin: Failed to copy: ... Quota exceeded', the room held by a-over.bin's open handle.
    assert.doesNotMatch(r.stderr, /b-fits/);
    const home = srv.home('quo');
    assert.ok(readFileSync(join(home, 'next', 'b-fits.bin')).equals(fits));
    assert.ok(!existsSync(join(home, 'next', 'a-over.bin')));
    const disk = diskUsage(home);
    assert.deepEqual(persistedUsage(srv, 'quo'), { bytes: disk.bytes, files: disk.files });
    const records = await srv.auditUntil((x) => x.user === 'quo' && x.event === 'upload' && x.path === '/next/a-over.bin');
    const over = records.find((x) => x.user === 'quo' && x.event === 'upload' && x.path === '/next/a-over.bin');
    assert.deepEqual([over?.result, over?.reason], ['failed', 'write failed: quota-exceeded']);
  });

  it('without delete or overwrite: refused with "permission denied", the stored file whole, nothing half-written', () => {
    ok(['copy', join(source, 'odd'), 'nod:p']);
    const home = srv.home('nod');
    const changed = join(local, 'nod-changed');
    mkdirSync(changed);
    writeFileSync(join(changed, '-dash.txt'), randomBytes(300 * KiB));
    const r = rclone(['copy', changed, 'nod:p']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /-dash\.txt: Failed to copy: .*permission denied/);
    assert.ok(readFileSync(join(home, 'p', '-dash.txt')).equals(files['odd/-dash.txt']!), 'the stored file is whole');
    // Go's sftp tries RMDIR after the REMOVE refused and shows that answer: "Not a directory" before.
    const deleted = rclone(['delete', 'nod:p/sp ace.txt']);
    assert.notEqual(deleted.code, 0);
    assert.match(deleted.stderr, /sp ace\.txt: Couldn't delete: .*permission denied/);
    assert.notEqual(rclone(['moveto', 'nod:p/per%cent.txt', 'nod:p/-dash.txt']).code, 0, 'a move over a file deletes it first');
    assert.deepEqual(readdirSync(join(home, 'p')).sort(), ODD.slice().sort());
    assert.deepEqual(diskUsage(home).temps, [], 'no temporary left');
  });

  it('without chtimes: each upload is stored, and reported failed unless rclone is told not to set times (README)', () => {
    const r = rclone(['copy', join(source, 'odd'), 'notime:t']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /SetModTime failed: permission denied/);
    for (const name of ODD) assert.ok(readFileSync(join(srv.home('notime'), 't', name)).equals(files[`odd/${name}`]!), name);
    ok(['copy', '--sftp-set-modtime=false', join(source, 'many'), 'notime:m']);
    assert.equal(readdirSync(join(srv.home('notime'), 'm')).length, 60);
  });

  describe('rclone mount', { skip: fuseMissing() }, () => {
    /** `remote` mounted with `options` while `use` runs on its mount point, then unmounted. */
    async function mounted(remote: string, options: string[], use: (mnt: string) => Promise<void>): Promise<void> {
      const mnt = mkdtempSync(join(local, 'mnt-'));
      const mount = spawn('rclone', ['--config', join(local, 'rclone.conf'), '--cache-dir', join(local, 'cache'), 'mount', remote, mnt, ...options], { stdio: 'ignore' });
      const exited = new Promise<number | null>((resolve) => mount.once('exit', resolve));
      try {
        await waitFor('the mount', () => readFileSync('/proc/self/mounts', 'utf8').includes(` ${mnt} fuse.rclone `));
        await use(mnt);
      } finally {
        spawnSync('fusermount', ['-u', mnt], { timeout: 10_000 });
        if (mount.exitCode === null) mount.kill();
        await exited;
      }
    }

    it('--vfs-cache-mode writes: write, append, rename and edit in place through the mount, then unmount', async () => {
      const home = join(srv.home('rita'), 'mounted');
      const read = (name: string) => (existsSync(join(home, name)) ? readFileSync(join(home, name)) : null);
      // Each file is uploaded as it is closed (no write-back delay), so the home shows it once the mount has.
      await mounted('rita:mounted', ['--vfs-cache-mode', 'writes', '--vfs-write-back', '0s'], async (mnt) => {
        writeFileSync(join(mnt, 'a #%.txt'), 'hello\n');
        appendFileSync(join(mnt, 'a #%.txt'), 'more\n');
        // Renamed once its upload is in: rclone 1.60 can move the file on the server before the upload it queued
        // at the close begins, which then lands under the old name, on any server (seen with workers: the rename
        // recorded at .323, that upload begun at .547 by another connection).
        await waitFor('the append', () => read('a #%.txt')?.toString() === 'hello\nmore\n');
        renameSync(join(mnt, 'a #%.txt'), join(mnt, 'b ü.txt'));
        writeFileSync(join(mnt, 'big.bin'), files['big.bin']!);
        writeFileSync(join(mnt, 'edit.txt'), '0123456789');
        await waitFor('the uploads', () => read('edit.txt')?.toString() === '0123456789' && read('big.bin')?.equals(files['big.bin']!) === true);
        const dd = spawnSync('dd', ['of=' + join(mnt, 'edit.txt'), 'bs=1', 'seek=3', 'conv=notrunc'], { input: 'abc' });
        assert.equal(dd.status, 0, String(dd.stderr));
        await waitFor('the edit', () => read('edit.txt')?.toString() === '012abc6789');
        await waitFor('the rename', () => read('b ü.txt')?.toString() === 'hello\nmore\n' && !existsSync(join(home, 'a #%.txt')));
      });
      const records = await srv.auditUntil((x) => x.event === 'upload' && x.path === '/mounted/edit.txt' && x.sha256 === sha256(Buffer.from('012abc6789')));
      const big = transfers(records, 'upload', '/mounted/big.bin');
      assert.deepEqual(big.map((x) => [x.bytes, x.sha256]), [[files['big.bin']!.length, sha256(files['big.bin']!)]]);
    });

    it('--vfs-cache-mode off: a file written straight through, read back from its middle; rclone itself refuses an append', async () => {
      const data = randomBytes(3 * MiB);
      const home = join(srv.home('rita'), 'straight');
      await mounted('rita:straight', ['--vfs-cache-mode', 'off'], async (mnt) => {
        writeFileSync(join(mnt, 'file.bin'), data);
        await waitFor('the upload', () => existsSync(join(home, 'file.bin')) && readFileSync(join(home, 'file.bin')).equals(data));
        const fd = openSync(join(mnt, 'file.bin'), 'r');
        try {
          const got = Buffer.alloc(64 * KiB);
          assert.equal(readSync(fd, got, 0, got.length, MiB), got.length);
          assert.ok(got.equals(data.subarray(MiB, MiB + got.length)));
        } finally {
          closeSync(fd);
        }
        // "Can't open for write without O_TRUNC on existing file without --vfs-cache-mode >= writes"
        assert.throws(() => appendFileSync(join(mnt, 'file.bin'), 'more'));
      });
      assert.ok(readFileSync(join(home, 'file.bin')).equals(data));
      const records = await srv.auditUntil((x) => x.event === 'download' && x.path === '/straight/file.bin');
      assert.deepEqual(transfers(records, 'upload', '/straight/file.bin').map((x) => [x.bytes, x.sha256]), [[data.length, sha256(data)]]);
      // The read from the middle (rclone opens at 0, then again where the read is: two downloads), recorded from
      // where it began, with the hash of what was sent from there.
      const reads = transfers(records, 'download', '/straight/file.bin');
      const middle = reads.find((x) => x.offset === MiB);
      assert.ok(middle, JSON.stringify(reads.map((x) => [x.offset, x.bytes])));
      assert.equal(middle.sha256, sha256(data.subarray(MiB, MiB + Number(middle.bytes))));
      for (const x of reads) assert.equal(x.sha256, sha256(data.subarray(Number(x.offset), Number(x.offset) + Number(x.bytes))));
    });
  });
});

/** Why rclone cannot mount here, or false: FUSE's device and fusermount (Debian's fuse3, which .ci/run's sshfs brings). */
function fuseMissing(): string | false {
  return programMissing('fusermount', 'fuse3') || fuseDeviceUnusable();
}
