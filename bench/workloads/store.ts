/**
 * #16's store comparison: the same sluice (bench defaults, workers auto) on
 * its default SQLite store and on a PostgreSQL store of its own
 * (SLUICE_STORE_URL, a server started by the bench on loopback), side by side
 * in one run. Login latency (SFTP password, SFTP key, FTPS password, one
 * login after another) and throughput (one large SFTP put and get, a batch of
 * small SFTP puts), each as PostgreSQL over SQLite.
 *
 * The bench user has a byte quota on both, so that every upload takes the
 * quota path (on PostgreSQL: leases in the shared ledger) rather than skipping
 * it as an unlimited user would.
 */
import { readFileSync } from 'node:fs';
import type { Credentials, Protocol } from '../load/sessions-client.js';
import { sftpBatch } from '../clients.js';
import { atLeast, atMost, endpointOf, type BenchContext, type Goal, type SluiceOptions, type Target, type Workload } from '../workload.js';
import { large, sftpFile } from './large.js';
import { client, percentile } from './sessions.js';
import { treeWorkload } from './tree.js';

const SQLITE = 'sluice SQLite';
const POSTGRES = 'sluice PostgreSQL';
const QUOTA = ['--quota-bytes', '100G'];
const SLUICES: SluiceOptions[] = [
  { name: SQLITE, userArgs: QUOTA },
  { name: POSTGRES, userArgs: QUOTA, postgres: true },
];
/** Logins per run: enough for a p95 (the 48th of 50), few enough that argon2's 50 logins take seconds. */
const LOGINS = 50;

const within = (unit: 'MB/s' | 'files/s'): Goal[] => [atLeast(0.9, unit, POSTGRES, SQLITE)];

function logins(name: string, title: string, protocol: Protocol, who: (target: Target, ctx: BenchContext) => Credentials): Workload {
  return {
    name: `store-${name}`,
    group: 'store',
    title: `${title}, ${LOGINS} one after another (connect to logged in)`,
    protocol,
    peer: null,
    unit: 'ms',
    quick: false,
    auditOff: false,
    sluices: SLUICES,
    goals: [atMost(1.1, 'ms', POSTGRES, SQLITE)],
    async run(target, ctx) {
      const ep = endpointOf(target, protocol);
      const c = client({ kind: 'serial', protocol, port: ep.port, count: LOGINS, who: who(target, ctx) });
      const report = await c.report;
      await c.release();
      if (report.kind !== 'serial') throw new Error(`logins: unexpected report ${report.kind}`);
      if (report.error !== null) throw new Error(report.error);
      const ms = report.latencies;
      return {
        seconds: ms.reduce((a, b) => a + b, 0) / 1000,
        value: percentile(ms, 50),
        extra: { 'p95 ms': percentile(ms, 95) },
      };
    },
  };
}

const password = (protocol: Protocol) => (target: Target): Credentials => {
  const ep = endpointOf(target, protocol);
  return { user: ep.user, password: ep.password ?? '' };
};

const key = (target: Target, ctx: BenchContext): Credentials => ({
  ...password('sftp')(target),
  privateKey: readFileSync(ctx.sshKey, 'utf8'),
});

/** A transfer workload of another group, measured here on the two stores. */
function onStores(w: Workload, name: string, unit: 'MB/s' | 'files/s'): Workload {
  return { ...w, name, group: 'store', peer: null, quick: false, auditOff: false, sluices: SLUICES, goals: within(unit) };
}

export const storeWorkloads: Workload[] = [
  logins('sftp-pw', 'SFTP password login (ssh2, argon2id)', 'sftp', password('sftp')),
  logins('sftp-key', 'SFTP public-key login (ssh2)', 'sftp', key),
  logins('ftps-pw', 'FTPS explicit password login (AUTH TLS, USER, PASS)', 'ftps', password('ftps')),
  ...(['put', 'get'] as const).map((d) =>
    onStores(large('sftp', d, 'openssh', [], false, sftpFile(d), 'OpenSSH sftp, aes128-gcm'), `store-sftp-${d}`, 'MB/s')),
  onStores(
    treeWorkload({
      name: 'store-small-put',
      group: 'store',
      title: 'SFTP put -r N × 4 KiB (OpenSSH sftp): a quota reservation and an audit record per file',
      protocol: 'sftp',
      peer: 'openssh',
      quick: false,
      auditOff: false,
      goals: [],
      direction: 'put',
      client: (ctx, ep, from, to, timeoutMs) => sftpBatch(ctx, ep, [`put -r ${from} ${to}`], timeoutMs),
    }),
    'store-small-put',
    'files/s',
  ),
];
