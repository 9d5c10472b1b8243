import type ssh2 from 'ssh2';

/** ssh2's own channel window, and the smallest we grant: two of its 32 KiB packets. */
const SSH2_WINDOW = 2 * 1024 * 1024;
const MIN_WINDOW = 64 * 1024;

/**
 * The SSH window each session channel of a connection is sure of: together
 * they hold at most `maxQueuedBytes`, what the connection's byte budget holds
 * besides. ssh2 grants 2 MiB a channel and keeps re-opening it while the
 * channel's stream buffers up to another 2 MiB, none of it counted: a client
 * whose channels stopped reading made the server hold 4 MiB on each.
 */
export function channelWindow(maxQueuedBytes: number, maxChannels: number): number {
  return Math.min(SSH2_WINDOW, Math.max(MIN_WINDOW, Math.floor(maxQueuedBytes / maxChannels)));
}

/**
 * The SSH windows of one connection's channels, drawn from one pool of
 * `limit` bytes: a channel holds what its window still lets the client send
 * plus what it received and has not read. Each channel is sure of `share`
 * (with the channels allowed, at most the limit); what others do not hold
 * beyond their shares it may borrow, so the one busy channel of a connection
 * (an upload: OpenSSH keeps 64 writes of 255 KiB in flight) gets the whole
 * pool instead of a fixed 1/N of it. A window granted cannot be taken back,
 * so channels opened after one borrowed the rest still get their share: at
 * worst the windows hold limit + (channels - 1) × share.
 */
export class WindowPool {
  private readonly members = new Set<PoolMember>();

  constructor(
    readonly limit: number,
    readonly share: number,
  ) {}

  /** A session channel, from its acceptance on: until its reader tells otherwise, it holds its share. */
  join(): PoolMember {
    const pool = this;
    const member: PoolMember = {
      held: () => pool.share,
      target() {
        let others = 0;
        for (const m of pool.members) if (m !== member) others += Math.max(m.held(), pool.share);
        return Math.max(pool.share, pool.limit - others);
      },
      leave: () => void pool.members.delete(member),
    };
    this.members.add(member);
    return member;
  }
}

export interface PoolMember {
  /** Bytes the channel holds: window still open to its client plus data received and not read. */
  held: () => number;
  /** How much it may hold now. */
  target(): number;
  leave(): void;
}

interface Internals {
  _protocol?: {
    channelOpenConfirm?: (remote: number, local: number, window: number, packetSize: number) => void;
    channelWindowAdjust?: (remote: number, amount: number) => void;
  };
}

/**
 * Accept a session channel granting the client `window` bytes instead of
 * ssh2's fixed 2 MiB (ssh2 has no option for it). Null when this ssh2 keeps
 * its window elsewhere: the caller must then refuse the channel.
 */
export function acceptWithWindow(client: ssh2.Connection, accept: () => ssh2.Session, window: number): ssh2.Session | null {
  const protocol = (client as unknown as Internals)._protocol;
  const confirm = protocol?.channelOpenConfirm;
  if (!protocol || typeof confirm !== 'function') return null;
  protocol.channelOpenConfirm = (remote, local, _window, packetSize) => confirm.call(protocol, remote, local, window, packetSize);
  let session: ssh2.Session;
  try {
    session = accept();
  } finally {
    delete protocol.channelOpenConfirm;
  }
  const incoming = (session as unknown as { _chanInfo?: { incoming?: { window?: unknown } } })._chanInfo?.incoming;
  if (typeof incoming?.window !== 'number') {
    // The client was granted `window`; ssh2 would count it from its own 2 MiB.
    return null;
  }
  incoming.window = window;
  return session;
}

/**
 * The smallest packet a client may ask us to send its session channel's data
 * in. ssh2 cuts what a channel writes into packets of the client's maximum,
 * whatever it is: at 1 byte, each byte became a packet of about 40 on the
 * wire, each encrypted on its own. Found by an attack: the byte budget counts
 * the replies' bytes, so one connection of 10 such channels that read
 * nothing grew the server by 427 MiB (24 MiB at 32 KiB packets), one that
 * read had the server spend 11 µs of the event loop per byte it sent, and
 * a socket so full it stopped reading (readOnlyWhileSent) read the client's
 * EOF unseen, after which ssh2's end() did nothing and the connection
 * outlived its idle timeout and the server's stop. Clients ask for 16 KiB
 * (PuTTY, WinSCP) or 32 KiB (OpenSSH, libssh2, paramiko, ssh2, Go); at 1 KiB
 * a packet's framing adds 4 % to its bytes.
 */
export const MIN_CLIENT_PACKET = 1024;

/** Chunks of the client's channel data below this many bytes are gathered while others wait unread (see ownWindow)... */
const GATHER_BELOW = 1024;
/** ...into buffers of this size. */
const GATHER_ROOM = 16 * 1024;

/**
 * The `used` first bytes of a gathering room, as they go into the stream: the
 * room itself when mostly filled, else a copy of just those bytes. Pushed as
 * a view of the room, a few bytes held all GATHER_ROOM, and a client that
 * sent a byte before each message of GATHER_BELOW made each of them a room of
 * its own: 16 KiB held per byte counted (found by a review). Copied into a
 * buffer of their own size (allocUnsafeSlow): a piece of the shared pool
 * would hold its 8 KiB slab as long as it waits unread.
 */
