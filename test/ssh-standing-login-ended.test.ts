import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type ssh2 from 'ssh2';
import { adminRequest, type AdminTarget } from './helpers/admin-http.js';
import { TestServer } from './helpers/server.js';
import { sftpOf, sshConnect } from './helpers/ssh.js';

/*
 * An SSH connection logs in once and opens its SFTP and SCP sessions later,
 * one per channel; between them (OpenSSH's ControlMaster with no client
 * attached), or before its first, it holds none. Found by a review: such a
 * connection was in no list, so ending its user's sessions (`DELETE
 * /users/NAME/sessions`, `sluice session kill --user`, what SECURITY.md
 * gives an operator against a stolen password) or banning its address ended
 * nothing (`sessionsEnded: 0`), and the connection opened new SFTP sessions
 * afterwards for as long as it stayed; rules changed to refuse it left it
 * open too (its next channel refused, not the connection).
 */

const PASSWORD = 'standing login password';

describe('an SSH connection between its sessions ends with them', () => {
  let srv: TestServer;
  let api: AdminTarget;
  const request = (method: string, path: string, body?: unknown) => adminRequest(api, method, `/api/v1${path}`, body === undefined ? {} : { body });

  before(async () => {
    srv = await TestServer.start({
      env: { SLUICE_ADMIN_LISTEN: './admin.sock' },
      users: ['alice', 'bob', 'carol'].map((name) => ({ name, password: PASSWORD })),
    });
    api = { socketPath: join(srv.dir, 'admin.sock') };
  });
  after(() => srv.stop());

  async function connect(user: string, localAddress?: string): Promise<{ conn: ssh2.Client; closed: Promise<void> }> {
    const conn = await sshConnect({ port: srv.sftpPort, username: user, password: PASSWORD, ...(localAddress === undefined ? {} : { localAddress }) });
    conn.on('error', () => undefined);
    return { conn, closed: new Promise<void>((resolve) => conn.once('close', () => resolve())) };
  }

  /** Logged in, one SFTP session opened and closed again: the connection stays with none. */
  async function between(user: string, localAddress?: string): Promise<{ conn: ssh2.Client; closed: Promise<void> }> {
    const c = await connect(user, localAddress);
    const sftp = await sftpOf(c.conn);
    const gone = new Promise((resolve) => sftp.once('close', resolve));
    sftp.end();
    await gone;
    // Its session's logout is recorded once the session is gone: an end before would find it.
    await srv.auditUntil((r) => r.event === 'logout' && r.user === user);
    return c;
  }

  async function sessionsOf(user: string): Promise<Record<string, unknown>[]> {
    const r = await request('GET', `/sessions?user=${user}`);
    assert.equal(r.status, 200, r.text);
    return r.json as Record<string, unknown>[];
  }

  const within = (p: Promise<void>, ms: number) => Promise.race([p.then(() => 'closed'), new Promise((resolve) => setTimeout(() => resolve('still open'), ms).unref())]);

  it("ending its user's sessions ends it, and one that has opened no session yet", { timeout: 60_000 }, async () => {
    const idle = await between('alice');
    const fresh = await connect('alice');
    assert.equal((await sessionsOf('alice')).length, 2, 'both logins listed');
    const r = await request('DELETE', '/users/alice/sessions');
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, { sessionsEnded: 2 });
    assert.equal(await within(idle.closed, 10_000), 'closed');
    assert.equal(await within(fresh.closed, 10_000), 'closed');
    // Nothing of alice's stays to open a session.
    assert.deepEqual(await sessionsOf('alice'), []);
  });

  it('rules that now refuse it (SFTP taken from its protocols) end it', { timeout: 60_000 }, async () => {
    const idle = await between('carol');
    const r = await request('PATCH', '/users/carol', { protocols: ['ftp', 'ftps'] });
    assert.equal(r.status, 200, r.text);
    assert.equal(await within(idle.closed, 10_000), 'closed');
  });

  it("an administrator's ban of its address ends it", { timeout: 60_000 }, async () => {
    const idle = await between('bob', '127.0.0.5');
    const r = await request('POST', '/bans', { address: '127.0.0.5' });
    assert.equal(r.status, 201, r.text);
    assert.equal((r.json as { sessionsEnded: number }).sessionsEnded, 1);
    assert.equal(await within(idle.closed, 10_000), 'closed');
  });
});
