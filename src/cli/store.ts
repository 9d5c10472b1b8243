import { existsSync } from 'node:fs';
import type { Config } from '../config/schema.js';
import { copyStore, requireEmpty } from '../store/copy.js';
import { describeUrl } from '../store/postgres/connection.js';
import { openPostgresStore } from '../store/postgres/store.js';
import { FORGET_AFTER_S } from '../store/postgres/nodes.js';
import { notSluiceDatabase } from '../store/sqlite/db.js';
import { openSqliteStore } from '../store/sqlite/store.js';
import type { NodeHolding, NodeRegistry, Store } from '../store/store.js';
import { UsageError, parse } from './args.js';

export const STORE_HELP = `Usage: sluice store <command> ...

  migrate-from-sqlite FILE [--to URL]
      copy the users (password hashes, settings, address rules, keys, directory
      permissions, usage) and the bans of the SQLite database FILE into
      PostgreSQL, once: the target must be empty. The target is --to URL, else
      the configured store (store: or SLUICE_STORE_URL); prefer those, as a
      password on the command line is visible to other local users.
      FILE must be a sluice database; once the target is reached and found
      empty, FILE is brought to this version's schema, then only read.
      Admin tokens are not copied (only their hashes are kept): create them again.

  nodes
      the nodes sharing the configured PostgreSQL store that hold quota leases
      or count sessions there, and whether each is running.

  forget-node NODE_ID [--force]
      give back what node NODE_ID holds (its quota leases, session counts and
      in-place locks), as its own next start would: for a node that will not
      return. Refused while a node with that id runs, and for 6 s after its
      last heartbeat (a node cut off from PostgreSQL, or frozen, shows as not
      running at once but may still be writing files in place until then).
      --force skips that wait: only for a node known stopped (process gone).
`;

const POSTGRES = /^postgres(ql)?:\/\/./;

export async function storeCommand(args: string[], config: () => Config, out: (s: string) => void): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === undefined || sub === 'help') {
    out(STORE_HELP);
    return sub === undefined ? 2 : 0;
  }
  if (sub === 'nodes' || sub === 'forget-node') return nodesCommand(sub, rest, config, out);
  if (sub !== 'migrate-from-sqlite') throw new UsageError(`unknown store command "${sub}"; see sluice store --help`);
  const { values: v, positionals } = parse(rest, { to: { type: 'string' } }, ['FILE']);
  const file = positionals[0] as string;
  // Opening a SQLite file that is not there would create an empty one and copy nothing.
  if (!existsSync(file)) throw new UsageError(`${file}: no such file`);
  const url = v.to ?? config().store;
  if (!POSTGRES.test(url)) {
    throw new UsageError('no PostgreSQL store to copy into: pass --to postgres://... or set store (SLUICE_STORE_URL)');
  }
  // FILE is opened to be migrated only once the copy can be made: a file that is no sluice database, a target that
  // cannot be reached or is not empty, leave it as it was (found by a review: they left it migrated, or made 0600 and
  // given sluice's tables).
  const why = notSluiceDatabase(file);
  if (why !== null) throw new UsageError(why);
  let from: Store | null = null;
  const to = await openPostgresStore(url, { holdTimeout: config().storeHoldTimeout });
  try {
    await requireEmpty(to);
    from = openSqliteStore(file);
    const r = await copyStore(from, to);
    out(`copied ${r.users} users (${r.keys} keys) and ${r.bans} bans from ${file} into ${describeUrl(url)}\n`);
    if (r.tokensNotCopied.length > 0) {
      out(`admin tokens not copied, create them again (sluice admin token create NAME): ${r.tokensNotCopied.join(', ')}\n`);
    }
    return 0;
  } finally {
    await from?.close();
    await to.close();
  }
}

async function nodesCommand(sub: 'nodes' | 'forget-node', rest: string[], config: () => Config, out: (s: string) => void): Promise<number> {
  const { values, positionals } = parse(rest, sub === 'nodes' ? {} : { force: { type: 'boolean' as const } }, sub === 'nodes' ? [] : ['NODE_ID']);
  const url = config().store;
  if (!POSTGRES.test(url)) throw new UsageError(`store ${sub}: only with a PostgreSQL store (store: or SLUICE_STORE_URL); one SQLite node holds nothing for others`);
  const store = await openPostgresStore(url, { holdTimeout: config().storeHoldTimeout });
  try {
    const nodes = store.nodes as NodeRegistry;
    if (sub === 'nodes') {
      const list = await nodes.list();
      if (list.length === 0) out('no node holds leases or sessions\n');
      for (const n of list) out(`${n.nodeId}\t${n.running ? 'running' : 'not running'}\t${describe(n)}\n`);
      return 0;
    }
    const nodeId = positionals[0] as string;
    const gone = await nodes.forget(nodeId, (values as { force?: boolean }).force === true);
    if (gone === 'running') {
      out(`node ${nodeId} is running: stop it first (a running node's leases are in use)\n`);
      return 1;
    }
    if ('seenSecondsAgo' in gone) {
      out(`node ${nodeId} was alive ${gone.seenSecondsAgo.toFixed(1)} s ago: it may be cut off from PostgreSQL, or frozen, and still writing files in place; `
        + `try again once it has been silent for ${FORGET_AFTER_S} s (it stops writing in place by then), or --force if its process is known gone\n`);
      return 1;
    }
    out(`node ${nodeId}: gave back ${describe(gone)}\n`);
    return 0;
  } finally {
    await store.close();
  }
}

function describe(n: NodeHolding): string {
  return `${n.heldBytes} bytes and ${n.heldFiles} files of quota leases, ${n.sessions} sessions`;
}
