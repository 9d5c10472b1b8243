/** #13's small-file batch as lftp's `mirror` (download) and `mirror -R` (upload) do it, one file at a time. */
import { lftp } from '../clients.js';
import { atLeastPeer, type Workload } from '../workload.js';
import { treeWorkload } from './tree.js';

export const smallLftpWorkloads: Workload[] = (['ftp', 'ftps'] as const).flatMap((protocol) =>
  (['put', 'get'] as const).map((direction) =>
    treeWorkload({
      name: `${protocol}-mirror-${direction}`,
      group: `${protocol}-mirror`,
      title: `${protocol === 'ftps' ? 'FTPS explicit' : 'FTP'} ${direction} N × 4 KiB (lftp mirror${direction === 'put' ? ' -R' : ''})`,
      protocol,
      peer: 'vsftpd',
      quick: false,
      auditOff: false,
      goals: [atLeastPeer(1.0, 'files/s', 'vsftpd')],
      direction,
      // --no-perms: no SITE CHMOD after each file, which is not what is measured here.
      client: (_ctx, ep, from, to, timeoutMs) => lftp(ep, protocol === 'ftps', [`mirror ${direction === 'put' ? '-R --no-perms ' : ''}${from} ${to}`], timeoutMs),
    }),
  ),
);
