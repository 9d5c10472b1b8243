import { spawn, spawnSync } from 'node:child_process';
import { createInterface } from 'node:readline';

/*
 * IPv6 clients from several addresses of one network, and of another, for
 * what counts a client by its source (limits.ipv6Prefix): the host's
 * loopback has ::1 only, and the unprivileged test user cannot add more. A
 * private user and network namespace (unshare -Urn, no root needed) can: its
 * own lo, brought up with the addresses a test asks for (nodad: usable at
 * once). The server runs in it (TestServer's runner), its clients join it
 * (nsenter into the server's namespaces); clamd's unix socket and the
 * server's files are reached as outside, the file system being shared.
 */

/** Brings lo up with the addresses in $1 (blank-separated, each with its prefix), then runs the rest. */
const SETUP = 'ip link set lo up && for a in $1; do ip -6 addr add "$a" dev lo nodad || exit 1; done && shift && exec "$@"';

/**
 * Why a network namespace with IPv6 addresses cannot be made here, or null. Skipped in CI too, as the other
 * namespace tests are (full-disk, special-files): a container may forbid user namespaces; .ci/run installs `ip`.
 */
export function netnsMissing(): string | null {
  const r = spawnSync('unshare', ['-Urn', 'sh', '-c', SETUP, 'sh', '2001:db8::1/64', 'true'], { encoding: 'utf8' });
  if (r.status === 0) return null;
  return `unshare -Urn with IPv6 addresses on lo fails here (${(r.stderr || String(r.error)).trim()})`;
}

/** A TestServer runner: the server in a new user and network namespace whose lo holds `addresses` ('2001:db8::1/64'...). */
export function netnsRunner(addresses: readonly string[]): string[] {
  return ['unshare', '-Urn', 'sh', '-c', SETUP, 'sh', addresses.join(' ')];
}

/**
 * `command` run in the namespaces of process `pid` (a server started under
 * netnsRunner), printing one JSON object a line: the objects so far, and all
 * of them once it exits; stop() kills it if still running.
 */
export function jsonLinesIn(pid: number, command: string, args: readonly string[]): { lines: Record<string, unknown>[]; done: Promise<Record<string, unknown>[]>; stop: () => void } {
  // --preserve-credentials: the test user stays itself (as root in the namespace it could not set its groups).
  const child = spawn('nsenter', ['--preserve-credentials', '-U', '-n', '-t', String(pid), command, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: Record<string, unknown>[] = [];
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d));
  createInterface({ input: child.stdout }).on('line', (line) => lines.push(JSON.parse(line) as Record<string, unknown>));
  const done = new Promise<Record<string, unknown>[]>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve(lines) : reject(new Error(`${command} exited ${code}: ${stderr}`))));
  });
  return { lines, done, stop: () => void (child.exitCode === null && child.kill()) };
}
