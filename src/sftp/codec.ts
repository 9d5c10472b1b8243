/**
 * SFTP v3 wire format (draft-ietf-secsh-filexfer-02) plus the OpenSSH
 * extensions we serve. Pure: bytes in, values out, and back. Every read is
 * bounds-checked; a malformed packet raises BadMessage, never a crash.
 */
import { ByteQueue } from '../wire/byte-queue.js';

export const FXP = {
  INIT: 1,
  VERSION: 2,
  OPEN: 3,
  CLOSE: 4,
  READ: 5,
  WRITE: 6,
  LSTAT: 7,
  FSTAT: 8,
  SETSTAT: 9,
  FSETSTAT: 10,
  OPENDIR: 11,
  READDIR: 12,
  REMOVE: 13,
  MKDIR: 14,
  RMDIR: 15,
  REALPATH: 16,
  STAT: 17,
  RENAME: 18,
  READLINK: 19,
  SYMLINK: 20,
  STATUS: 101,
  HANDLE: 102,
  DATA: 103,
  NAME: 104,
  ATTRS: 105,
  EXTENDED: 200,
  EXTENDED_REPLY: 201,
} as const;

export const STATUS = {
  OK: 0,
  EOF: 1,
  NO_SUCH_FILE: 2,
  PERMISSION_DENIED: 3,
  FAILURE: 4,
  BAD_MESSAGE: 5,
  NO_CONNECTION: 6,
  CONNECTION_LOST: 7,
  OP_UNSUPPORTED: 8,
} as const;
export type StatusCode = (typeof STATUS)[keyof typeof STATUS];

export const OPEN_FLAGS = { READ: 0x01, WRITE: 0x02, APPEND: 0x04, CREAT: 0x08, TRUNC: 0x10, EXCL: 0x20 } as const;
export const ATTR = { SIZE: 0x01, UIDGID: 0x02, PERMISSIONS: 0x04, ACMODTIME: 0x08, EXTENDED: 0x80000000 } as const;

/** Largest packet we accept or send (OpenSSH's SFTP_MAX_MSG_LENGTH). */
export const MAX_PACKET = 256 * 1024;
/** Smallest packet a client may send: type byte and uint32 (see PacketFramer). */
const MIN_PACKET = 5;
/** Largest READ we answer in one DATA reply, leaving room for the header. */
export const MAX_READ = MAX_PACKET - 1024;

/** A READ's length as served: clients may ask for up to 4 GiB in one request. */
export function clampRead(length: number): number {
  return Math.min(length, MAX_READ);
}

export class BadMessage extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BadMessage';
  }
}

export interface Attrs {
  size?: number;
  uid?: number;
  gid?: number;
  permissions?: number;
  atime?: number;
  mtime?: number;
}

/** Sequential, bounds-checked reader over one packet's payload. */
export class Reader {
  private pos = 0;
  constructor(private readonly buf: Buffer) {}

  private need(n: number): void {
    if (this.pos + n > this.buf.length) throw new BadMessage('truncated packet');
  }

  byte(): number {
    this.need(1);
    return this.buf[this.pos++] as number;
  }

  uint32(): number {
    this.need(4);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  uint64(): number {
    this.need(8);
    const v = this.buf.readBigUInt64BE(this.pos);
    this.pos += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new BadMessage('64-bit value out of range');
    return Number(v);
  }

  bytes(): Buffer {
    const n = this.uint32();
    this.need(n);
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }

  /** A path or name: UTF-8 text; an invalid sequence becomes U+FFFD, which the path layer refuses (session/paths.ts). */
  string(): string {
    return this.bytes().toString('utf8');
  }

  attrs(): Attrs {
    const flags = this.uint32();
    const a: Attrs = {};
    if (flags & ATTR.SIZE) a.size = this.uint64();
    if (flags & ATTR.UIDGID) {
      a.uid = this.uint32();
      a.gid = this.uint32();
    }
    if (flags & ATTR.PERMISSIONS) a.permissions = this.uint32();
    if (flags & ATTR.ACMODTIME) {
      a.atime = this.uint32();
      a.mtime = this.uint32();
    }
    if (flags & ATTR.EXTENDED) {
      const count = this.uint32();
      for (let i = 0; i < count; i++) {
        this.bytes();
        this.bytes();
      }
    }
    return a;
  }
}

/** Builds one packet: length prefix filled in by finish(). */
export class Writer {
  private chunks: Buffer[] = [];
  private size = 0;

