import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before } from 'node:test';
import type ssh2 from 'ssh2';
import { sluice } from './cli.js';
import { TestServer } from './server.js';
import { sftpOf, sshConnect } from './ssh.js';

/** P, the 64th directory down: a walk keeps it open however deep it goes on. */
export const PINNED = '/work' + '/w'.repeat(62) + '/P';
/** 1,300 directories below P, for links that lead down and back up to it: a lookup through them takes a while. */
export const DOWN = Array.from({ length: 1300 }, () => 'x').join('/');

/**
 * A user with every right but in `dir` (made, with `perms` there), the tree
 * PINNED/DOWN made, and two SFTP sessions: `a` looks up through links while
 * `b` moves P meanwhile (the perm-moved-dir tests).
 */
export async function longLookupWorld(user: string, dir: string, perms: string) {
  const password = `${user} password`;
  const srv = await TestServer.start({ users: [{ name: user, password, args: ['--perms', 'all'] }] });
  assert.equal(sluice(srv.dir, ['user', 'perm', user, dir, perms], undefined, { SLUICE_LOG_LEVEL: 'warn' }).code, 0);
  const home = srv.home(user);
  mkdirSync(join(home, dir), { recursive: true });
  mkdirSync(join(home, PINNED, DOWN), { recursive: true });
  const conns: ssh2.Client[] = [];
  for (let i = 0; i < 2; i++) conns.push(await sshConnect({ port: srv.sftpPort, username: user, password }));
  const [a, b] = await Promise.all(conns.map((c) => sftpOf(c)));
  return {
    srv,
    home,
    a: a as ssh2.SFTPWrapper,
    b: b as ssh2.SFTPWrapper,
    async close(): Promise<void> {
      for (const c of conns) c.end();
      // Too deep for the stop's rmSync (its recursion overflows the stack): rm(1) walks it.
      execFileSync('rm', ['-rf', join(home, 'work'), join(home, dir)]);
      await srv.stop();
    },
  };
}

/** longLookupWorld made before a suite's tests and closed after them; its parts read once it is made. */
export function longLookupSuite(user: string, dir: string, perms: string): { readonly home: string; readonly a: ssh2.SFTPWrapper; readonly b: ssh2.SFTPWrapper } {
  let world: Awaited<ReturnType<typeof longLookupWorld>> | null = null;
  before(async () => {
    world = await longLookupWorld(user, dir, perms);
  });
  after(() => world?.close());
  const made = () => world ?? assert.fail('the suite has not started');
  return {
    get home() {
      return made().home;
    },
    get a() {
      return made().a;
    },
    get b() {
      return made().b;
    },
  };
}
