// Found by an operator's review: SIGHUP reloaded the TLS certificate but not the SSH host keys, while the
// admin API already showed the new key's fingerprint: a client's prompt and the API disagreed.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import ssh2 from 'ssh2';
import { TestServer } from './helpers/server.js';
import { call, sftpOf } from './helpers/ssh.js';

let srv: TestServer;
before(async () => {
  srv = await TestServer.start({ users: [{ name: 'alice', password: 'alice password' }] });
});
after(() => srv.stop());

/** The ed25519 host key the server offers a new connection, as the base64 blob of a .pub line; the connection stays open. */
function offered(): Promise<{ key: string; client: ssh2.Client }> {
  return new Promise((resolve, reject) => {
    const client = new ssh2.Client();
    let key = '';
    client.once('ready', () => resolve({ key, client }));
    client.once('error', reject);
    client.connect({
      host: '127.0.0.1',
      port: srv.sftpPort,
      username: 'alice',
      password: 'alice password',
      algorithms: { serverHostKey: ['ssh-ed25519'] },
      hostVerifier: (blob: Buffer) => {
        key = blob.toString('base64');
        return true;
      },
    });
  });
}

const pubBlob = (file: string) => readFileSync(file, 'utf8').trim().split(/\s+/)[1];

it('SIGHUP reloads the SSH host keys for new connections; live ones go on; a bad key keeps the last good one', { timeout: 60_000 }, async () => {
  const keyFile = join(srv.dir, 'certs', 'ssh_host_ed25519_key');
  const first = await offered();
  assert.equal(first.key, pubBlob(`${keyFile}.pub`));
  const sftp = await sftpOf(first.client);
  try {
    rmSync(keyFile);
    rmSync(`${keyFile}.pub`);
    const gen = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'rotated', '-f', keyFile]);
    assert.equal(gen.status, 0, String(gen.stderr));
    const rotated = pubBlob(`${keyFile}.pub`);
    assert.notEqual(rotated, first.key);
    srv.signal('SIGHUP');
    await srv.logs(/SSH host keys reloaded/);
    const second = await offered();
    second.client.end();
    assert.equal(second.key, rotated, 'a new connection is offered the new key');
    // The session opened before the reload is untouched.
    const st = await call<{ isDirectory(): boolean }>((cb) => sftp.stat('/', cb));
    assert.ok(st.isDirectory());

    writeFileSync(keyFile, 'not a key\n');
    srv.signal('SIGHUP');
    await srv.logs(/SSH host key reload failed; the old keys stay in use/);
    const third = await offered();
    third.client.end();
    assert.equal(third.key, rotated, 'the last good key stays in use');
  } finally {
    first.client.end();
  }
});
