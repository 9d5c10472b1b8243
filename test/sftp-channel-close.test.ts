// A client that closes its SFTP channel (or drops the connection) while the
// server cannot send: its session must still end. ssh2 completes no write on
// a closing channel and emits the channel's 'close' only once what the client
// sent has been read; a channel whose reading stopped (its budget full of
// replies nobody will take) would wait for that for ever. Nor does an EOF
// first change it: the requests before it are still being answered (see
// sftp-eof.test.ts) when the channel's close ends them; a client that sends
// EOF and then neither reads nor closes is ended by the idle timeout.
import assert from 'node:assert/strict';
import { closeSync, ftruncateSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FXP, MAX_READ, OPEN_FLAGS, Writer } from '../src/sftp/codec.js';
import { TestServer } from './helpers/server.js';
import { initialised, sshConnect } from './helpers/ssh.js';
import { holds, stallWideOpen, until, type Internals } from './helpers/stall.js';

const MiB = 1024 * 1024;
const BIG = 256 * MiB;

describe('an SFTP download whose client stops taking replies, then goes', () => {
  let srv: TestServer;
  let pid: number;
  before(async () => {
    srv = await TestServer.start({ users: [{ name: 'nia', password: 'nia password' }], yaml: 'sftp:\n  maxQueuedBytes: 2MiB\n  idleTimeout: 10\n' });
    pid = srv.pid as number;
    const fd = openSync(join(srv.home('nia'), 'big.bin'), 'w');
    ftruncateSync(fd, BIG);
    closeSync(fd);
  });
  after(() => srv.stop());

  const stalls = {
    'its SSH window shut': (ch: import('ssh2').ClientChannel) => ch.pause(),
    'its socket full': stallWideOpen,
  };
  type End = 'closes the channel' | 'sends EOF, then closes the channel' | 'sends EOF, then nothing' | 'drops the connection';
  const cases: [keyof typeof stalls, End][] = [
    ['its SSH window shut', 'closes the channel'],
    ['its SSH window shut', 'sends EOF, then closes the channel'],
    ['its SSH window shut', 'sends EOF, then nothing'],
    ['its socket full', 'closes the channel'],
    ['its socket full', 'drops the connection'],
  ];
  for (const [stall, end] of cases) {
    it(`with ${stall}, the client ${end}: the session ends, the download recorded aborted, its file closed`, async () => {
      const conn = await sshConnect({ port: srv.sftpPort, username: 'nia', password: 'nia password' });
      conn.on('error', () => undefined);
      const internals = conn as unknown as Internals;
      const port = internals._sock.localPort;
      try {
        const { ch, next } = await initialised(conn);
        ch.write(new Writer(FXP.OPEN, 1).string('/big.bin').uint32(OPEN_FLAGS.READ).uint32(0).finish());
        const opened = await next();
        assert.equal(opened[0], FXP.HANDLE);
        const handle = opened.subarray(9, 9 + opened.readUInt32BE(5));
        stalls[stall](ch, conn);
        // Far more READs than the budget lets run: the server stops reading the channel.
        const reads: Buffer[] = [];
        for (let i = 0; i < 256; i++) reads.push(new Writer(FXP.READ, 10 + i).bytes(handle).uint64(i * MAX_READ).uint32(MAX_READ).finish());
        ch.write(Buffer.concat(reads));
        await new Promise((r) => setTimeout(r, 500));
        assert.ok(holds(pid, 'big.bin'), 'the download is under way');
        if (end.startsWith('sends EOF')) {
          ch.end();
          await new Promise((r) => setTimeout(r, 300));
          assert.ok(holds(pid, 'big.bin'), 'the READs before the EOF are still being answered');
        }
        if (end === 'drops the connection') internals._sock.destroy();
        else if (end !== 'sends EOF, then nothing') ch.close();
        // Silent, it is the idle timeout (10 s here) that ends the connection.
        const records = await srv.auditUntil((r) => r.event === 'logout' && r.port === port, 30_000);
        const download = records.find((r) => r.event === 'download' && r.port === port);
        assert.equal(download?.result, 'aborted', JSON.stringify(download));
        assert.ok(records.some((r) => r.event === 'logout' && r.port === port), 'the session logged out');
        await until('the file closed', () => !holds(pid, 'big.bin'), 5_000);
      } finally {
        internals._sock.destroy();
      }
    });
  }
});
