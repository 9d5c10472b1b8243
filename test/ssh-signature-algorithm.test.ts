import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import ssh2 from 'ssh2';
import { TestServer } from './helpers/server.js';
import { sshConnect } from './helpers/ssh.js';

const local = mkdtempSync(join(tmpdir(), 'sluice-sigalg-'));
after(() => rmSync(local, { recursive: true, force: true }));

/**
 * sftp.algorithms.userAuthSignatures refuses SHA-1 `ssh-rsa` signatures by
 * the algorithm name the request carries. That name is the client's word:
 * an RSA key sent under the name `ssh-ed25519` (or an ECDSA one) was
 * verified by the key's own type, whose default hash for RSA is SHA-1, so
 * a SHA-1 signature logged in under the policy that refuses it. The name
 * must match the key it names.
 */
describe('a public-key request whose algorithm name is not its key type', () => {
  let srv: TestServer;
  let rsaKey: string;

  before(async () => {
    rsaKey = join(local, 'rsa_key');
    const k = spawnSync('ssh-keygen', ['-q', '-t', 'rsa', '-b', '2048', '-N', '', '-C', 'rsa', '-f', rsaKey]);
    assert.equal(k.status, 0, String(k.stderr));
    srv = await TestServer.start({ users: [{ name: 'ria', password: 'ria password', args: ['--key', `${rsaKey}.pub`] }] });
  });
  after(() => srv.stop());

  /** A login with the RSA key, each request named `name` and signed with SHA-1: 'ready', or how it ended. */
  function loginAs(name: string): Promise<'ready' | 'refused'> {
    const key = ssh2.utils.parseKey(readFileSync(rsaKey));
    if (key instanceof Error) throw key;
    const client = new ssh2.Client();
    client.on('handshake', () => {
      const proto = (client as unknown as { _protocol: { authPK: (...a: unknown[]) => void } })._protocol;
      const authPK = proto.authPK.bind(proto);
      proto.authPK = (user: unknown, pub: unknown) =>
        authPK(user, pub, name, (data: Buffer, done: (sig: Buffer) => void) => done(key.sign(data, 'sha1') as Buffer));
    });
    return new Promise((resolve) => {
      client.once('ready', () => {
        client.end();
        resolve('ready');
      });
      client.once('error', () => resolve('refused'));
      client.once('close', () => resolve('refused'));
      client.connect({
        host: '127.0.0.1',
        port: srv.sftpPort,
        username: 'ria',
        authHandler: [{ type: 'publickey', username: 'ria', key: readFileSync(rsaKey) }] as never,
        readyTimeout: 20_000,
      });
    });
  }

  it('a SHA-1 RSA signature named ssh-ed25519 does not log in', async () => {
    assert.equal(await loginAs('ssh-ed25519'), 'refused', 'logged in with a SHA-1 signature');
    // A login would be recorded as it was made: a failed login from another address, made now, is recorded
    // after it, and waited for.
    await assert.rejects(sshConnect({ port: srv.sftpPort, username: 'nobody', password: 'no password', localAddress: '127.0.0.8' }));
    const logins = (await srv.auditUntil((l) => l.event === 'login-failed' && l.ip === '127.0.0.8')).filter((l) => l.event === 'login' && l.user === 'ria');
    assert.equal(logins.length, 0, 'a login recorded');
  });

  it('the same key and hash under its own name is refused as weak, as before', async () => {
    assert.equal(await loginAs('ssh-rsa'), 'refused');
  });
});
