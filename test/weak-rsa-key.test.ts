import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import ssh2 from 'ssh2';
import { adminRequest, type AdminTarget } from './helpers/admin-http.js';
import { rsaBits } from '../src/auth/public-keys.js';
import { sluice } from './helpers/cli.js';
import { TestServer } from './helpers/server.js';
import { sshConnect } from './helpers/ssh.js';

const require = createRequire(import.meta.url);
type AuthPK = (user: unknown, key: { sign(data: Buffer, hash?: string): Buffer }, keyAlgo?: string, sign?: unknown) => unknown;
const Protocol = require('ssh2/lib/protocol/Protocol.js') as { prototype: { authPK: AuthPK } };

/*
 * Whoever factors an RSA user key logs in as its user, and a user's public
 * key is often public (a forge's NAME.keys, an authorized_keys copied about).
 * Found by a review: a 512-bit RSA key (factored in hours on rented
 * machines) was taken by `user key add` and by the API, and logged in.
 * OpenSSH's sshd refuses RSA keys under 1024 bits (RequiredRSASize); sluice
 * under 2048 (MIN_RSA_BITS), when a key is added and, for one stored before,
 * at every login.
 */

describe('rsaBits: the modulus size of a wire-format key', () => {
  const blob = (key: string) => (ssh2.utils.parseKey(key) as ssh2.ParsedKey).getPublicSSH();
  it('RSA keys by their modulus; other types, and blobs cut short, none', () => {
    assert.equal(rsaBits(blob(ssh2.utils.generateKeyPairSync('rsa', { bits: 1024 }).public)), 1024);
    assert.equal(rsaBits(blob(ssh2.utils.generateKeyPairSync('rsa', { bits: 2048 }).public)), 2048);
    assert.equal(rsaBits(blob(ssh2.utils.generateKeyPairSync('ed25519').public)), null);
    const rsa = blob(ssh2.utils.generateKeyPairSync('rsa', { bits: 2048 }).public);
    assert.equal(rsaBits(rsa.subarray(0, rsa.length - 1)), null);
    assert.equal(rsaBits(Buffer.alloc(0)), null);
  });
});

describe('RSA user keys under 2048 bits', () => {
  let srv: TestServer;
  let api: AdminTarget;
  const weak = ssh2.utils.generateKeyPairSync('rsa', { bits: 1024 });
  before(async () => {
    srv = await TestServer.start({
      env: { SLUICE_ADMIN_LISTEN: './admin.sock' },
      users: ['alice', 'bob'].map((name) => ({ name, password: `${name} password` })),
    });
    api = { socketPath: join(srv.dir, 'admin.sock') };
  });
  after(() => srv.stop());

  it('are refused by `user key add` and by the API', async () => {
    const file = join(srv.dir, 'weak.pub');
    writeFileSync(file, weak.public);
    const r = sluice(srv.dir, ['user', 'key', 'add', 'alice', file]);
    assert.notEqual(r.code, 0, r.stdout);
    assert.match(r.stderr, /RSA key of 1024 bits: at least 2048/);
    const a = await adminRequest(api, 'POST', '/api/v1/users/alice/keys', { body: { key: weak.public } });
    assert.equal(a.status, 400, a.text);
    assert.match(a.text, /RSA key of 1024 bits/);
  });

  // No signature algorithm takes DSA (sftp.algorithms.userAuthSignatures): such a key was added, and never logged in.
  it('DSA keys are refused by `user key add`, saying why', () => {
    const file = join(srv.dir, 'dsa');
    const made = spawnSync('ssh-keygen', ['-q', '-t', 'dsa', '-N', '', '-f', file], { encoding: 'utf8' });
    assert.equal(made.status, 0, made.stderr);
    const r = sluice(srv.dir, ['user', 'key', 'add', 'alice', `${file}.pub`]);
    assert.notEqual(r.code, 0, r.stdout);
    assert.match(r.stderr, /a DSA key, which no login takes/);
  });

  it('one stored before logs in no more: refused and audited as weak-key', { timeout: 60_000 }, async () => {
    const parsed = ssh2.utils.parseKey(weak.public) as ssh2.ParsedKey;
    const blob = parsed.getPublicSSH();
    const db = new Database(join(srv.dir, 'data', 'sluice.db'));
    try {
      db.pragma('busy_timeout = 5000');
      const id = (db.prepare('SELECT id FROM users WHERE name = ?').get('bob') as { id: number }).id;
      const fingerprint = 'SHA256:' + createHash('sha256').update(blob).digest('base64').replace(/=+$/, '');
      db.prepare('INSERT INTO user_keys (user_id, algorithm, public_key, fingerprint, comment, created_at) VALUES (?, ?, ?, ?, ?, ?)').run(id, 'ssh-rsa', blob, fingerprint, '', Date.now());
    } finally {
      db.close();
    }
    // Asked about first, as clients do, the key is refused (unaudited, as any key asked about).
    await assert.rejects(sshConnect({ port: srv.sftpPort, username: 'bob', privateKey: weak.private }));
    // Signed at once, as a client may send it without asking.
    const authPK = Protocol.prototype.authPK;
    Protocol.prototype.authPK = function (this: unknown, user, key, keyAlgo, sign) {
      if (sign) return authPK.call(this, user, key, keyAlgo, sign);
      const hash = keyAlgo === 'rsa-sha2-512' ? 'sha512' : keyAlgo === 'rsa-sha2-256' ? 'sha256' : undefined;
      return authPK.call(this, user, key, keyAlgo, (data: Buffer, done: (signature: Buffer) => void) => done(key.sign(data, hash)));
    };
    try {
      await assert.rejects(sshConnect({ port: srv.sftpPort, username: 'bob', privateKey: weak.private }));
    } finally {
      Protocol.prototype.authPK = authPK;
    }
    const trail = await srv.auditUntil((l) => l.event === 'login-failed' && l.user === 'bob');
    assert.ok(trail.some((l) => l.event === 'login-failed' && l.user === 'bob' && l.reason === 'weak-key'), JSON.stringify(trail.filter((l) => l.user === 'bob')));
  });

  // Runs after the one above, which stored bob's weak key.
  it('one stored before is shown as refused: key list, user show, the API, and a warning at start', async () => {
    const list = sluice(srv.dir, ['user', 'key', 'list', 'bob']);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /REFUSED/);
    assert.match(list.stdout, /an RSA key of 1024 bits: at least 2048 are needed/);
    assert.match(sluice(srv.dir, ['user', 'show', 'bob']).stdout, /no login takes it: an RSA key of 1024 bits/);
    const shown = await adminRequest(api, 'GET', '/api/v1/users/bob');
    const keys = (JSON.parse(shown.text) as { keys: { refused: string | null }[] }).keys;
    assert.deepEqual(keys.map((k) => k.refused), ['an RSA key of 1024 bits: at least 2048 are needed']);
    const alice = JSON.parse((await adminRequest(api, 'GET', '/api/v1/users/alice')).text) as { keys: unknown[] };
    assert.deepEqual(alice.keys, [], 'alice has no key: none was taken above');
    await srv.restart();
    const warning = srv.log.split('\n').find((l) => l.includes('no login takes'));
    assert.ok(warning, srv.log);
    assert.deepEqual((JSON.parse(warning) as { users: string[]; count: number }).users, ['bob']);
  });
});
