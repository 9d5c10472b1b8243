import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type ssh2 from 'ssh2';
import { ATTR, FXP, OPEN_FLAGS, STATUS, Writer } from '../src/sftp/codec.js';
import { TestServer } from './helpers/server.js';
import { initialised, sshConnect } from './helpers/ssh.js';

/*
 * A client sends a change by path (a RENAME, a REMOVE, a SETSTAT...) and,
 * without waiting for its reply, a request naming the path it changed.
 * gvfs's FUSE mount does: `echo b > f` over an existing f ends, after its
 * close(2) has returned, with gvfs's own REMOVE f and RENAME .giosaveXXXX f,
 * and the LSTAT and STAT of the next open(2) of f (`cat f`) went out behind
 * that RENAME. OpenSSH runs one request at a time, and the look finds the
 * file; sluice ran the look beside the rename, missed the name, and `cat`
 * failed with ENOENT (5 of 20 tries over a mount). Here the change and the
 * requests behind it go in one SSH message, so the server starts them all in
 * one turn.
 */

const PASSWORD = 'gina password';

/** Sends `requests` (numbered as written) in one message: every reply, by its number. */
async function inOneMessage(ch: ssh2.ClientChannel, next: () => Promise<Buffer>, requests: Writer[]): Promise<Map<number, Buffer>> {
  ch.write(Buffer.concat(requests.map((w) => w.finish())));
  const replies = new Map<number, Buffer>();
  while (replies.size < requests.length) {
    const reply = await next();
    replies.set(reply.readUInt32BE(1), reply);
  }
  return replies;
}

const typeOf = (reply: Buffer | undefined) => (reply?.[0] === FXP.STATUS ? `STATUS ${reply.readUInt32BE(5)}` : `packet type ${String(reply?.[0])}`);
/** The size in an ATTRS reply (its flags have SIZE first). */
const sizeIn = (reply: Buffer | undefined) => {
  assert.equal(reply?.[0], FXP.ATTRS, `${typeOf(reply)} instead of the file's attributes`);
  assert.ok((reply.readUInt32BE(5) & ATTR.SIZE) !== 0);
  return Number(reply.readBigUInt64BE(9));
};
/** The permission bits in an ATTRS reply of SIZE, UIDGID, PERMISSIONS and times (as toAttrs gives them). */
const modeIn = (reply: Buffer | undefined) => {
  assert.equal(reply?.[0], FXP.ATTRS, `${typeOf(reply)} instead of the file's attributes`);
  assert.equal(reply.readUInt32BE(5) & (ATTR.SIZE | ATTR.UIDGID | ATTR.PERMISSIONS), ATTR.SIZE | ATTR.UIDGID | ATTR.PERMISSIONS);
  return reply.readUInt32BE(25) & 0o777;
};
const statusIn = (reply: Buffer | undefined) => {
  assert.equal(reply?.[0], FXP.STATUS, typeOf(reply));
  return reply.readUInt32BE(5);
};

