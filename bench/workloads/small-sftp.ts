/** #13's small-file batch over SFTP: OpenSSH sftp's `put -r` and `get -r` of one directory. */
import { sftpBatch } from '../clients.js';
import { atLeastPeer, type Workload } from '../workload.js';
import { treeWorkload } from './tree.js';

export const smallSftpWorkloads: Workload[] = (['put', 'get'] as const).map((direction) =>
  treeWorkload({
    name: `sftp-small-${direction}`,
    group: 'sftp-small',
    title: `SFTP ${direction} -r N × 4 KiB (OpenSSH sftp)`,
    protocol: 'sftp',
    peer: 'openssh',
    quick: true,
    auditOff: true,
    goals: [atLeastPeer(1.0, 'files/s', 'OpenSSH')],
    direction,
    client: (ctx, ep, from, to, timeoutMs) => sftpBatch(ctx, ep, [`${direction} -r ${from} ${to}`], timeoutMs),
  }),
);
