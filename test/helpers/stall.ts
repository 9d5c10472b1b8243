import assert from 'node:assert/strict';
import { readdirSync, readlinkSync } from 'node:fs';
import type { Socket } from 'node:net';
import type ssh2 from 'ssh2';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Until `done()` holds, checked every 20 ms; fails after `ms`. */
export async function until(what: string, done: () => boolean, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** ssh2 client internals a test of a stalled client reaches for. */
export interface Internals {
  _protocol: { channelWindowAdjust(id: number, amount: number): void; rekey(): void };
  _sock: Socket;
}

/** Whether process `pid` holds a descriptor of a file named `name`. */
export function holds(pid: number, name: string): boolean {
  return readdirSync(`/proc/${pid}/fd`).some((fd) => {
    try {
      return readlinkSync(`/proc/${pid}/fd/${fd}`).endsWith(`/${name}`);
    } catch {
      return false; // closed meanwhile
    }
  });
}

/**
 * Stop reading the connection's TCP socket, then grant the server an
 * enormous window on `channel`: what it sends can only pile up in its own
 * socket.
 */
export function stallWideOpen(channel: ssh2.ClientChannel, conn: ssh2.Client): void {
  (conn as unknown as Internals)._sock.pause();
  openWide(channel, conn);
}

/** Grant the server an enormous window on `channel`: as far as SSH goes, it may send all it has. */
export function openWide(channel: ssh2.ClientChannel, conn: ssh2.Client): void {
  const id = (channel as unknown as { outgoing: { id: number } }).outgoing.id;
  const incoming = (channel as unknown as { incoming: { window: number } }).incoming;
  const more = 2 ** 32 - 1 - incoming.window;
  (conn as unknown as Internals)._protocol.channelWindowAdjust(id, more);
  incoming.window += more;
}

/**
 * Start a key re-exchange and never go on with it: its KEXINIT goes out,
 * nothing after it. From then on the server may send nothing but the
 * exchange (RFC 4253 7.1), so all else it has to send waits in its memory,
 * while the client reads all that comes. What the client is to ask for it
 * must send before.
 */
export function stallKeyExchange(conn: ssh2.Client): void {
  const internals = conn as unknown as Internals;
  internals._protocol.rekey();
  internals._sock.write = (() => true) as Socket['write'];
}