describe('a request by path sent right behind a change by path', () => {
  let srv: TestServer;
  let conn: ssh2.Client;
  let ch: ssh2.ClientChannel;
  let next: () => Promise<Buffer>;
  let home: string;
  before(async () => {
    srv = await TestServer.start({ users: [{ name: 'gina', password: PASSWORD, args: ['--perms', 'all'] }] });
    home = srv.home('gina');
    conn = await sshConnect({ port: srv.sftpPort, username: 'gina', password: PASSWORD });
    ({ ch, next } = await initialised(conn));
  });
  after(async () => {
    conn?.end();
    await srv?.stop();
  });

  it("finds the file a RENAME put there, as gvfs's replace leaves it (10 of 10)", { timeout: 30_000 }, async () => {
    for (let i = 0; i < 10; i++) {
      writeFileSync(join(home, `.giosave${i}`), 'replacement\n');
      const replies = await inOneMessage(ch, next, [
        new Writer(FXP.RENAME, 1).string(`/.giosave${i}`).string(`/f${i}`),
        new Writer(FXP.LSTAT, 2).string(`/f${i}`),
        new Writer(FXP.STAT, 3).string(`/f${i}`),
        new Writer(FXP.OPEN, 4).string(`/f${i}`).uint32(OPEN_FLAGS.READ).uint32(0),
      ]);
      assert.equal(statusIn(replies.get(1)), STATUS.OK);
      assert.equal(sizeIn(replies.get(2)), 12, `LSTAT, try ${i}`);
      assert.equal(sizeIn(replies.get(3)), 12, `STAT, try ${i}`);
      const opened = replies.get(4);
      assert.equal(opened?.[0], FXP.HANDLE, `OPEN, try ${i}: ${typeOf(opened)}`);
      ch.write(new Writer(FXP.CLOSE, 5).bytes(opened.subarray(9, 9 + opened.readUInt32BE(5))).finish());
      assert.equal(statusIn(await next()), STATUS.OK);
    }
  });

  it('misses the name a REMOVE took, and sees the mode a SETSTAT gave and the directory a MKDIR made', { timeout: 30_000 }, async () => {
    for (let i = 0; i < 10; i++) {
      writeFileSync(join(home, `gone${i}`), 'x');
      writeFileSync(join(home, `mode${i}`), 'x');
      const replies = await inOneMessage(ch, next, [
        new Writer(FXP.REMOVE, 1).string(`/gone${i}`),
        new Writer(FXP.STAT, 2).string(`/gone${i}`),
        new Writer(FXP.SETSTAT, 3).string(`/mode${i}`).uint32(ATTR.PERMISSIONS).uint32(0o600),
        new Writer(FXP.STAT, 4).string(`/mode${i}`),
        new Writer(FXP.MKDIR, 5).string(`/dir${i}`).uint32(0),
        new Writer(FXP.OPENDIR, 6).string(`/dir${i}`),
      ]);
      assert.equal(statusIn(replies.get(1)), STATUS.OK);
      assert.equal(statusIn(replies.get(2)), STATUS.NO_SUCH_FILE, `STAT of the removed name, try ${i}`);
      assert.equal(statusIn(replies.get(3)), STATUS.OK);
      assert.equal(modeIn(replies.get(4)), 0o600, `mode, try ${i}`);
      assert.equal(statusIn(replies.get(5)), STATUS.OK);
      const opened = replies.get(6);
      assert.equal(opened?.[0], FXP.HANDLE, `OPENDIR, try ${i}: ${typeOf(opened)}`);
      ch.write(new Writer(FXP.CLOSE, 7).bytes(opened.subarray(9, 9 + opened.readUInt32BE(5))).finish());
      assert.equal(statusIn(await next()), STATUS.OK);
    }
    assert.equal(existsSync(join(home, 'gone0')), false);
    assert.equal(statSync(join(home, 'mode0')).mode & 0o777, 0o600);
  });

  it('finds the file an OPEN creating it in place made (APPEND, as `echo a >> new`)', { timeout: 30_000 }, async () => {
    for (let i = 0; i < 10; i++) {
      const replies = await inOneMessage(ch, next, [
        new Writer(FXP.OPEN, 1).string(`/log${i}`).uint32(OPEN_FLAGS.WRITE | OPEN_FLAGS.CREAT | OPEN_FLAGS.APPEND).uint32(0),
        new Writer(FXP.LSTAT, 2).string(`/log${i}`),
      ]);
      const opened = replies.get(1);
      assert.equal(opened?.[0], FXP.HANDLE, typeOf(opened));
      assert.equal(sizeIn(replies.get(2)), 0, `LSTAT, try ${i}`);
      ch.write(new Writer(FXP.CLOSE, 3).bytes(opened.subarray(9, 9 + opened.readUInt32BE(5))).finish());
      assert.equal(statusIn(await next()), STATUS.OK);
    }
    assert.equal(readFileSync(join(home, 'log0'), 'utf8'), '');
  });
});
