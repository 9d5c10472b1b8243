import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { sluice } from './helpers/cli.js';
import { RawFtp } from './helpers/ftp-raw.js';
import { postgresMissing, startPostgres } from './helpers/postgres.js';
import { TestServer } from './helpers/server.js';

/*
 * ftp.anonymous.maxSessionsPerIp as the coordinator counts it, found by a
 * review of its first version, which claimed the source's share as a user
 * of its own after the user's place: with workers an address at its share,
 * trying again and again, held the last place often enough to refuse
 * others; PostgreSQL counted each anonymous session twice and kept a row per
 * client address for ever; and the stopping line named a user that does not
 * exist.
 */
const skipPostgres = postgresMissing();
if (skipPostgres) console.log(`# ${skipPostgres}`);

async function anonymous(port: number, from: string): Promise<{ c: RawFtp; code: number; text: string }> {
  const c = await RawFtp.connect(port, false, from);
  await c.read();
  const { code, text } = await c.login('anonymous', 'me@example.org');
  return { c, code, text };
}

/**
 * The reply and what the server logged with it: a refusal that seldom happens says why. The last lines
 * at every level: the 451 seen again on PostgreSQL came with nothing at warn or above (a refusal of kind
 * failure, which the gate logs at info).
 */
const why = async (reply: { code: number; text: string }, srv: TestServer): Promise<string> => {
  // The server's log comes through a pipe of its own: what it logged just before its reply may reach this
  // process after the reply did. A refusal waits for it (a review found the 451's lines could be missing so).
  if (reply.code !== 230) await sleep(500);
  return `${reply.text}\n${srv.log.split('\n').slice(-40).join('\n')}`;
};

function anonymousRoot(): { dir: string; root: string } {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-anon-shares-'));
  const root = join(dir, 'ftp');
  mkdirSync(root, { mode: 0o755 });
  return { dir, root };
}

describe('anonymous shares with workers', () => {
  it('an address at its share, trying again and again, takes no place from others; one user per session at the stop', { timeout: 120_000 }, async () => {
    const { dir, root } = anonymousRoot();
    const srv = await TestServer.start({
      env: { SLUICE_WORKERS: '2' },
      yaml: `ftp:\n  tls: optional\n  anonymous:\n    enabled: true\n    root: ${root}\n    maxSessions: 2\n    maxSessionsPerIp: 1\n`,
    });
    let stop = false;
    try {
      const held = await anonymous(srv.ftpPort, '127.0.0.52');
      assert.equal(held.code, 230, await why(held, srv));
      let tries = 0;
      const loops = Array.from({ length: 8 }, async () => {
        const c = await RawFtp.connect(srv.ftpPort, false, '127.0.0.52');
        await c.read();
        while (!stop && !c.closed) {
          await c.login('anonymous', 'again@example.org');
          tries++;
        }
        c.socket.destroy();
      });
      let refused = 0;
      for (let i = 0; i < 40; i++) {
        const other = await anonymous(srv.ftpPort, '127.0.0.53');
        if (other.code !== 230) refused++;
        await other.c.cmd('QUIT').catch(() => undefined);
        other.c.socket.destroy();
        // Its place is given back when the worker sees the close, a message to the primary later.
        await sleep(50);
      }
      stop = true;
      await Promise.all(loops);
      assert.ok(tries > 100, `the address tried ${tries} times`);
      // Before: 26 of 60 refused. One late give-back of the last place may still refuse one.
      assert.ok(refused <= 1, `${refused} of 40 logins from another address refused`);
      await srv.stop();
      const line = srv.log.split('\n').find((l) => l.includes('"msg":"stopping"')) ?? '{}';
      const workers = (JSON.parse(line) as { workers?: { users: string[] }[] }).workers ?? [];
      assert.deepEqual(workers.flatMap((w) => w.users), ['anonymous'], line);
    } finally {
      stop = true;
      await srv.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('anonymous shares on PostgreSQL', { skip: skipPostgres ?? false }, () => {
  it('an anonymous session is one session, and sources leave no rows behind', { timeout: 120_000 }, async () => {
    const { dir, root } = anonymousRoot();
    const db = await startPostgres();
    const env = { SLUICE_STORE_URL: db.url, SLUICE_NODE_ID: 'node-anon', SLUICE_CERTS_DIR: join(dir, 'certs') };
    const client = new pg.Client({ connectionString: db.url });
    let srv: TestServer | null = null;
    try {
      srv = await TestServer.start({ env, yaml: `ftp:\n  tls: optional\n  anonymous:\n    enabled: true\n    root: ${root}\n    maxSessionsPerIp: 2\n` });
      await client.connect();
      const one = await anonymous(srv.ftpPort, '127.0.0.54');
      // Clean-clone runs under load got 451 here and at the logins below: a release of the last session
      // deadlocked with the next login's claim in PostgreSQL (store/postgres/user-sessions.ts, RELEASE).
      assert.equal(one.code, 230, await why(one, srv));
      for (let i = 1; i <= 5; i++) {
        const passing = await anonymous(srv.ftpPort, `127.0.2.${i}`);
        assert.equal(passing.code, 230, await why(passing, srv));
        await passing.c.cmd('QUIT');
        passing.c.socket.destroy();
      }
      const nodes = sluice(srv.dir, ['store', 'nodes'], undefined, env);
      assert.match(nodes.stdout, /node-anon.*, 1 sessions/, nodes.stdout);
      const names = (await client.query<{ user_name: string }>('SELECT DISTINCT user_name FROM user_session_totals')).rows.map((r) => r.user_name);
      assert.deepEqual(names, ['anonymous']);
      one.c.socket.destroy();
    } finally {
      await client.end().catch(() => undefined);
      await srv?.stop();
      await db.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
