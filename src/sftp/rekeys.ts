import type ssh2 from 'ssh2';
import type { HeldBack } from '../wire/backlog.js';
import { HELD_OVERHEAD } from './budget.js';

/** SSH_MSG_KEXINIT (RFC 4253 7.1). */
const KEXINIT = 20;
/** The messages of a key exchange method's own (RFC 4250 4.1.2: 30 to 49), the client's first one its answer to ours. */
const KEX_METHOD_FIRST = 30;
const KEX_METHOD_LAST = 49;

/**
 * Key re-exchanges one connection may start at once, and how fast that
 * allowance comes back. A client may start one whenever it likes, and ssh2
 * does each one's key agreement and host key signature on the event loop:
 * 2.2 ms of it with the ed25519 host key, 4.7 ms with RSA (measured here).
 * One ssh2 client re-keying back to back took 40 % of the loop, three took
 * all of it, from every other session of the process (another session's
 * STAT: 15 ms at the 99th percentile before, 61 ms during). Real clients
 * re-key by volume or time: OpenSSH every GiB or more (RekeyLimit's default
 * is 1 to 4 GiB by cipher, no time limit), PuTTY and WinSCP every hour or
 * GB. At the 350 MB/s one connection moves at most, that is once every 3 s:
 * one back every 2 s never runs out at that pace, and the burst covers
 * clients that re-key early on, or a while more often. A flooder gets the
 * burst, then one exchange every 2 s: 0.1 to 0.25 % of the loop. Those are
 * the default key exchanges' figures; an operator who lists the 4096- or
 * 8192-bit groups (diffie-hellman-group16/18-sha512) pays many times more
 * for each.
 */
export const REKEY_BURST = 10;
export const REKEY_REFILL_MS = 2000;

/** A token bucket of key re-exchanges: REKEY_BURST at first, one more each REKEY_REFILL_MS. */
export class RekeyAllowance {
  private tokens = REKEY_BURST;
  private last: number;

  constructor(now = performance.now()) {
    this.last = now;
  }

  /** One re-exchange started at `now`: false once the allowance is spent. */
  take(now = performance.now()): boolean {
    this.tokens = Math.min(REKEY_BURST, this.tokens + (now - this.last) / REKEY_REFILL_MS);
    this.last = now;
    if (this.tokens < 1) return false;
    this.tokens--;
    return true;
  }
}

/**
 * What ssh2's Connection keeps of its wire protocol: the function each
 * decrypted packet goes to, its Decipher's own (where a running exchange's
 * packets go), and the packets it may not send yet.
 */
interface Wire {
  _protocol?: { _onPayload?: unknown; _queue?: readonly Uint8Array[]; _decipher?: { _onPayload?: unknown } };
}

/** What a connection's key re-exchanges are told as the client's packets arrive, before ssh2 sees them. */
export interface KeyExchangeWatch {
  /** The client's KEXINIT began one: false refuses it (that KEXINIT and every packet after it are dropped). */
  started(): boolean;
  /**
   * The client's first key exchange method message of it (a guess sent with
   * its KEXINIT passed over): sent once it had read the server's KEXINIT, so
   * what the server had queued before it has reached the client. From here
   * the exchange is a round trip and the server's own work; before, it takes
   * as long as that queue takes to cross the link, a download's whole
   * window on a slow one.
   */
  answered(): void;
}

/**
 * Whether a KEXINIT payload says a guessed key exchange packet follows it
 * (RFC 4253 7.1 first_kex_packet_follows): the boolean after its ten
 * name-lists. A malformed one is ssh2's to refuse.
 */
function guessFollows(payload: Buffer): boolean {
  let at = 17; // the message type and the 16-byte cookie
  for (let list = 0; list < 10; list++) {
    if (at + 4 > payload.length) return false;
    at += 4 + payload.readUInt32BE(at);
  }
  return payload[at] === 1;
}

/**
 * Tells `watch` of each key re-exchange the client starts as its packets
 * arrive, before ssh2 answers them; ssh2 itself only says so once the
 * exchange is done ('rekey'), its work spent. ssh2 hands each packet to its
 * Protocol's `_onPayload`, and each new set of keys takes the function from
 * there (kex.js): replaced before the first exchange ends, it sees every
 * packet after it, while the first exchange, which is no re-exchange, goes
 * to ssh2's own handler. A re-exchange's own packets, after its KEXINIT, go
 * to a handler ssh2 gives the Decipher as it takes that KEXINIT: wrapped
 * then, to see the client's answer. The message type is the payload's
 * first byte as sluice offers no compression. False if this ssh2 has no
 * such function; one whose Decipher has none tells no answer (the exchange
 * is then left to the idle timeout, as before it had a bound).
 */
export function watchKeyExchanges(client: ssh2.Connection, watch: KeyExchangeWatch): boolean {
  const protocol = (client as unknown as Wire)._protocol;
  if (!protocol || typeof protocol._onPayload !== 'function') return false;
  const passOn = protocol._onPayload as (payload: Buffer) => unknown;
  let refused = false;
  protocol._onPayload = (payload: Buffer): unknown => {
    if (refused) return undefined;
    if (payload[0] !== KEXINIT) return passOn(payload);
    if (!watch.started()) {
      refused = true;
      return undefined;
    }
    const result = passOn(payload);
    const decipher = protocol._decipher;
    if (decipher && typeof decipher._onPayload === 'function') {
      const exchangeOn = decipher._onPayload as (payload: Buffer) => unknown;
      let toSkip: number | null = guessFollows(payload) ? 1 : 0;
      decipher._onPayload = (packet: Buffer): unknown => {
        const type = packet[0] ?? 0;
        if (toSkip !== null && type >= KEX_METHOD_FIRST && type <= KEX_METHOD_LAST) {
          if (toSkip === 0) {
            toSkip = null;
            watch.answered();
          } else toSkip--;
        }
        return exchangeOn(packet);
      };
    }
    return result;
  };
  return true;
}

/**
 * What ssh2 holds back while a key exchange runs: from the client's KEXINIT
 * to the exchange's end only the exchange may be sent (RFC 4253 7.1), so
 * ssh2 queues every other packet (a channel's data as far as the client's
 * window admits) in its Protocol, and hands the queue to the socket once the
 * new keys are in ('handshake'). The socket's backlog does not show it:
 * found by an attack, a client that granted a 4 GiB window, pipelined READs
 * and started a re-exchange it never finished had every reply queued there,
 * the SFTP budget given back as each went in, 3 GiB in 9 s. The queue is
 * only appended to until it is handed on, and then replaced: its sum is
 * kept as it grows, not added up again at each look (a client's small
 * packets make it long). Each packet queued counts HELD_OVERHEAD besides
 * its bytes, as a reply in a channel does: by their bytes alone, 60,000
 * STAT replies queued so (about 60 bytes each) grew the server by 18 MiB.
 * A connection served has that Protocol: one whose packets cannot be
 * watched is closed first (watchKeyExchanges).
 */
export function heldDuringKeyExchange(client: ssh2.Connection): HeldBack {
  const wire = client as unknown as Wire;
  let counted: readonly Uint8Array[] | undefined;
  let upTo = 0;
  let sum = 0;
  return {
    bytes(): number {
      const queue = wire._protocol?._queue;
      if (queue !== counted) {
        counted = queue;
        upTo = 0;
        sum = 0;
      }
      if (!queue) return 0;
      for (; upTo < queue.length; upTo++) sum += (queue[upTo] as Uint8Array).length + HELD_OVERHEAD;
      return sum;
    },
    onRelease(wake: () => void): void {
      client.on('handshake', wake);
    },
  };
}
