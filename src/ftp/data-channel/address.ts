import { isIP } from 'node:net';
import { canonicalAddress } from '../../auth/ip-rules.js';

export interface HostPort {
  host: string;
  port: number;
}

/** `h1,h2,h3,h4,p1,p2` (PORT); null when malformed. */
export function parsePortArg(arg: string): HostPort | null {
  const parts = arg.trim().split(',');
  if (parts.length !== 6 || !parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255)) return null;
  const n = parts.map(Number);
  return { host: n.slice(0, 4).join('.'), port: (n[4] as number) * 256 + (n[5] as number) };
}

/** `|1|132.235.1.2|6275|` or `|2|::1|6275|` (EPRT, RFC 2428); any printable delimiter. */
export function parseEprtArg(arg: string): HostPort | null {
  const text = arg.trim();
  const d = text[0];
  if (!d || d.charCodeAt(0) < 33 || d.charCodeAt(0) > 126) return null;
  const parts = text.split(d);
  if (parts.length !== 5 || parts[0] !== '' || parts[4] !== '') return null;
  const [, af, host = '', port = ''] = parts;
  const family = isIP(host);
  if ((af === '1' && family !== 4) || (af === '2' && family !== 6) || (af !== '1' && af !== '2')) return null;
  if (!/^\d{1,5}$/.test(port) || Number(port) > 65535) return null;
  return { host, port: Number(port) };
}

/**
 * No FTP bounce: an active data connection goes only back to the client that
 * asked for it, and never to a privileged port. Returns why not, or null.
 * Addresses are compared as the same address however written: an IPv6 one
 * has many spellings (case, zero runs, a mapped IPv4 address in hex), and a
 * client's own spelling of its address was refused as another's (found by a
 * review).
 */
export function activeTargetRefusal(target: HostPort, controlPeer: string): string | null {
  if (canonicalAddress(target.host) !== canonicalAddress(controlPeer)) return 'address differs from the control connection';
  if (target.port < 1024) return 'privileged port';
  return null;
}

/** `a,b,c,d,p1,p2` for a 227 reply. */
export function pasvText(ipv4: string, port: number): string {
  return `${ipv4.split('.').join(',')},${Math.floor(port / 256)},${port % 256}`;
}
