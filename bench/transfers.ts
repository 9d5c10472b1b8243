/**
 * Throughput of sluice beside the servers it is compared with, in one run:
 * SFTP against OpenSSH's sftp-server, FTPS against vsftpd, and sluice with its
 * audit trail (records and SHA-256 of every transfer) on and off. Each server
 * gets the same client (OpenSSH sftp, curl) and the same file; results are
 * medians over the runs, printed as MiB/s and as ratios.
 *
 *   npm run bench -- [--size 1G] [--runs 3]
 *
 * Peers that are not installed (or need root) are skipped with the reason.
 */
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { bytesOf } from '../src/config/size.js';
import { TLS_CERT, TLS_KEY } from '../src/certs/ensure.js';
import { TestServer } from '../test/helpers/server.js';
import { ftpsTransfer, sftpTransfer, type Direction } from './clients.js';
import { cpuSeconds, peakMiB, startOpenSsh, startVsftpd, type Endpoint, type Target } from './peers.js';

const { values } = parseArgs({ options: { size: { type: 'string', default: '1G' }, runs: { type: 'string', default: '3' } } });
const size = bytesOf(values.size);
const runs = Number(values.runs);
if (!(size > 0) || !Number.isInteger(runs) || runs < 1) {
  console.error('usage: npm run bench -- [--size 1G] [--runs 3]');
  process.exit(2);
}

const MiB = 1024 * 1024;
const work = mkdtempSync(join(tmpdir(), 'sluice-bench-'));

async function fileHash(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path, { highWaterMark: 4 * MiB }), hash);
  return hash.digest('hex');
}

/** The test file, random so that nothing on the way can compress it. */
async function makeSource(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(async function* () {
    for (let left = size; left > 0; left -= 4 * MiB) {
      const chunk = randomBytes(Math.min(4 * MiB, left));
      hash.update(chunk);
      yield chunk;
    }
  }, createWriteStream(path));
  return hash.digest('hex');
}

async function startSluice(audit: boolean, pub: string): Promise<{ target: Target; certsDir: string }> {
  const srv = await TestServer.start({
    yaml: `audit:\n  enabled: ${audit}\n`,
    users: [{ name: 'bench', password: 'bench password', args: ['--key', pub] }],
  });
  const storedAt = join(srv.home('bench'), 'bench.bin');
  const ep = (port: number): Endpoint => ({ port, user: 'bench', password: 'bench password', remotePath: '/bench.bin', storedAt });
  const target: Target = {
    name: `sluice (audit ${audit ? 'on' : 'off'})`,
    sftp: ep(srv.sftpPort),
    ftps: ep(srv.ftpPort),
    peakMiB: () => peakMiB(srv.pid),
    cpu: () => ({ loop: cpuSeconds(`/proc/${srv.pid}/task/${srv.pid}/stat`), process: cpuSeconds(`/proc/${srv.pid}/stat`) }),
    stop: () => srv.stop(),
  };
  return { target, certsDir: join(srv.dir, 'certs') };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? (s[(s.length - 1) / 2] as number) : ((s[s.length / 2 - 1] as number) + (s[s.length / 2] as number)) / 2;
}