  constructor(type: number, id?: number) {
    this.push(Buffer.alloc(4));
    this.byte(type);
    if (id !== undefined) this.uint32(id);
  }

  private push(b: Buffer): this {
    this.chunks.push(b);
    this.size += b.length;
    return this;
  }

  byte(v: number): this {
    return this.push(Buffer.from([v]));
  }

  uint32(v: number): this {
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32BE(v >>> 0);
    return this.push(b);
  }

  uint64(v: number): this {
    const b = Buffer.allocUnsafe(8);
    b.writeBigUInt64BE(BigInt(Math.max(0, Math.floor(v))));
    return this.push(b);
  }

  bytes(v: Buffer): this {
    this.uint32(v.length);
    return this.push(v);
  }

  string(v: string): this {
    return this.bytes(Buffer.from(v, 'utf8'));
  }

  /** Bytes with no length before them: a last field that runs to the end of the packet. */
  raw(v: Buffer): this {
    return this.push(v);
  }

  attrs(a: Attrs): this {
    let flags = 0;
    if (a.size !== undefined) flags |= ATTR.SIZE;
    if (a.uid !== undefined && a.gid !== undefined) flags |= ATTR.UIDGID;
    if (a.permissions !== undefined) flags |= ATTR.PERMISSIONS;
    if (a.atime !== undefined && a.mtime !== undefined) flags |= ATTR.ACMODTIME;
    this.uint32(flags);
    if (a.size !== undefined) this.uint64(a.size);
    if (flags & ATTR.UIDGID) this.uint32(a.uid as number).uint32(a.gid as number);
    if (a.permissions !== undefined) this.uint32(a.permissions);
    if (flags & ATTR.ACMODTIME) this.uint32(a.atime as number).uint32(a.mtime as number);
    return this;
  }

  finish(): Buffer {
    const out = Buffer.concat(this.chunks, this.size);
    out.writeUInt32BE(this.size - 4, 0);
    return out;
  }
}

export interface Packet {
  type: number;
  /** Request id; absent for INIT. */
  id: number | null;
  body: Reader;
  /** The whole packet's size on the wire, length prefix included. */
  size: number;
  /** What follows the type and id, for looking ahead without consuming `body`. */
  payload: Buffer;
}

/**
 * Splits the channel's byte stream into packets, one when asked: what waits
 * stays bytes (see ByteQueue) until the channel can start it. Framed at
 * once, a chunk of 32 KiB held 3,640 packets of 9 bytes, each about 230
 * bytes of objects, none of them counted in the connection's budget. A
 * declared length over MAX_PACKET, or under 5 bytes, is a protocol
 * violation: every request a client sends holds a type byte and a uint32
 * (INIT's version, any other request's id), and a packet without its id
 * cannot even be answered.
 */
export class PacketFramer {
  private readonly queue = new ByteQueue();

  push(chunk: Buffer): void {
    this.queue.push(chunk);
  }

