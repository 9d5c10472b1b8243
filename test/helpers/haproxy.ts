import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const HAPROXY = '/usr/sbin/haproxy';

/** Why the HAProxy tests cannot run here, or null; in CI HAProxy must be present (.ci/run installs it). */
export function haproxyMissing(): string | null {
  if (existsSync(HAPROXY) && spawnSync(HAPROXY, ['-v']).status === 0) return null;
  if (process.env.CI) throw new Error(`${HAPROXY} is required in CI`);
  return `${HAPROXY} not installed: HAProxy tests skipped`;
}

/**
 * One TCP front: HAProxy listens on `listen` (a port or LOW-HIGH) and passes
 * to `to` (same port when omitted; several ports: round robin between them,
 * one sluice node each), with a PROXY v2 header.
 */
export interface Front {
  name: string;
  listen: string;
  to?: number | number[];
}

/** A real HAProxy in TCP mode on `host`, sending PROXY v2 to sluice on 127.0.0.1; killed by stop(). */
export class HaProxy {
  private constructor(
    private readonly dir: string,
    private readonly child: ChildProcess,
    private readonly output: () => string,
  ) {}

  static async start(host: string, fronts: Front[]): Promise<HaProxy> {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-haproxy-'));
    const cfg = join(dir, 'haproxy.cfg');
    writeFileSync(cfg, config(host, fronts));
    const child = spawn(HAPROXY, ['-f', cfg, '-db'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    child.stdout?.on('data', (d: Buffer) => (text += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (text += d.toString()));
    const ha = new HaProxy(dir, child, () => text);
    const first = fronts[0]?.listen.split('-')[0];
    try {
      await waitForPort(host, Number(first), child);
    } catch (err) {
      await ha.stop();
      throw new Error(`haproxy did not start: ${String(err)}\n${text}`);
    }
    return ha;
  }

  get log(): string {
    return this.output();
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((r) => this.child.once('exit', r));
      this.child.kill('SIGKILL');
      await exited;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function config(host: string, fronts: Front[]): string {
  const server = (name: string, port: number | undefined) => `  server ${name} 127.0.0.1${port === undefined ? '' : `:${port}`} send-proxy-v2 source 127.0.0.1`;
  const sections = fronts.map((f) => {
    const servers = Array.isArray(f.to) ? ['  balance roundrobin', ...f.to.map((port, i) => server(`node${i}`, port))] : [server('sluice', f.to)];
    return `
listen ${f.name}
  bind ${host}:${f.listen}
${servers.join('\n')}`;
  });
  return `global
  maxconn 200

defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
${sections.join('\n')}
`;
}

async function waitForPort(host: string, port: number, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) throw new Error(`exited with ${child.exitCode}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host, port }, () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nothing listening on ${host}:${port}`);
}