function roomOrCopy(room: Buffer, used: number): Buffer {
  if (used > room.length / 2) return room.subarray(0, used);
  const bytes = Buffer.allocUnsafeSlow(used);
  room.copy(bytes, 0, 0, used);
  return bytes;
}

/** The largest packet the client takes on an accepted session channel, as its CHANNEL_OPEN said; null when ssh2 keeps it elsewhere. */
export function clientMaxPacket(session: ssh2.Session): number | null {
  const size = (session as unknown as { _chanInfo?: { outgoing?: { packetSize?: unknown } } })._chanInfo?.outgoing?.packetSize;
  return typeof size === 'number' ? size : null;
}

/**
 * Take the window of an accepted subsystem channel over from ssh2, which
 * re-opens it to 2 MiB whenever its stream buffer is below 2 MiB, paused or
 * not. Here the window plus what the stream holds unread never passes what
 * the pool lets the channel hold: the window re-opens only as the channel
 * loop reads, so a channel that stopped reading stops its client once the
 * window is used.
 *
 * ssh2 also drops a peer's channel data only when the window is exactly 0: a
 * peer that ignores the window drives it negative, and everything it sends is
 * buffered. The window we grant is exact, so any byte past it is a broken or
 * hostile peer: drop what it sent and let `onOverrun` end the connection, as
 * OpenSSH does ("peer ignored channel window").
 *
 * Each chunk ssh2 pushes waits in the stream as a Buffer of its own, about
 * 140 bytes of objects besides its bytes, where the window counts only the
 * bytes: a client whose channel had stopped reading sent its window a byte
 * per SSH message and held 144 bytes of the server per byte (837 KiB of
 * window left on one channel: 115 MiB). So a small chunk that comes while
 * others wait unread is copied after them into a buffer gathering such
 * chunks, which goes into the stream once full, or as the reader takes
 * data, or at the client's EOF (OpenSSH keeps a channel's input as bytes).
 *
 * Returns what the channel's reader must call whenever it took data (a
 * 'data' event), or null when this ssh2 keeps its window elsewhere: the
 * caller must then not serve the channel.
 */
export function ownWindow(
  channel: ssh2.ServerChannel,
  client: ssh2.Connection,
  member: PoolMember,
  share: number,
  onOverrun: () => void,
): (() => void) | null {
  const incoming = (channel as { incoming: unknown }).incoming;
  const outgoing = (channel as { outgoing: unknown }).outgoing;
  const adjust = (client as unknown as Internals)._protocol?.channelWindowAdjust;
  if (
    typeof incoming !== 'object' ||
    incoming === null ||
    typeof (incoming as { window?: unknown }).window !== 'number' ||
    typeof outgoing !== 'object' ||
    outgoing === null ||
    typeof (outgoing as { id?: unknown }).id !== 'number' ||
    typeof adjust !== 'function'
  ) {
    return null;
  }
  const protocol = (client as unknown as Internals)._protocol;
  const state = incoming as { window: number };
  const peer = outgoing as { id: number; state: string };
  const push = channel.push.bind(channel);
  let overrun = false;
  /** Small chunks that came while others waited unread, copied together; `gatheredAt` is its first free byte. */
  let gathered: Buffer | null = null;
  let gatheredAt = 0;
  let releasing = false;
  const release = (): void => {
    releasing = false;
    if (gathered === null) return;
    const bytes = roomOrCopy(gathered, gatheredAt);
    gathered = null;
    gatheredAt = 0;
    push(bytes);
  };
  const gather = (chunk: Buffer): void => {
    if (gathered !== null && gatheredAt + chunk.length > gathered.length) release();
    gathered ??= Buffer.allocUnsafeSlow(GATHER_ROOM);
    chunk.copy(gathered, gatheredAt);
    gatheredAt += chunk.length;
  };
  const held = (): number => Math.max(0, state.window) + channel.readableLength + gatheredAt;
  member.held = held;
  /** What the channel may hold as of the last re-opening: the next comes once half of it is used. */
  let granted = share;
  const reopen = (): void => {
    // After the reader's own turn: pushed from within its 'data', the bytes would reach it before the chunk it is handling.
    if (gathered !== null && !releasing) {
      releasing = true;
      process.nextTick(release);
    }
    if (overrun || peer.state !== 'open') return;
    const open = held();
    // In halves, as ssh2 and OpenSSH do: one adjust per packet would double the packets.
    if (open > granted / 2) return;
    granted = member.target();
    if (granted <= open) return;
    state.window += granted - open;
    adjust.call(protocol, peer.id, granted - open);
  };
  // ssh2 subtracts the data's length from the window, then pushes it, and re-opens the window when the push returns true.
  channel.push = (chunk: unknown, encoding?: BufferEncoding): boolean => {
    if (chunk === null) {
      release();
      return push(chunk, encoding);
    }
    if (overrun || state.window < 0) {
      if (!overrun) {
        overrun = true;
        onOverrun();
      }
      return false;
    }
    // What comes after gathered bytes goes after them.
    if (Buffer.isBuffer(chunk) && chunk.length < GATHER_BELOW && (gathered !== null || channel.readableLength > 0)) gather(chunk);
    else {
      release();
      push(chunk, encoding);
    }
    return false;
  };
  // ssh2's _read re-opens the window to 2 MiB. The stream calls it only once between two pushes,
  // so it cannot tell us when a paused stream's reader drained it: the reader's 'data' does.
  (channel as unknown as { _read: () => void })._read = () => undefined;
  return reopen;
}
