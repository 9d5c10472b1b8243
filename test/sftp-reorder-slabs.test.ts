// Chunks ahead of a gap wait for it, copied, within bounds that count what each costs to hold
// (session/sequence-hash.ts). Found by the second review of that count: a small copy came from Node's
// shared 8 KiB pool, as every small allocation does (ssh2 decrypts each packet under 4 KiB into it), and
// one held copy kept its whole slab alive. A client that sends other requests between one-byte WRITEs
// ahead of a gap has each held byte keep most of a slab: measured here, about 1.9 KiB for the 193 bytes
// counted (up to 8 KiB: about 1.4 GiB a process within its 32 MiB).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, it } from 'node:test';
import { FXP, OPEN_FLAGS, Writer } from '../src/sftp/codec.js';
import { TestServer } from './helpers/server.js';
import { initialised, sshConnect } from './helpers/ssh.js';

let srv: TestServer;
before(async () => {
  srv = await TestServer.start({ users: [{ name: 'dave', password: 'dave password' }] });
});
after(() => srv.stop());

/** One-byte chunks held ahead of the file's first byte: within the bound (16 MiB counted), so all of them are held. */
const AHEAD = 30_000;
/** Requests of about half a slab sent between two of them, so that each held byte lands in a slab of its own. */
const SPACERS = 2;
const SPACER = Buffer.alloc(3900, 7);

/** The server's resident memory (VmRSS), in bytes. */
function residentBytes(): number {
  const line = readFileSync(`/proc/${srv.pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'));
  return Number(/(\d+)/.exec(line ?? '')?.[1]) * 1024;
}

it('one-byte WRITEs ahead of a gap, other requests between them, hold about what they are counted for', { timeout: 180_000 }, async (t) => {
  const conn = await sshConnect({ port: srv.sftpPort, username: 'dave', password: 'dave password' });
  let grown = 0;
  try {
    const { ch, next } = await initialised(conn);
    const open = async (id: number, path: string) => {
      ch.write(new Writer(FXP.OPEN, id).string(path).uint32(OPEN_FLAGS.WRITE | OPEN_FLAGS.CREAT | OPEN_FLAGS.TRUNC).uint32(0).finish());
      const opened = await next();
      assert.equal(opened[0], FXP.HANDLE);
      return opened.subarray(9, 9 + opened.readUInt32BE(5));
    };
    const sparse = await open(1, '/sparse.bin');
    const spacer = await open(2, '/spacer.bin');
    const inOrder = await open(3, '/in-order.bin');
    const write = (id: number, handle: Buffer, offset: number, data: Buffer) => new Writer(FXP.WRITE, id).bytes(handle).uint64(offset).bytes(data).finish();
    let id = 4;
    /** AHEAD one-byte WRITEs to `handle` at `offsetOf(1..AHEAD)`, SPACERS others before each; what the server grew by. */
    const send = async (handle: Buffer, offsetOf: (n: number) => number): Promise<number> => {
      const before = residentBytes();
      // In runs, each answered before the next goes: the server's in-flight cap would hold the rest anyway.
      for (let from = 1; from <= AHEAD; from += 100) {
        const upTo = Math.min(from + 100, AHEAD + 1);
        const run: Buffer[] = [];
        for (let n = from; n < upTo; n++) {
          // The spacer file is rewritten at its start: its own hash is given up, and nothing of it is held.
          for (let s = 0; s < SPACERS; s++) run.push(write(id++, spacer, 0, SPACER));
          run.push(write(id++, handle, offsetOf(n), Buffer.from([offsetOf(n) % 251])));
        }
        ch.write(Buffer.concat(run));
        for (let n = 0; n < (upTo - from) * (SPACERS + 1); n++) {
          const reply = await next();
          assert.equal(reply[0], FXP.STATUS);
          assert.equal(reply.readUInt32BE(5), 0);
        }
      }
      return residentBytes() - before;
    };
    // The same traffic first with nothing held (each byte where the file ends): what it leaves for the
    // collector and the allocator keeps is then there already, and what the second round adds is what it holds.
    const unheld = await send(inOrder, (n) => n - 1);
    grown = await send(sparse, (n) => n);
    t.diagnostic(`resident memory grew by ${Math.round(unheld / 1024 / 1024)} MiB, then by ${Math.round(grown / 1024 / 1024)} MiB holding`);
    // The gap filled: every byte is there, in order.
    ch.write(write(id++, sparse, 0, Buffer.from([0])));
    assert.equal((await next()).readUInt32BE(5), 0);
    for (const handle of [sparse, spacer, inOrder]) {
      ch.write(new Writer(FXP.CLOSE, id++).bytes(handle).finish());
      assert.equal((await next()).readUInt32BE(5), 0);
    }
  } finally {
    conn.end();
  }
  const { stored, record: upload } = await srv.uploaded('dave', '/sparse.bin');
  assert.equal(stored.length, AHEAD + 1);
  // Within the bound: held, and hashed in order.
  assert.equal(upload?.sha256, createHash('sha256').update(stored).digest('hex'));
  // What the server grew by is said, not judged: 8-10 MiB on Node 20 with the held copies out of the pool and 56
  // before, but 18-56 MiB on Node 24 with them, as its collector keeps what the traffic left (tried). The
  // copies' own memory is checked where it is exact, in sequence-hash.
});
