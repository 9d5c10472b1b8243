/**
 * #13's small-file batch as curl does it: one control connection, a URL glob,
 * one data connection per file. curl writes `-w` once per transferred URL, so
 * each file's time comes back and the longest shows any stall between files.
 */
import { mkdir } from 'node:fs/promises';
import { curlBase, ftpUrl, runClient } from '../clients.js';
import { VerifyError } from '../files.js';
import { atLeastPeer, noGapOver, type Workload } from '../workload.js';
import { treeWorkload, type TreeClient } from './tree.js';

function curlTree(tls: boolean, direction: 'put' | 'overwrite' | 'get'): TreeClient {
  return async (ctx, ep, from, to, timeoutMs) => {
    const glob = `f[0000-${String(ctx.files - 1).padStart(4, '0')}]`;
    if (direction === 'get') await mkdir(to);
    const io = direction !== 'get'
      ? ['--ftp-create-dirs', '-T', `${from}/${glob}`, ftpUrl(ep, `${to}/`)]
      : ['-o', `${to}/f#1`, ftpUrl(ep, `${from}/${glob}`)];
    const r = await runClient(ctx.curl, [...curlBase(ep, tls), '-w', '%{time_total}\\n', ...io], timeoutMs);
    const perFile = r.stdout.split('\n').filter((l) => l !== '').map(Number);
    if (perFile.length !== ctx.files) throw new VerifyError(`curl reported ${perFile.length} transfers, ${ctx.files} expected`);
    return { seconds: r.seconds, perFile };
  };
}

export const smallCurlWorkloads: Workload[] = (['ftp', 'ftps'] as const).flatMap((protocol) =>
  (['put', 'get', 'overwrite'] as const).map((direction) =>
    treeWorkload({
      name: `${protocol}-small-${direction}`,
      group: `${protocol}-small`,
      title: `${protocol === 'ftps' ? 'FTPS explicit' : 'FTP'} ${direction} N × 4 KiB, one control connection (curl URL glob)`,
      protocol,
      peer: 'vsftpd',
      // The overwrites stay out of --quick, which must end within 3 minutes, and get no audit-off row.
      quick: direction !== 'overwrite',
      auditOff: direction !== 'overwrite',
      goals: [atLeastPeer(1.0, 'files/s', 'vsftpd'), noGapOver(100)],
      direction,
      client: curlTree(protocol === 'ftps', direction),
    }),
  ),
);
