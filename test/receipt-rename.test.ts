import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { Client } from 'basic-ftp';
import type ssh2 from 'ssh2';
import { UploadReceipts } from '../src/session/checksum.js';
import { nodeKey, type NodeStat } from '../src/session/storage/storage.js';
import { TestServer } from './helpers/server.js';
import { call, sftpOf, sshConnect } from './helpers/ssh.js';

type Rec = Record<string, unknown>;
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
/** Large enough for the server to keep an upload's hash (its receipt: RECEIPT_MIN_BYTES). */
const BIG = 1024 * 1024 + 7;

/** The last record of `event` whose `key` is `value`, once the server flushed it. */
async function recordOf(srv: TestServer, event: string, key: string, value: string): Promise<Rec | undefined> {
  const hit = (l: Rec) => l.event === event && l[key] === value;
  return (await srv.auditUntil(hit)).filter(hit).at(-1);
}

async function put(sftp: ssh2.SFTPWrapper, path: string, data: Buffer, flags: 'w' | 'r+' = 'w'): Promise<void> {
  const h = await call<Buffer>((cb) => sftp.open(path, flags, cb));
  await call((cb) => sftp.write(h, data, 0, data.length, 0, cb));
  await call((cb) => sftp.close(h, cb));
}

/**
 * Found by an interop sweep ("replaced.sha256 missing after upload-then-rename"): an upload's receipt
 * (its hash, kept for the file as the upload left it) is valid while the file's ctime is what it was
 * at the upload's end, and rename(2) and link(2) move a file's ctime. After the commonest pattern of
 * all, an upload under a temporary name renamed at its end (WinSCP's name.filepart, Net::SFTP::Foreign's
 * atomic put, lftp's and rclone's partial names), the receipt was lost: a HASH asked right after read
 * the whole file again, and what later replaced the file recorded no sha256 of it. Each case runs in
 * one connection: with workers, receipts are per process, and one connection is one worker's.
 */
for (const workers of ['1', '2']) {
  describe(`receipts survive a rename and a hard link (workers: ${workers})`, () => {
    let srv: TestServer;
    before(async () => {
      srv = await TestServer.start({
        yaml: 'ftp:\n  tls: optional\n',
        users: [{ name: 'eve', password: 'eve password', args: ['--perms', 'all'] }],
        env: { SLUICE_WORKERS: workers },
      });
    });
    after(() => srv.stop());

    it('SFTP: upload f.filepart, RENAME to f, upload f again: the overwrite records the first content’s sha256', async () => {
      const first = randomBytes(BIG);
      const conn = await sshConnect({ port: srv.sftpPort, username: 'eve', password: 'eve password' });
      try {
        const sftp = await sftpOf(conn);
        await put(sftp, '/f.bin.filepart', first);
        await call((cb) => sftp.rename('/f.bin.filepart', '/f.bin', cb));
        await put(sftp, '/f.bin', Buffer.from('second'));
      } finally {
        conn.end();
      }
      assert.deepEqual((await recordOf(srv, 'upload', 'path', '/f.bin'))?.replaced, { size: first.length, sha256: sha256(first) });
    });

    it('FTP: STOR f.filepart, RNFR/RNTO f: HASH answers from the record; a rename over f records its sha256', async () => {
      const first = randomBytes(BIG);
      const c = new Client(20_000);
      try {
        await c.access({ host: '127.0.0.1', port: srv.ftpPort, user: 'eve', password: 'eve password' });
        await c.uploadFrom(Readable.from([first]), '/g.bin.filepart');
        await c.rename('/g.bin.filepart', '/g.bin');
        assert.equal((await c.send('HASH /g.bin')).message, `213 SHA-256 0-${first.length} ${sha256(first)} /g.bin`);
        // Another connection (with workers, maybe another process, which holds no receipt and reads the file): the same hash.
        const other = new Client(20_000);
        try {
          await other.access({ host: '127.0.0.1', port: srv.ftpPort, user: 'eve', password: 'eve password' });
          assert.equal((await other.send('XSHA256 /g.bin')).message, `250 ${sha256(first)}`);
        } finally {
          other.close();
        }
        await c.uploadFrom(Readable.from([Buffer.from('newer')]), '/g.new');
        await c.rename('/g.new', '/g.bin');
      } finally {
        c.close();
      }
      // The HASH of the connection that uploaded and renamed (the other's is on record too).
      const { session } = (await recordOf(srv, 'upload', 'path', '/g.bin.filepart')) ?? {};
      const sums = await srv.auditUntil((l) => l.event === 'checksum' && l.path === '/g.bin' && l.session === session);
      assert.equal(sums.find((l) => l.event === 'checksum' && l.session === session)?.from_record, true);
      assert.deepEqual((await recordOf(srv, 'rename', 'to', '/g.bin'))?.replaced, { size: first.length, sha256: sha256(first) });
    });

    it('FTP: STOR d.filepart, RNFR/RNTO d, DELE d: the removal records the sha256 of what it removed', async () => {
      const first = randomBytes(BIG);
      const c = new Client(20_000);
      try {
        await c.access({ host: '127.0.0.1', port: srv.ftpPort, user: 'eve', password: 'eve password' });
        await c.uploadFrom(Readable.from([first]), '/d.bin.filepart');
        await c.rename('/d.bin.filepart', '/d.bin');
        await c.remove('/d.bin');
      } finally {
        c.close();
      }
      assert.deepEqual((await recordOf(srv, 'delete', 'path', '/d.bin'))?.removed, { size: first.length, sha256: sha256(first) });
    });

    it('SFTP hardlink@openssh.com: an upload over one of the names records the sha256 of what it replaced', async () => {
      const first = randomBytes(BIG);
      const conn = await sshConnect({ port: srv.sftpPort, username: 'eve', password: 'eve password' });
      try {
        const sftp = await sftpOf(conn);
        await put(sftp, '/h.bin', first);
        await call((cb) => sftp.ext_openssh_hardlink('/h.bin', '/h-link.bin', cb));
        await put(sftp, '/h.bin', Buffer.from('second'));
      } finally {
        conn.end();
      }
      assert.deepEqual((await recordOf(srv, 'upload', 'path', '/h.bin'))?.replaced, { size: first.length, sha256: sha256(first), links: 1 });
    });

    // The negative: a file written in place after its upload (its old mtime set back, as a review did)
    // is no longer what the receipt describes, and the rename must not bring the receipt back to life.
    it('written in place between upload and rename, its mtime set back: no sha256 claimed, HASH reads the file', async () => {
      const first = randomBytes(BIG);
      const conn = await sshConnect({ port: srv.sftpPort, username: 'eve', password: 'eve password' });
      const c = new Client(20_000);
      try {
        const sftp = await sftpOf(conn);
        await put(sftp, '/w.bin.filepart', first);
        const { mtime } = await call<ssh2.Stats>((cb) => sftp.stat('/w.bin.filepart', cb));
        await put(sftp, '/w.bin.filepart', Buffer.from('changed'), 'r+');
        await call((cb) => sftp.setstat('/w.bin.filepart', { mtime, atime: mtime } as ssh2.InputAttributes, cb));
        assert.equal((await call<ssh2.Stats>((cb) => sftp.stat('/w.bin.filepart', cb))).mtime, mtime);
        await call((cb) => sftp.rename('/w.bin.filepart', '/w.bin', cb));
        const now = readFileSync(join(srv.home('eve'), 'w.bin'));
        assert.notEqual(sha256(now), sha256(first));
        await c.access({ host: '127.0.0.1', port: srv.ftpPort, user: 'eve', password: 'eve password' });
        assert.equal((await c.send('HASH /w.bin')).message, `213 SHA-256 0-${now.length} ${sha256(now)} /w.bin`);
        await put(sftp, '/w.bin', Buffer.from('second'));
      } finally {
        c.close();
        conn.end();
      }
      assert.equal((await recordOf(srv, 'checksum', 'path', '/w.bin'))?.from_record, false);
      assert.deepEqual((await recordOf(srv, 'upload', 'path', '/w.bin'))?.replaced, { size: BIG });
    });
  });
}

