import { readFileSync } from 'node:fs';

/** Linux's TCP states as /proc/net/tcp numbers them (include/net/tcp_states.h). */
export const TCP = { ESTABLISHED: 1, TIME_WAIT: 6, CLOSE_WAIT: 8, LAST_ACK: 9 } as const;

/** One end of a TCP connection over IPv4, as the kernel sees it. */
export interface TcpEnd {
  state: number;
  /** Bytes sent and not yet acknowledged by the peer. */
  unacked: number;
  /** Bytes (and a FIN, as one) received and not yet read by the process. */
  unread: number;
  /** Whether a process holds it: one its process has closed (an orphan, still sending) has inode 0. */
  held: boolean;
}

/**
 * The end of the TCP connection from `localPort` to `remotePort` (on loopback, ports say which), or null
 * once the kernel has none; an earlier connection's end between the same ports, waiting out TIME-WAIT, is none.
 */
export function tcpEnd(localPort: number, remotePort: number): TcpEnd | null {
  const hex = (port: number) => port.toString(16).toUpperCase().padStart(4, '0');
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (!f[1]?.endsWith(`:${hex(localPort)}`) || !f[2]?.endsWith(`:${hex(remotePort)}`)) continue;
    const state = parseInt(f[3] ?? '0', 16);
    if (state === TCP.TIME_WAIT) continue;
    const [unacked, unread] = (f[4] ?? '0:0').split(':').map((h) => parseInt(h, 16)) as [number, number];
    return { state, unacked, unread, held: f[9] !== '0' };
  }
  return null;
}

/** Whether a process still holds the server's end of the TCP connection from `clientPort` to `serverPort`. */
export function serverEndHeld(serverPort: number, clientPort: number): boolean {
  return tcpEnd(serverPort, clientPort)?.held ?? false;
}
