import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BadMessage, FXP, MAX_PACKET, MAX_READ, PacketFramer, Reader, STATUS, Writer, dataPacket, decodePacket, replyDataLength, statusPacket, type Packet } from '../src/sftp/codec.js';
import { workingBytes } from '../src/sftp/handlers.js';
import { statusFor } from '../src/sftp/status.js';
import { SluiceError, type ErrorKind } from '../src/session/errors.js';
import { cpuSince } from './helpers/cpu-time.js';

/** Push `chunk`, then take every whole packet there is, as the channel does while it can start them all. */
function framed(f: PacketFramer, chunk: Buffer): Packet[] {
  f.push(chunk);
  const out: Packet[] = [];
  for (let p = f.next(); p !== null; p = f.next()) out.push(p);
  return out;
}

describe('SFTP codec (pure)', () => {
  it('round-trips every field type, attrs included', () => {
    const pkt = new Writer(FXP.OPEN, 7).string('/dir/ä.txt').uint32(0x1a).attrs({ size: 2 ** 40, uid: 1, gid: 2, permissions: 0o100644, atime: 10, mtime: 20 }).finish();
    assert.equal(pkt.readUInt32BE(0), pkt.length - 4);
    const p = decodePacket(pkt.subarray(4));
    assert.equal(p.type, FXP.OPEN);
    assert.equal(p.id, 7);
    assert.equal(p.body.string(), '/dir/ä.txt');
    assert.equal(p.body.uint32(), 0x1a);
    assert.deepEqual(p.body.attrs(), { size: 2 ** 40, uid: 1, gid: 2, permissions: 0o100644, atime: 10, mtime: 20 });
  });

  it('a DATA reply holds only the memory its length says (the budget counts that length)', async () => {
    const fill = (n: number) => async (into: Buffer, offset: number) => into.fill(7, offset, offset + n) && n;
    for (const n of [1, 100, MAX_READ / 2 - 1]) {
      const packet = await dataPacket(9, MAX_READ, fill(n));
      assert.ok(packet);
      assert.equal(packet.length, 13 + n);
      assert.equal(packet.readUInt32BE(9), n);
      // A short read answered by a view would pin the whole 255 KiB allocation.
      assert.ok(packet.buffer.byteLength < MAX_READ / 2 + 8192, `${n} bytes read: ${packet.buffer.byteLength} bytes held`);
    }
    const full = await dataPacket(9, MAX_READ, fill(MAX_READ));
    assert.equal(full?.length, 13 + MAX_READ);
    assert.equal(await dataPacket(9, MAX_READ, async () => 0), null);
  });

  it('INIT carries a version, not an id', () => {
    const p = decodePacket(new Writer(FXP.INIT).uint32(3).finish().subarray(4));
    assert.equal(p.id, null);
    assert.equal(p.body.uint32(), 3);
  });

  it('frames packets split anywhere and several in one chunk, keeping nothing of them afterwards', () => {
    const a = new Writer(FXP.STAT, 1).string('/a').finish();
    const b = new Writer(FXP.LSTAT, 2).string('/b').finish();
    const c = new Writer(FXP.READLINK, 3).string('/c').finish();
    const all = Buffer.concat([a, b]);
    for (let cut = 1; cut < all.length; cut++) {
      const f = new PacketFramer();
      const got = [...framed(f, all.subarray(0, cut)), ...framed(f, all.subarray(cut))];
      assert.deepEqual(got.map((p) => [p.type, p.id, p.body.string()]), [[FXP.STAT, 1, '/a'], [FXP.LSTAT, 2, '/b']], `cut at ${cut}`);
      // A byte left behind would shift the next packet's frame.
      const next = framed(f, c);
      assert.deepEqual(next.map((p) => [p.type, p.id, p.body.string()]), [[FXP.READLINK, 3, '/c']], `after a cut at ${cut}`);
    }
  });

  it('frames a packet only when asked: those not taken stay bytes, whatever came after them', () => {
    const stats = Array.from({ length: 3 }, (_, i) => new Writer(FXP.STAT, i + 1).string('/').finish());
    const f = new PacketFramer();
    f.push(Buffer.concat(stats));
    assert.equal(f.next()?.id, 1);
    // A bad length behind them is seen once reached, not before the requests ahead of it are taken.
    f.push(Buffer.from([0, 0, 0, 1]));
    assert.equal(f.next()?.id, 2);
    assert.equal(f.next()?.id, 3);
    assert.throws(() => f.next(), BadMessage);
  });

  it('frames a packet spread over many chunks, one byte each', () => {
    const name = `/${'x'.repeat(300)}`;
    const all = Buffer.concat([new Writer(FXP.STAT, 1).string(name).finish(), new Writer(FXP.LSTAT, 2).string('/b').finish()]);
    const f = new PacketFramer();
    const got = [...all].flatMap((byte) => framed(f, Buffer.from([byte])));
    assert.deepEqual(got.map((p) => [p.type, p.id, p.body.string()]), [[FXP.STAT, 1, name], [FXP.LSTAT, 2, '/b']]);
  });

  it('frames any stream of packets however it is chunked (random packets and cuts, against the packets sent)', () => {
    let seed = 0x5eed;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed % n;
    };
    for (let round = 0; round < 20; round++) {
      const sent = Array.from({ length: 60 }, (_, id) => {
        const data = Buffer.alloc(rand(3) === 0 ? rand(70_000) : rand(64), id);
        return { id, data, wire: new Writer(FXP.WRITE, id).string('h').uint64(id).bytes(data).finish() };
      });
      const wire = Buffer.concat(sent.map((p) => p.wire));
      const f = new PacketFramer();
      const got = [];
      for (let at = 0; at < wire.length; ) {
        const end = Math.min(wire.length, at + 1 + rand(rand(2) === 0 ? 40 : 40_000));
        got.push(...framed(f, Buffer.from(wire.subarray(at, end))));
        at = end;
      }
      assert.equal(got.length, sent.length, `round ${round}`);
      got.forEach((p, i) => {
        assert.equal(p.id, i);
        assert.equal(p.size, sent[i]!.wire.length);
        p.body.bytes();
        p.body.uint64();
        assert.ok(p.body.bytes().equals(sent[i]!.data), `round ${round}, packet ${i}'s data`);
      });
    }
  });

  it('frames the largest packet sent a byte per chunk in time linear in its bytes', () => {
    const wire = new Writer(FXP.WRITE, 9).string('h').uint64(0).bytes(Buffer.alloc(MAX_PACKET - 64, 3)).finish();
    const f = new PacketFramer();
    const spent = cpuSince();
    const got = [];
    for (let i = 0; i < wire.length; i++) got.push(...framed(f, wire.subarray(i, i + 1)));
    const ms = spent();
    assert.deepEqual(got.map((p) => p.id), [9]);
    // Linear: well under a second here. Shifting the used-up chunks off one by one took 4.5 s, joining them all on each push far longer.
    assert.ok(ms < 3000, `${ms.toFixed(0)} ms of CPU`);
  });

  it('copies only a packet that spans chunks: the packets after it stay views of the chunk they came in', () => {
    const write = (id: number) => new Writer(FXP.WRITE, id).string('h').uint64(0).bytes(Buffer.alloc(32 * 1024, id)).finish();
    const wire = Buffer.concat([write(1), write(2), write(3)]);
    const tail = Buffer.allocUnsafeSlow(wire.length - 100);
    wire.copy(tail, 0, 100);
    const f = new PacketFramer();
    assert.deepEqual(framed(f, wire.subarray(0, 100)), []);
    const packets = framed(f, tail);
    assert.deepEqual(packets.map((p) => p.id), [1, 2, 3]);
    for (const p of packets) assert.ok(p.payload.subarray(-(32 * 1024)).every((b) => b === p.id), `WRITE ${p.id}'s data`);
    assert.notEqual(packets[0]!.payload.buffer, tail.buffer, 'the packet that spans is a copy');
    // Joining the chunks for the first packet used to copy these as well.
    assert.equal(packets[1]!.payload.buffer, tail.buffer, 'the packet behind it is a view of its chunk');
    assert.equal(packets[2]!.payload.buffer, tail.buffer);
  });

  it('refuses an oversized length, or one too short for a type and a uint32, before buffering it', () => {
    for (const length of [0, 1, 2, 3, 4, MAX_PACKET + 1, 0xffffffff]) {
      const head = Buffer.alloc(4);
      head.writeUInt32BE(length);
      assert.throws(() => framed(new PacketFramer(), head), BadMessage, `length ${length}`);
    }
    const init = new Writer(FXP.INIT).uint32(3).finish();
    assert.equal(init.length - 4, 5, 'INIT: the smallest packet there is');
    assert.deepEqual(framed(new PacketFramer(), init).map((p) => p.type), [FXP.INIT]);
  });

  it('a truncated field is BadMessage, never an out-of-bounds read', () => {
    const good = new Writer(FXP.OPEN, 1).string('/file').uint32(1).attrs({}).finish().subarray(4);
    for (let len = 1; len < good.length; len++) {
      assert.throws(() => {
        const p = decodePacket(good.subarray(0, len));
        p.body.string();
        p.body.uint32();
        p.body.attrs();
      }, BadMessage, `length ${len}`);
    }
    // A string length pointing past the packet.
    const lying = Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1]);
    assert.throws(() => new Reader(lying).string(), BadMessage);
  });

  it('builds status packets', () => {
    const p = decodePacket(statusPacket(9, STATUS.EOF, 'End').subarray(4));
    assert.equal(p.type, FXP.STATUS);
    assert.equal(p.body.uint32(), STATUS.EOF);
    assert.equal(p.body.string(), 'End');
  });

  // That no server path reaches a client is shown against the real server (sftp-protocol.test.ts).
  it('maps every error kind to a status', () => {
    const kinds: ErrorKind[] = ['not-found', 'permission-denied', 'quota-exceeded', 'already-exists', 'not-empty', 'invalid-path', 'invalid-argument', 'not-open-for', 'not-a-directory', 'is-a-directory', 'no-space', 'unsupported', 'rejected', 'failure'];
    for (const kind of kinds) {
      const s = statusFor(new SluiceError(kind));
      assert.ok(Object.values(STATUS).includes(s.code));
    }
    assert.equal(statusFor(new SluiceError('not-found')).code, STATUS.NO_SUCH_FILE);
    assert.equal(statusFor(new SluiceError('permission-denied')).code, STATUS.PERMISSION_DENIED);
    assert.equal(statusFor(new SluiceError('unsupported')).code, STATUS.OP_UNSUPPORTED);
    // As OpenSSH's errno_to_portable() answers ENOTDIR.
    assert.equal(statusFor(new SluiceError('not-a-directory')).code, STATUS.NO_SUCH_FILE);
    // And EINVAL.
    assert.equal(statusFor(new SluiceError('invalid-argument')).code, STATUS.BAD_MESSAGE);
    // And EBADF: a WRITE through a handle opened without WRITE.
    assert.equal(statusFor(new SluiceError('not-open-for')).code, STATUS.NO_SUCH_FILE);
  });
});

