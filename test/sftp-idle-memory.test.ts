import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import type ssh2 from 'ssh2';
import { TestServer } from './helpers/server.js';
import { call, sftpOf, sshConnect } from './helpers/ssh.js';

interface HeapSnapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[]]; edge_fields: string[]; edge_types: [string[]] } };
  nodes: number[];
  edges: number[];
  strings: string[];
}

/** Of the objects whose class is one of `owners`, the Maps and Sets they hold in a field, as `Class.field`, with how many. */
function collectionsHeld(snap: HeapSnapshot, owners: ReadonlySet<string>): { found: Map<string, number>; held: Map<string, number> } {
  const { meta } = snap.snapshot;
  const nf = meta.node_fields.length;
  const ef = meta.edge_fields.length;
  const [iType, iName, iEdges] = ['type', 'name', 'edge_count'].map((f) => meta.node_fields.indexOf(f)) as [number, number, number];
  const [eType, eName, eTo] = ['type', 'name_or_index', 'to_node'].map((f) => meta.edge_fields.indexOf(f)) as [number, number, number];
  const isObject = (node: number) => meta.node_types[0][snap.nodes[node + iType] as number] === 'object';
  const nameOf = (node: number) => snap.strings[snap.nodes[node + iName] as number] as string;
  const found = new Map<string, number>();
  const held = new Map<string, number>();
  for (let node = 0, edge = 0; node < snap.nodes.length; node += nf) {
    const edges = snap.nodes[node + iEdges] as number;
    const owner = isObject(node) && owners.has(nameOf(node)) ? nameOf(node) : null;
    if (owner !== null) found.set(owner, (found.get(owner) ?? 0) + 1);
    for (let k = 0; k < edges; k++, edge += ef) {
      if (owner === null || meta.edge_types[0][snap.edges[edge + eType] as number] !== 'property') continue;
      const to = snap.edges[edge + eTo] as number;
      if (!isObject(to) || (nameOf(to) !== 'Map' && nameOf(to) !== 'Set')) continue;
      const field = `${owner}.${snap.strings[snap.edges[edge + eName] as number]}`;
      held.set(field, (held.get(field) ?? 0) + 1);
    }
  }
  return { found, held };
}

/**
 * The accounts (objects with an account's fields) in the heap, and the
 * distinct objects their permissions' `root` and `dirs` are.
 */
function accountsIn(snap: HeapSnapshot): { accounts: number; roots: number; dirs: number } {
  const { meta } = snap.snapshot;
  const nf = meta.node_fields.length;
  const ef = meta.edge_fields.length;
  const [iName, iEdges] = ['name', 'edge_count'].map((f) => meta.node_fields.indexOf(f)) as [number, number];
  const [eType, eName, eTo] = ['type', 'name_or_index', 'to_node'].map((f) => meta.edge_fields.indexOf(f)) as [number, number, number];
  const firstEdge: number[] = [];
  for (let node = 0, edge = 0; node < snap.nodes.length; node += nf) {
    firstEdge.push(edge);
    edge += (snap.nodes[node + iEdges] as number) * ef;
  }
  const fields = (node: number) => {
    const out = new Map<string, number>();
    const start = firstEdge[node / nf] as number;
    for (let k = 0, edge = start; k < (snap.nodes[node + iEdges] as number); k++, edge += ef) {
      if (meta.edge_types[0][snap.edges[edge + eType] as number] === 'property') out.set(snap.strings[snap.edges[edge + eName] as number] as string, snap.edges[edge + eTo] as number);
    }
    return out;
  };
  let accounts = 0;
  const roots = new Set<number>();
  const dirs = new Set<number>();
  for (let node = 0; node < snap.nodes.length; node += nf) {
    if (snap.strings[snap.nodes[node + iName] as number] !== 'Object') continue;
    const f = fields(node);
    const permissions = f.get('permissions');
    if (!f.has('home') || !f.has('method') || !f.has('passwordMark') || permissions === undefined) continue;
    accounts++;
    const rules = fields(permissions);
    roots.add(rules.get('root') as number);
    dirs.add(rules.get('dirs') as number);
  }
  return { accounts, roots: roots.size, dirs: dirs.size };
}

/** Per SFTP session: the session, its channel and handles, its share of the quota ledger, its home's kept directories, its connection's transport backlog. */
const OWNERS = ['Session', 'SftpChannel', 'HandleTable', 'LedgerHandle', 'DirectoryChain', 'TransportBacklog'];

describe('an idle SFTP session', () => {
  /** A heap snapshot of a server serving `n` idle SFTP sessions of one user, each on a connection of its own. */
  async function idleSessions(t: TestContext, n: number): Promise<HeapSnapshot> {
    const srv = await TestServer.start({
      users: [{ name: 'ida', password: 'ida password' }],
      nodeArgs: ['--heapsnapshot-signal=SIGUSR2'],
    });
    t.after(() => srv.stop());
    const conns: ssh2.Client[] = [];
    t.after(() => conns.forEach((c) => c.end()));
    const sftps: ssh2.SFTPWrapper[] = [];
    for (let i = 0; i < n; i++) {
      const c = await sshConnect({ port: srv.sftpPort, username: 'ida', password: 'ida password' });
      conns.push(c);
      sftps.push(await sftpOf(c));
    }
    process.kill(srv.pid as number, 'SIGUSR2');
    // Written by the server's main thread, once begun: a reply after the file appeared comes once it is whole.
    const written = () => readdirSync(srv.dir).find((f) => f.endsWith('.heapsnapshot'));
    for (const deadline = Date.now() + 30_000; written() === undefined; ) {
      assert.ok(Date.now() < deadline, 'no heap snapshot written');
      await new Promise((r) => setTimeout(r, 50));
    }
    await call<string>((cb) => (sftps[0] as ssh2.SFTPWrapper).realpath('.', cb));
    return JSON.parse(readFileSync(join(srv.dir, written() as string), 'utf8')) as HeapSnapshot;
  }

  it('holds no Map or Set before it uses one (each has a table of four entries from the start, 150-190 bytes)', async (t) => {
    const { found, held } = collectionsHeld(await idleSessions(t, 3), new Set(OWNERS));
    // Each found, or the check below proves nothing (ssh2 has a Session class too: at least 3).
    for (const owner of OWNERS) assert.ok((found.get(owner) ?? 0) >= 3, `${owner}: ${found.get(owner) ?? 0} found`);
    assert.deepEqual(Object.fromEntries(held), {});
  });

  it("holds its login's account, whose permissions are the same Set and Map as every other login's with the same rules", async (t) => {
    assert.deepEqual(accountsIn(await idleSessions(t, 3)), { accounts: 3, roots: 1, dirs: 1 });
  });
});
