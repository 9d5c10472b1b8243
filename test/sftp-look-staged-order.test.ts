import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ATTR, FXP, OPEN_FLAGS, STATUS, Writer } from '../src/sftp/codec.js';
import { TestServer } from './helpers/server.js';
import { initialised, sshConnect } from './helpers/ssh.js';

/*
 * A request by name that acts on this session's own atomic upload (a STAT, a
 * SETSTAT of size: see Session.namedOrStaged) sent right behind WRITEs
 * through that upload's handle, without waiting for their replies (sshfs
 * does not wait for a WRITE's reply before write(2) returns). OpenSSH runs
 * one request at a time: the look sees the bytes written, the cut comes after
 * them. Here the WRITE waits on the user's upload rate, so a look or a cut
 * run beside it comes first.
 */

const CHUNK = 48 * 1024;

describe('a request by name at the atomic upload whose WRITEs were sent before it', () => {
  let srv: TestServer;
  before(async () => {
    srv = await TestServer.start({ users: [{ name: 'gina', password: 'gina password', args: ['--perms', 'all', '--rate-up', '64K'] }] });
  });
  after(() => srv?.stop());

  it('sees the bytes they wrote, and cuts after them', { timeout: 30_000 }, async () => {
    const conn = await sshConnect({ port: srv.sftpPort, username: 'gina', password: 'gina password' });
    try {
      const { ch, next } = await initialised(conn);
      ch.write(new Writer(FXP.OPEN, 1).string('/f.bin').uint32(OPEN_FLAGS.WRITE | OPEN_FLAGS.CREAT | OPEN_FLAGS.TRUNC).uint32(0).finish());
      const opened = await next();
      assert.equal(opened[0], FXP.HANDLE);
      const handle = opened.subarray(9, 9 + opened.readUInt32BE(5));
      ch.write(
        Buffer.concat([
          new Writer(FXP.WRITE, 2).bytes(handle).uint64(0).bytes(Buffer.alloc(CHUNK, 0x61)).finish(),
          new Writer(FXP.STAT, 3).string('/f.bin').finish(),
          new Writer(FXP.SETSTAT, 4).string('/f.bin').uint32(ATTR.SIZE).uint64(10).finish(),
        ]),
      );
      const replies = new Map<number, Buffer>();
      while (replies.size < 3) {
        const reply = await next();
        replies.set(reply.readUInt32BE(1), reply);
      }
      ch.write(new Writer(FXP.CLOSE, 5).bytes(handle).finish());
      const closed = await next();
      assert.equal(closed.readUInt32BE(5), STATUS.OK);
      const looked = replies.get(3);
      assert.equal(looked?.[0], FXP.ATTRS, 'the STAT');
      assert.deepEqual(
        {
          write: replies.get(2)?.readUInt32BE(5),
          setstat: replies.get(4)?.readUInt32BE(5),
          'size the STAT saw': Number(looked.readBigUInt64BE(9)),
          'size once closed': statSync(join(srv.home('gina'), 'f.bin')).size,
        },
        { write: STATUS.OK, setstat: STATUS.OK, 'size the STAT saw': CHUNK, 'size once closed': 10 },
      );
    } finally {
      conn.end();
    }
  });
});
