import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type ssh2 from 'ssh2';
import type { LiveConnection } from '../session/live.js';
import type { SharedLogin } from '../session/shared-login.js';
import { shown } from '../session/unsafe-chars.js';

/** A line on the channel's stderr, which OpenSSH's sftp and scp print: why the server ends it. */
export function tellClient(channel: ssh2.ServerChannel, text: string): void {
  // An operator's reason goes to the user's terminal: one line, its controls shown escaped.
  if (channel.writable && channel.stderr.writable) channel.stderr.write(`sluice: ${shown(text)}\n`);
}

/**
 * Makes every end() of `client`, whoever calls it (the idle timeout, the
 * login deadline, a refusal, the drain, the stop), end its socket as well;
 * the socket's end destroys it GOODBYE_MS later (destroyAfterGoodbye). ssh2's
 * end() sends its DISCONNECT and ends the socket only while the socket reads
 * on (its isWritable): a socket the server had stopped reading, its client
 * not reading its replies (readOnlyWhileSent), which then took the client's
 * FIN without a word ('end' waits for a reader) had every end() pass over
 * it. Found by a test: a client that sent requests until the server stopped
 * reading it, then half-closed, kept its connection and the megabytes
 * unsent to it past its idle timeout and held the server's stop for ever.
 */
export function endsItsSocket(client: ssh2.Connection, socket: Socket): void {
  const end = client.end.bind(client);
  client.end = (): ssh2.Connection => {
    end();
    socket.end();
    return client;
  };
}

/** SSH_MSG_DISCONNECT's reason codes used here (RFC 4253, 11.1). */
export const DISCONNECT = { BY_APPLICATION: 11, TOO_MANY_CONNECTIONS: 12, NO_MORE_AUTH_METHODS_AVAILABLE: 14 } as const;

interface Wire {
  _sock?: Socket;
  _protocol?: {
    _packetRW?: { write?: { allocStartKEX: number; alloc(length: number, force: boolean): Buffer; finalize(packet: Buffer, force: boolean): Buffer } };
    _cipher?: { encrypt(packet: Buffer): void };
  };
}

/**
 * End `client` with a DISCONNECT that says why. ssh2's own (its end()) carries
 * no description, so a client that prints no channel stderr showed a refusal
 * at the session limit as its own guess: rclone reported "unable to
 * authenticate", a wrong password to the user reading it. With the text, Go's
 * clients report "ssh: disconnect, reason 12: ...", OpenSSH's "Received
 * disconnect ...: 12: ...". Sent as ssh2 sends its own (even during a key
 * exchange), then the socket ends; where this ssh2 keeps its writer elsewhere,
 * its end() without the text.
 */
export function endTelling(client: ssh2.Connection, reason: number, text: string): void {
  const { _protocol: protocol, _sock: socket } = client as unknown as Wire;
  const write = protocol?._packetRW?.write;
  const cipher = protocol?._cipher;
  if (!write || !cipher || !socket || typeof write.alloc !== 'function' || typeof write.finalize !== 'function' || typeof cipher.encrypt !== 'function') {
    client.end();
    return;
  }
  if (socket.writable) {
    const description = Buffer.from(shown(text), 'utf8');
    const start = write.allocStartKEX;
    const packet = write.alloc(1 + 4 + 4 + description.length + 4, true);
    packet[start] = 1; // SSH_MSG_DISCONNECT
    packet.writeUInt32BE(reason, start + 1);
    packet.writeUInt32BE(description.length, start + 5);
    description.copy(packet, start + 9);
    packet.writeUInt32BE(0, start + 9 + description.length); // language tag: none
    cipher.encrypt(write.finalize(packet, true));
  }
  socket.end();
}

/** A session channel being served: see ServedChannels.add. */
export interface ServedChannel {
  readonly channel: ssh2.ServerChannel;
  /** Settles once the client has been sent the replies to what it asked so far. */
  answered(): Promise<void>;
  /** Settles once the channel's session is closed and its end recorded. */
  readonly done: Promise<void>;
  /** Whether its session has a checksum under way (Session.hashing). */
  hashing(): boolean;
}

/**
 * The sessions of one SSH connection, one per SFTP or SCP channel, as the
 * shared layer ends them (LiveConnection): together, since ending any of them
 * closes the connection. Each channel's session registers this same object,
 * so the drain (LiveRegistry.drain) waits for the transfers of every channel
 * before it ends the connection. One per channel ended the connection for
 * all as soon as one was idle or its own last transfer ended: a client
 * multiplexing an idle channel (OpenSSH's ControlMaster, a GUI's browsing
 * channel) beside an upload had the upload cut at a stop.
 */
export class ServedChannels implements LiveConnection {
  private readonly served = new Set<ServedChannel>();
  // Once: an end that waited for the last replies may go on after another ended the connection meanwhile
  // (the drain's deadline, when the client stopped reading), and its note then hit a closed stream.
  private ended = false;
  /** The connection's login, once it has logged in: its sessions' logout, told why the server ended it. */
  login: SharedLogin | null = null;

  /** The connection's close, which records its login's logout once its sessions have ended (SharedLogin). */
  private readonly closed: Promise<void>;

  constructor(
    private readonly client: ssh2.Connection,
    private readonly log: Logger,
  ) {
    this.closed = new Promise((resolve) => client.once('close', () => resolve()));
  }

  /** A channel's session is served from now until its `done`. */
  add(channel: ServedChannel): void {
    this.served.add(channel);
    void channel.done.finally(() => this.served.delete(channel));
  }

  /** Whether a session of the connection has a checksum under way: the connection is not idle (see Session.hashing). */
  get hashing(): boolean {
    return [...this.served].some((c) => c.hashing());
  }

  async end(reason: string, afterReply: boolean): Promise<void> {
    // A login with no session open now (between its channels) has its logout give the reason too.
    this.login?.ending(reason);
    const now = [...this.served];
    if (afterReply) await Promise.all(now.map((c) => c.answered()));
    if (!this.ended) {
      this.ended = true;
      this.log.info({ reason }, 'session ended by the server');
      // OpenSSH's clients print the channel's stderr, so the user reads why, as an FTP client reads its
      // 421 (found by a new user's try); others (Go's, libssh2) only the DISCONNECT's description.
      for (const c of this.served) tellClient(c.channel, `session ended: ${reason}`);
      endTelling(this.client, DISCONNECT.BY_APPLICATION, `session ended: ${reason}`);
    }
    // And the login's logout: a connection whose channels closed before it records that at its own close,
    // which comes within GOODBYE_MS of the end (endsItsSocket).
    await Promise.all([...now.map((c) => c.done), this.closed]);
  }
}