async function main(): Promise<void> {
  const source = join(work, 'source.bin');
  const back = join(work, 'back.bin');
  const key = join(work, 'id_ed25519');
  spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
  const pub = `${key}.pub`;
  console.log(`creating ${(size / MiB).toFixed(0)} MiB of random data...`);
  const sourceHash = await makeSource(source);

  const targets: Target[] = [];
  const skipped: string[] = [];
  try {
    const on = await startSluice(true, pub);
    targets.push(on.target, (await startSluice(false, pub)).target);
    // vsftpd gets sluice's certificate: the same RSA key size on both sides of the comparison.
    const certs = on.certsDir;
    for (const peer of [() => startOpenSsh(work, readFileSync(pub, 'utf8')), () => startVsftpd(work, join(certs, TLS_CERT), join(certs, TLS_KEY))]) {
      const t = await peer();
      if (typeof t === 'string') skipped.push(t);
      else targets.push(t);
    }

    const times = new Map<string, number[]>();
    const add = (k: string, s: number, into = times) => into.set(k, [...(into.get(k) ?? []), s]);
    // Milliseconds of CPU per MiB moved: steadier from run to run than
    // throughput on a machine whose client and servers share the cores.
    const loopCpu = new Map<string, number[]>();
    const processCpu = new Map<string, number[]>();
    for (let run = 1; run <= runs; run++) {
      // Round robin, in turn forwards and backwards, so drift in the machine's
      // speed spreads evenly over every server.
      const order = run % 2 ? targets : [...targets].reverse();
      for (const protocol of ['sftp', 'ftps'] as const) {
        for (const t of order) {
          const ep = t[protocol];
          if (!ep) continue;
          const transfer = (d: Direction, local: string) => {
            // Each transfer starts with no dirty pages left by the one before.
            spawnSync('sync');
            return (protocol === 'sftp' ? sftpTransfer(ep, key, work, d, local) : ftpsTransfer(ep, d, local)).catch((err: Error) => {
              throw new Error(`${t.name} ${protocol} ${d}: ${err.message}`);
            });
          };
          const measured = async (d: Direction, local: string) => {
            const before = t.cpu?.();
            add(`${t.name}|${protocol}|${d}`, await transfer(d, local));
            const after = t.cpu?.();
            if (before && after) {
              add(`${t.name}|${protocol}|${d}`, ((after.loop - before.loop) * 1000 * MiB) / size, loopCpu);
              add(`${t.name}|${protocol}|${d}`, ((after.process - before.process) * 1000 * MiB) / size, processCpu);
            }
          };
          await measured('upload', source);
          if (statSync(ep.storedAt).size !== size) throw new Error(`${t.name} ${protocol}: stored size differs`);
          await measured('download', back);
          if ((await fileHash(back)) !== sourceHash) throw new Error(`${t.name} ${protocol}: downloaded bytes differ`);
          rmSync(ep.storedAt);
          rmSync(back);
        }
      }
      process.stdout.write(`run ${run}/${runs} done\n`);
    }

    const rate = (name: string, protocol: string, d: Direction) => {
      const t = times.get(`${name}|${protocol}|${d}`);
      return t ? size / MiB / median(t) : null;
    };
    const fmt = (x: number | null, digits = 1) => (x === null ? '-' : x.toFixed(digits));
    console.log(`\nsluice bench: ${(size / MiB).toFixed(0)} MiB file, median of ${runs} run(s), ${availableParallelism()} cores, Node ${process.version}, loopback`);
    for (const [protocol, client, peer] of [
      ['sftp', `OpenSSH sftp client, aes128-gcm`, 'OpenSSH sftp-server'],
      ['ftps', 'curl, explicit FTPS, passive', 'vsftpd'],
    ] as const) {
      console.log(`\n${protocol.toUpperCase()} (${client})          upload MiB/s   download MiB/s`);
      for (const t of targets.filter((x) => x[protocol])) {
        console.log(`  ${t.name.padEnd(30)} ${fmt(rate(t.name, protocol, 'upload')).padStart(12)} ${fmt(rate(t.name, protocol, 'download')).padStart(16)}`);
      }
      const ratio = (a: string, b: string, d: Direction) => {
        const x = rate(a, protocol, d);
        const y = rate(b, protocol, d);
        return x === null || y === null ? null : x / y;
      };
      const line = (label: string, a: string, b: string) =>
        console.log(`  ${label.padEnd(30)} ${fmt(ratio(a, b, 'upload'), 3).padStart(12)} ${fmt(ratio(a, b, 'download'), 3).padStart(16)}`);
      line('ratio audit on / audit off', 'sluice (audit on)', 'sluice (audit off)');
      const cost = Math.max(...(['upload', 'download'] as const).map((d) => 1 - (ratio('sluice (audit on)', 'sluice (audit off)', d) ?? 1)));
      console.log(`  audit cost ${(cost * 100).toFixed(1)}% of throughput at most (goal: under 5%): ${cost < 0.05 ? 'met' : 'NOT met'}`);
      if (targets.some((t) => t.name === peer)) line(`ratio sluice / ${peer}`, 'sluice (audit on)', peer);
      console.log(`  CPU ms per MiB, event loop / whole process:`);
      for (const t of targets.filter((x) => x.cpu && x[protocol])) {
        const cpu = (d: Direction) => {
          const k = `${t.name}|${protocol}|${d}`;
          const [loop, all] = [loopCpu.get(k), processCpu.get(k)];
          return loop && all ? `${median(loop).toFixed(2)} / ${median(all).toFixed(2)}` : '-';
        };
        console.log(`  ${t.name.padEnd(30)} ${cpu('upload').padStart(12)} ${cpu('download').padStart(16)}`);
      }
    }
    for (const t of targets) {
      const peak = t.peakMiB();
      if (peak !== null) console.log(`peak memory ${t.name}: ${peak.toFixed(0)} MiB`);
    }
    for (const why of skipped) console.log(`skipped: ${why}`);
  } finally {
    await Promise.all(targets.map((t) => t.stop()));
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(`bench failed: ${(err as Error).message}`);
  rmSync(work, { recursive: true, force: true });
  process.exit(1);
});