/**
 * What the real server cannot be made to show on demand: a write in place between the act and the look
 * after it (another worker's, the host's), or another file moved onto the name meanwhile.
 */
describe('UploadReceipts.across: the receipt follows the act only to the same file, unchanged', () => {
  const stat = (over: Partial<NodeStat> = {}): NodeStat => ({ type: 'file', size: BIG, mode: 0o100644, nlink: 1, uid: 1, gid: 1, mtime: new Date(1_000), atime: new Date(1_000), ctimeMs: 2_000, ino: 7, dev: 3, ...over });
  const receipts = (): UploadReceipts => {
    const r = new UploadReceipts();
    r.remember(nodeKey(stat()), BIG, 2_000, 'ab');
    return r;
  };
  const cases: [string, NodeStat | null, string | null][] = [
    ['the same file, its ctime moved by the act (a link: one name more)', stat({ ctimeMs: 3_000, nlink: 2 }), 'ab'],
    ['written in place in between: another mtime', stat({ ctimeMs: 3_000, mtime: new Date(2_500) }), null],
    ['written in place in between: another size', stat({ ctimeMs: 3_000, size: BIG + 1 }), null],
    ['another file under the name by then', stat({ ctimeMs: 3_000, ino: 8 }), null],
    ['nothing under the name by then', null, null],
  ];
  for (const [what, after, kept] of cases) {
    it(what, async () => {
      const r = receipts();
      assert.equal(await r.across(stat(), async () => 'done', async () => after), 'done');
      // Nor kept for the file as the act alone left it: the look after it says what the file is.
      const asActed = stat({ ctimeMs: 3_000 });
      assert.equal(r.of(after ?? asActed), kept);
      assert.equal(r.of(asActed), kept);
    });
  }

  it('a file without a receipt is not looked at again; nor after an act that failed', async () => {
    let looks = 0;
    const look = async () => {
      looks++;
      return stat({ ctimeMs: 3_000 });
    };
    await receipts().across(stat({ ctimeMs: 2_001 }), async () => undefined, look);
    await receipts().across(stat({ type: 'dir' }), async () => undefined, look);
    await assert.rejects(receipts().across(stat(), () => Promise.reject(new Error('refused')), look), /refused/);
    assert.equal(looks, 0);
  });
});