  /** The next whole packet, taken off; null while its bytes have not all come. */
  next(): Packet | null {
    if (this.queue.size < 4) return null;
    const length = this.queue.peek(4).readUInt32BE(0);
    if (length < MIN_PACKET || length > MAX_PACKET) throw new BadMessage(`bad packet length ${length}`);
    if (this.queue.size < 4 + length) return null;
    return decodePacket(this.queue.take(4 + length).subarray(4));
  }
}

export function decodePacket(packet: Buffer): Packet {
  const head = new Reader(packet);
  const type = head.byte();
  // INIT carries a version, not a request id.
  const id = type === FXP.INIT ? null : head.uint32();
  const payload = packet.subarray(id === null ? 1 : 5);
  return { type, id, body: new Reader(payload), size: 4 + packet.length, payload };
}

/**
 * The most data a request's reply can carry: a READ's length as served; 0 for
 * every other request (their replies are small) and for a malformed READ (it
 * gets a STATUS).
 */
export function replyDataLength(packet: Packet): number {
  if (packet.type !== FXP.READ) return 0;
  try {
    const r = new Reader(packet.payload);
    r.bytes();
    r.uint64();
    return clampRead(r.uint32());
  } catch {
    return 0;
  }
}

/** Bytes of a DATA reply before its data: length, type, id, the data's length. */
const DATA_HEADER = 13;

/** Full-size DATA replies kept for reuse, per process: at most 16 (4 MiB). */
const SPARE_REPLIES = 16;
const spareReplies: Buffer[] = [];
/** Full-size replies handed out and not given back yet, by their memory. */
const lent = new WeakMap<ArrayBufferLike, Buffer>();

/**
 * The buffer of a DATA reply. Full-size ones (OpenSSH's sftp asks for
 * MAX_READ, as limits@openssh.com says) are reused: each new one is 255 KiB
 * outside the heap, and V8 answers that growth with a full collection every
 * 16 MiB or so downloaded (66 for 1 GiB, 13% of the server's time).
 */
function replyBuffer(capacity: number): Buffer {
  if (capacity !== MAX_READ) return Buffer.allocUnsafe(DATA_HEADER + capacity);
  const packet = spareReplies.pop() ?? Buffer.allocUnsafe(DATA_HEADER + MAX_READ);
  lent.set(packet.buffer, packet);
  return packet;
}

/**
 * Give a reply's buffer back for the next READ, once nothing refers to its
 * bytes (ssh2 has copied them into its packets: the channel write's
 * callback). Replies replyBuffer did not lend are left alone.
 */
export function recycleReply(reply: Buffer): void {
  const whole = lent.get(reply.buffer);
  if (whole === undefined) return;
  lent.delete(reply.buffer);
  if (spareReplies.length < SPARE_REPLIES) spareReplies.push(whole);
}

/**
 * A DATA reply whose data is read straight into it (no copy from a read
 * buffer into the packet): `fill` writes up to `capacity` bytes at the
 * offset it is given and says how many it wrote; null when it wrote none.
 * `fill` must not keep the buffer (it may be reused once the reply is sent).
 */
export async function dataPacket(
  id: number,
  capacity: number,
  fill: (into: Buffer, offset: number) => Promise<number>,
): Promise<Buffer | null> {
  const packet = replyBuffer(capacity);
  let n: number;
  try {
    n = await fill(packet, DATA_HEADER);
  } catch (err) {
    recycleReply(packet);
    throw err;
  }
  if (n === 0) {
    recycleReply(packet);
    return null;
  }
  packet.writeUInt32BE(DATA_HEADER - 4 + n, 0);
  packet[4] = FXP.DATA;
  packet.writeUInt32BE(id, 5);
  packet.writeUInt32BE(n, 9);
  if (n === capacity) return packet;
  // A view of a short read would keep the whole allocation alive while the
  // budget counts only the view: a client reading a 1-byte file with 255 KiB
  // READs, never taking the replies, would hold 255 KiB per 14 bytes counted.
  // Nearly full reads keep the view; they waste at most half of what is counted.
  const used = packet.subarray(0, DATA_HEADER + n);
  if (n >= capacity / 2) return used;
  const copy = Buffer.from(used);
  recycleReply(packet);
  return copy;
}

export function statusPacket(id: number, code: StatusCode, message: string): Buffer {
  return new Writer(FXP.STATUS, id).uint32(code).string(message).string('en').finish();
}