describe('replyDataLength (what a request may cost in reply data)', () => {
  const read = (length: number) => decodePacket(new Writer(FXP.READ, 1).bytes(Buffer.from('h')).uint64(0).uint32(length).finish().subarray(4));
  it('is a READ length, clamped as the handler clamps it', () => {
    assert.equal(replyDataLength(read(100)), 100);
    assert.equal(replyDataLength(read(2 ** 31)), MAX_READ);
    assert.equal(replyDataLength(read(0xffffffff)), MAX_READ);
  });
  it('is 0 for other requests and for a malformed READ', () => {
    assert.equal(replyDataLength(decodePacket(new Writer(FXP.STAT, 1).string('/a').finish().subarray(4))), 0);
    assert.equal(replyDataLength(decodePacket(new Writer(FXP.READ, 1).bytes(Buffer.from('h')).finish().subarray(4))), 0);
  });
  it('workingBytes adds what a handler holds: a copy-data its chunk, other extensions nothing', () => {
    const ext = (name: string) => decodePacket(new Writer(FXP.EXTENDED, 1).string(name).finish().subarray(4));
    assert.equal(workingBytes(read(100)), 100);
    assert.equal(workingBytes(read(0xffffffff)), MAX_READ);
    assert.equal(workingBytes(ext('copy-data')), 64 * 1024);
    assert.equal(workingBytes(ext('statvfs@openssh.com')), 0);
    assert.equal(workingBytes(ext('no-such')), 0);
    assert.equal(workingBytes(decodePacket(new Writer(FXP.EXTENDED, 1).uint32(99).finish().subarray(4))), 0, 'a name running past the end');
    assert.equal(workingBytes(decodePacket(new Writer(FXP.STAT, 1).string('/a').finish().subarray(4))), 0);
  });
  it('counts the whole packet size, length prefix included', () => {
    const pkt = new Writer(FXP.STAT, 1).string('/a').finish();
    assert.equal(decodePacket(pkt.subarray(4)).size, pkt.length);
  });
});
