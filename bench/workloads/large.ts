/**
 * One large random file (--size, 1 GiB by default) up and down: OpenSSH sftp
 * (aes128-gcm) against OpenSSH, curl over plain FTP and explicit FTPS against
 * vsftpd. Every transfer is checked by size and SHA-256.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { curlBase, ftpUrl, runClient, sftpBatch } from '../clients.js';
import { place, remote, verifyFile } from '../files.js';
import { atLeastPeer, endpointOf, type BenchContext, type Endpoint, type Goal, type PeerName, type Protocol, type Workload } from '../workload.js';

type Direction = 'put' | 'get';
/** Copies the file `from` to `to` (local to remote path, or remote path to local), in seconds. */
type FileClient = (ctx: BenchContext, ep: Endpoint, from: string, to: string) => Promise<{ seconds: number }>;

const DOWN = 'large-down.bin';
const TIMEOUT = 30 * 60_000;

export const sftpFile = (direction: Direction): FileClient => (ctx, ep, from, to) => sftpBatch(ctx, ep, [`${direction} ${from} ${to}`], TIMEOUT);

const curlFile = (tls: boolean, direction: Direction): FileClient => (ctx, ep, from, to) =>
  runClient(ctx.curl, [...curlBase(ep, tls), ...(direction === 'put' ? ['-T', from, ftpUrl(ep, to)] : ['-o', to, ftpUrl(ep, from)])], TIMEOUT);

export function large(protocol: Protocol, direction: Direction, peer: PeerName, goals: Goal[], auditOff: boolean, client: FileClient, how: string): Workload {
  return {
    name: `${protocol}-large-${direction}`,
    group: `${protocol}-large`,
    title: `${protocol === 'ftps' ? 'FTPS explicit' : protocol.toUpperCase()} ${direction} one large file (${how})`,
    protocol,
    peer,
    unit: 'MB/s',
    quick: true,
    auditOff,
    goals,
    async prepare(target, ctx) {
      if (direction === 'get') await place((await ctx.bigFile()).path, join(endpointOf(target, protocol).localDir, DOWN));
    },
    async run(target, ctx) {
      const ep = endpointOf(target, protocol);
      const big = await ctx.bigFile();
      const name = ctx.fresh('large');
      const [from, to, landed] = direction === 'put'
        ? [big.path, remote(ep.remoteDir, name), join(ep.localDir, name)]
        : [remote(ep.remoteDir, DOWN), join(ctx.work, name), join(ctx.work, name)];
      const { seconds } = await client(ctx, ep, from, to);
      await verifyFile(landed, ctx.size, big.sha256, `${target.name} ${protocol} large ${direction}`);
      await rm(landed);
      return { seconds, bytes: ctx.size };
    },
    async cleanup(target) {
      if (direction === 'get') await rm(join(endpointOf(target, protocol).localDir, DOWN), { force: true });
    },
  };
}

const vs = (min: number) => [atLeastPeer(min, 'MB/s', 'vsftpd')];

export const largeWorkloads: Workload[] = [
  ...(['put', 'get'] as const).map((d) => large('sftp', d, 'openssh', [atLeastPeer(1.0, 'MB/s', 'OpenSSH')], true, sftpFile(d), 'OpenSSH sftp, aes128-gcm')),
  // The audit-off row says what the SHA-256 of the audit trail costs, which #13 asks for plain FTP.
  ...(['put', 'get'] as const).map((d) => large('ftp', d, 'vsftpd', vs(0.75), true, curlFile(false, d), 'curl')),
  large('ftps', 'put', 'vsftpd', vs(1.5), false, curlFile(true, 'put'), 'curl'),
  large('ftps', 'get', 'vsftpd', vs(1.1), false, curlFile(true, 'get'), 'curl'),
];
