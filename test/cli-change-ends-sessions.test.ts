import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sluice } from './helpers/cli.js';
import { codeOrEnded, loggedIn, RawFtp } from './helpers/ftp-raw.js';
import { freePort, TestServer } from './helpers/server.js';

/*
 * `sluice user set` and `sluice user perm` write the store; a live session
 * keeps the permissions and passed the rules of its login. With a server
 * running, a change that takes a permission away, or rules that now refuse a
 * session (an address denied, a protocol taken away), end those sessions, as
 * the admin API's PATCH and PUT do: before, the FTP session went on making
 * directories after `user set --perms list` and after `user perm NAME / none`,
 * and from an address `--deny-ip` had just denied. A change that takes
 * nothing away reaches the live sessions at once instead (before, they kept
 * the permissions of their login until they ended).
 */
describe('sluice user set|perm with a server running: the live sessions the change takes something from end', () => {
  let srv: TestServer;
  const run = (args: string[]) => {
    const r = sluice(srv.dir, args, '', { SLUICE_ADMIN_LISTEN: './admin.sock' });
    assert.equal(r.code, 0, r.stderr);
    return r.stdout;
  };
  const login = (user: string, password: string, from?: string) => loggedIn(srv.ftpPort, user, password, from);
  const mkd = (c: RawFtp, dir: string) => codeOrEnded(c, `MKD ${dir}`);

  before(async () => {
    srv = await TestServer.start({
      env: { SLUICE_ADMIN_LISTEN: './admin.sock' },
      yaml: 'ftp:\n  tls: optional\n',
      users: [
        { name: 'gil', password: 'gil-secret-1' },
        { name: 'hal', password: 'hal-secret-1' },
        { name: 'ida', password: 'ida-secret-1' },
        { name: 'jon', password: 'jon-secret-1' },
        { name: 'kai', password: 'kai-secret-1' },
        { name: 'lee', password: 'lee-secret-1', args: ['--perms', 'list,download,upload'] },
      ],
    });
  });
  after(async () => {
    await srv?.stop();
  });

  it('user set --perms without mkdir', { timeout: 60_000 }, async () => {
    const c = await login('gil', 'gil-secret-1');
    assert.equal(await mkd(c, 'one'), 257);
    assert.equal(run(['user', 'set', 'gil', '--perms', 'list,download']), 'updated user gil; 1 live session(s) ended\n');
    assert.notEqual(await mkd(c, 'two'), 257, 'MKD still allowed after user set --perms took mkdir away');
    c.close();
  });

  it('user perm NAME / none', { timeout: 60_000 }, async () => {
    const c = await login('hal', 'hal-secret-1');
    assert.equal(await mkd(c, 'one'), 257);
    assert.equal(run(['user', 'perm', 'hal', '/', 'none']), 'hal: / -> none; 1 live session(s) ended\n');
    assert.notEqual(await mkd(c, 'two'), 257, 'MKD still allowed after user perm took every permission away');
    c.close();
  });

  it('user set --deny-ip ends the session from that address only; a change that takes nothing ends nothing', { timeout: 60_000 }, async () => {
    const denied = await login('ida', 'ida-secret-1', '127.0.0.31');
    const kept = await login('ida', 'ida-secret-1', '127.0.0.32');
    assert.equal(run(['user', 'set', 'ida', '--deny-ip', '127.0.0.31/32']), 'updated user ida; 1 live session(s) ended\n');
    assert.notEqual(await mkd(denied, 'a'), 257, 'the session from the denied address went on');
    assert.equal(await mkd(kept, 'b'), 257);
    assert.equal(run(['user', 'set', 'ida', '--quota-files', '100']), 'updated user ida\n');
    assert.equal(await mkd(kept, 'c'), 257);
    denied.close();
    kept.close();
  });

  it('user set --require-key ends a session that logged in with a password', { timeout: 60_000 }, async () => {
    const c = await login('jon', 'jon-secret-1');
    assert.equal(await mkd(c, 'one'), 257);
    assert.equal(run(['user', 'set', 'jon', '--require-key']), 'updated user jon; 1 live session(s) ended\n');
    const after = await mkd(c, 'two');
    assert.ok(after === 421 || after === 'ended', `the password session went on after --require-key: ${after}`);
    c.close();
  });

  it('user key remove ends the sessions, as the API does (before, only PostgreSQL\'s trigger did)', { timeout: 60_000 }, async () => {
    const key = join(srv.dir, 'kai_key');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'kai', '-f', key]);
    const fp = /key (SHA256:\S+) to kai/.exec(run(['user', 'key', 'add', 'kai', `${key}.pub`]))?.[1];
    assert.ok(fp);
    const c = await login('kai', 'kai-secret-1');
    assert.equal(await mkd(c, 'one'), 257);
    assert.equal(run(['user', 'key', 'remove', 'kai', fp]), `removed key ${fp} from kai; 1 live session(s) ended\n`);
    const after = await mkd(c, 'two');
    assert.ok(after === 421 || after === 'ended', `the session went on after its user's key was removed: ${after}`);
    c.close();
  });

  it('user set and user perm that only give: the session open before takes the new permissions at once', { timeout: 60_000 }, async () => {
    const c = await login('lee', 'lee-secret-1');
    assert.notEqual(await mkd(c, 'one'), 257, 'mkdir is not given yet');
    assert.equal(run(['user', 'set', 'lee', '--perms', 'list,download,upload,mkdir']), 'updated user lee; 1 live session(s) took the new permissions\n');
    assert.equal(await mkd(c, 'two'), 257, 'the session open before did not take the mkdir given');
    assert.equal(run(['user', 'perm', 'lee', '/two', 'list,download,upload,mkdir,delete']), 'lee: /two -> list,download,upload,mkdir,delete; 1 live session(s) took the new permissions\n');
    writeFileSync(join(srv.home('lee'), 'two', 'f.txt'), 'x');
    assert.equal(await codeOrEnded(c, 'DELE two/f.txt'), 250, 'the session open before did not take the delete given in /two');
    c.close();
  });
});

