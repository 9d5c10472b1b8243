/**
 * #13's small-file batch over SFTP: OpenSSH sftp's `put -r` and `get -r` of one directory, and
 * `put dir/*` over files of the same names (`put -r` into an existing directory would make a
 * subdirectory of the source's name).
 */
import { sftpBatch } from '../clients.js';
import { atLeastPeer, type Workload } from '../workload.js';
import { treeWorkload } from './tree.js';

export const smallSftpWorkloads: Workload[] = (['put', 'get', 'overwrite'] as const).map((direction) =>
  treeWorkload({
    name: `sftp-small-${direction}`,
    group: 'sftp-small',
    title: `SFTP ${direction === 'overwrite' ? 'put dir/* over the same names,' : `${direction} -r`} N × 4 KiB (OpenSSH sftp)`,
    protocol: 'sftp',
    peer: 'openssh',
    quick: direction !== 'overwrite',
    auditOff: direction !== 'overwrite',
    goals: [atLeastPeer(1.0, 'files/s', 'OpenSSH')],
    direction,
    client: (ctx, ep, from, to, timeoutMs) =>
      sftpBatch(ctx, ep, [direction === 'overwrite' ? `put ${from}/* ${to}` : `${direction} -r ${from} ${to}`], timeoutMs),
  }),
);