/*
 * Found by a review: with the admin API on TCP and no SLUICE_ADMIN_TOKEN,
 * `user set` and `user perm` wrote the change, then failed (exit 1) to tell
 * the server, so a rule was stored that the live sessions never heard of.
 * Now such a command is refused before it writes anything.
 */
describe('sluice user set|perm that cannot tell the running server write nothing', () => {
  let srv: TestServer;
  before(async () => {
    srv = await TestServer.start({
      yaml: `ftp:\n  tls: optional\nadmin:\n  listen: 127.0.0.1:${await freePort()}\n`,
      users: [{ name: 'mia', password: 'mia-secret-1' }],
    });
  });
  after(async () => {
    await srv?.stop();
  });

  it('no token: refused, naming SLUICE_ADMIN_TOKEN; the user as before, the session going on', { timeout: 60_000 }, async () => {
    const c = await loggedIn(srv.ftpPort, 'mia', 'mia-secret-1', '127.0.0.31');
    try {
      for (const args of [['user', 'set', 'mia', '--deny-ip', '127.0.0.31/32'], ['user', 'perm', 'mia', '/', 'none']]) {
        const r = sluice(srv.dir, args);
        assert.equal(r.code, 1, `${args.join(' ')}: ${r.stdout}`);
        assert.match(r.stderr, /set SLUICE_ADMIN_TOKEN/);
      }
      const shown = sluice(srv.dir, ['user', 'show', 'mia']).stdout;
      assert.doesNotMatch(shown, /127\.0\.0\.31/, 'no address rule written');
      assert.match(shown, /^permissions +list,download,upload/m, 'no override written');
      assert.equal(await codeOrEnded(c, 'MKD still'), 257);
    } finally {
      c.socket.destroy();
    }
  });
});
