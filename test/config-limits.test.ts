// Settings that used to pass loading and then broke the running server (an
// SFTP budget nothing fits in, a port past 65535, an algorithm ssh2 does not
// know): each is refused when the configuration is read, by the real CLI,
// with one line naming the key and exit code 2. A 0 that means "no limit"
// elsewhere in limits.* means it for the hashing rate too.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SSH_ALGORITHMS } from '../src/config/schema.js';
import { sluice } from './helpers/cli.js';
import { loggedIn } from './helpers/ftp-raw.js';
import { freePort, TestServer } from './helpers/server.js';

const dir = mkdtempSync(join(tmpdir(), 'sluice-config-limits-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** No listener on a fixed port, should a configuration be wrongly accepted by `serve`. */
const NO_PORTS = { SLUICE_FTP_PORT: '0', SLUICE_FTPS_PORT: '0', SLUICE_SFTP_PORT: '0', SLUICE_WORKERS: '1' };

let files = 0;
/** `sluice ARGS` with `yaml` as its configuration file. */
function withConfig(yaml: string, args: string[], env: NodeJS.ProcessEnv = {}) {
  const file = join(dir, `c${files++}.yaml`);
  writeFileSync(file, yaml);
  return sluice(dir, args, '', { ...NO_PORTS, SLUICE_CONFIG: file, ...env });
}

/** Refused by `sluice user list` (which reads the configuration like every command): exit 2, one line. */
function refuses(yaml: string, line: RegExp, env: NodeJS.ProcessEnv = {}): void {
  const r = withConfig(yaml, ['user', 'list'], env);
  assert.equal(r.code, 2, `exit ${r.code}; stdout ${r.stdout}; stderr ${r.stderr}`);
  assert.match(r.stderr.trimEnd(), line);
  assert.equal(r.stderr.trimEnd().split('\n').length, 1, r.stderr);
}

function accepts(yaml: string, env: NodeJS.ProcessEnv = {}): void {
  const r = withConfig(yaml, ['user', 'list'], env);
  assert.equal(r.code, 0, r.stderr);
}

describe('sftp.maxQueuedBytes holds at least one SFTP message', () => {
  it('refuses 0 and anything under 256K (no request could ever be taken: every SFTP request hung)', () => {
    refuses('sftp:\n  maxQueuedBytes: 0\n', /^sluice: config: sftp\.maxQueuedBytes: must be at least 256K \(one SFTP message/);
    refuses('sftp:\n  maxQueuedBytes: 255K\n', /^sluice: config: sftp\.maxQueuedBytes: must be at least 256K/);
  });

  it('accepts 256K', () => {
    accepts('sftp:\n  maxQueuedBytes: 256K\n');
  });
});

describe('every port is checked when the configuration is read, with one line naming the key', () => {
  const bad: [string, string, RegExp][] = [
    ['an admin port past 65535', 'admin:\n  listen: "127.0.0.1:99999"\n', /^sluice: config: admin\.listen: "127\.0\.0\.1:99999": the port must be 1-65535$/],
    ['admin port 0 (nobody could find it)', 'admin:\n  listen: "[::1]:0"\n', /^sluice: config: admin\.listen: "\[::1\]:0": the port must be 1-65535$/],
    ['a clamd port past 65535', 'uploads:\n  clamdHost: "clamd.example:70000"\n', /^sluice: config: uploads\.clamdHost: "clamd\.example:70000": the port must be 1-65535$/],
    // The URL's password stays out of the message.
    ['a store port past 65535', 'store: "postgres://sluice:s3cret@db.example:99999/sluice"\n', /^sluice: config: store: the port in the URL \(99999\) must be 1-65535$/],
    ['a hook URL on port 0', 'hooks:\n  actions:\n    - name: a\n      on: [upload]\n      url: "http://hooks.example:0/x"\n', /^sluice: config: hooks\.actions\.0\.url: the port must be 1-65535$/],
    ['two front-ends on one port', 'sftp:\n  port: 2121\n', /^sluice: config: sftp\.port: port 2121 is ftp\.port's too$/],
    ['a front-end port past 65535', 'ftp:\n  port: 70000\n', /^sluice: config: ftp\.port: /],
    ['a passive range past 65535', 'ftp:\n  passivePorts: 65000-99999\n', /^sluice: config: ftp\.passivePorts: /],
    // Found by a hostile-input review: serve stopped with "the port is in use (another process listens there...)": its own API.
    ['the admin API on a front-end\'s port', 'admin:\n  listen: "127.0.0.1:2222"\n', /^sluice: config: admin\.listen: port 2222 is sftp\.port's too$/],
    ['the admin API on every address, on a front-end\'s port', 'bind: 127.0.0.1\nadmin:\n  listen: "[::]:2121"\n', /^sluice: config: admin\.listen: port 2121 is ftp\.port's too$/],
    // Found likewise: taken silently, a passive range holding a front-end's port.
    ['a passive range that holds a front-end\'s port', 'ftp:\n  passivePorts: 2000-2500\n', /^sluice: config: ftp\.passivePorts: 2000-2500 holds ftp\.port \(2121\): a front-end's port is no passive port$/],
  ];
  for (const [what, yaml, line] of bad) {
    it(`refuses ${what}`, () => {
      // With the front-ends' ports left as the file says, for the checks between them.
      const r = withConfig(yaml, ['user', 'list'], { SLUICE_FTP_PORT: '', SLUICE_FTPS_PORT: '', SLUICE_SFTP_PORT: '' });
      assert.equal(r.code, 2, `exit ${r.code}; stderr ${r.stderr}`);
      assert.match(r.stderr.trimEnd(), line);
      assert.doesNotMatch(r.stderr, /s3cret/);
    });
  }

  it('serve stops with that one line and exit 2, not a RangeError stack', () => {
    const r = withConfig('admin:\n  listen: "127.0.0.1:99999"\n', ['serve']);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr, 'sluice: config: admin.listen: "127.0.0.1:99999": the port must be 1-65535\n');
  });

  it('accepts the edges: 65535, IPv6 in brackets, a unix socket, ports 0 for front-ends that are off', () => {
    accepts('admin:\n  listen: "127.0.0.1:65535"\n');
    accepts('admin:\n  listen: "[::1]:8022"\n');
    accepts('admin:\n  listen: ./admin.sock\n');
    accepts('uploads:\n  clamdHost: "127.0.0.1:3310"\n');
    accepts('ftp:\n  port: 0\n  implicitTlsPort: 0\nsftp:\n  port: 0\n', { SLUICE_FTP_PORT: '', SLUICE_FTPS_PORT: '', SLUICE_SFTP_PORT: '' });
    // The admin API on a front-end's port of another address; the passive range, unused with FTP off, holding SFTP's.
    accepts('bind: 127.0.0.2\nadmin:\n  listen: "127.0.0.1:2121"\n', { SLUICE_FTP_PORT: '', SLUICE_FTPS_PORT: '', SLUICE_SFTP_PORT: '' });
    accepts('ftp:\n  port: 0\n  implicitTlsPort: 0\n  passivePorts: 2000-2500\n', { SLUICE_FTP_PORT: '', SLUICE_FTPS_PORT: '', SLUICE_SFTP_PORT: '' });
  });
});

describe('sftp.algorithms: names ssh2 supports, checked when the configuration is read', () => {
  it("the lists kept in the schema are ssh2's SUPPORTED_* (host keys: the part sluice has keys for)", () => {
    const ssh2 = createRequire(import.meta.url)('ssh2/lib/protocol/constants.js') as Record<string, string[]>;
    const sorted = (list: readonly string[]) => [...list].sort();
    assert.deepEqual(sorted(SSH_ALGORITHMS.kex), sorted(ssh2.SUPPORTED_KEX ?? []));
    assert.deepEqual(sorted(SSH_ALGORITHMS.cipher), sorted(ssh2.SUPPORTED_CIPHER ?? []));
    assert.deepEqual(sorted(SSH_ALGORITHMS.hmac), sorted(ssh2.SUPPORTED_MAC ?? []));
    for (const name of SSH_ALGORITHMS.serverHostKey) assert.ok(ssh2.SUPPORTED_SERVER_HOST_KEY?.includes(name), name);
    // Compression is not configurable: the front-end offers 'none' only.
    assert.ok(ssh2.SUPPORTED_COMPRESSION?.includes('none'));
  });

  const bad: [string, string, RegExp][] = [
    ['cipher', 'cipher: [aes128-ctr, bogus-cipher]', /^sluice: config: sftp\.algorithms\.cipher\.1: "bogus-cipher" is no cipher ssh2 supports \(one of: aes128-gcm@openssh\.com, /],
    ['kex', 'kex: [bogus-kex]', /^sluice: config: sftp\.algorithms\.kex\.0: "bogus-kex" is no key exchange ssh2 supports as a server/],
    // ssh2 knows it as a client only: offered, a client that chose it failed its handshake.
    ['kex ssh2 knows only as a client', 'kex: [diffie-hellman-group-exchange-sha256]', /^sluice: config: sftp\.algorithms\.kex\.0: "diffie-hellman-group-exchange-sha256": ssh2 can do it only as a client, so no client that chose it could connect: remove it from the list$/],
    ['hmac', 'hmac: [hmac-sha2-256, bogus-mac]', /^sluice: config: sftp\.algorithms\.hmac\.1: "bogus-mac" is no MAC ssh2 supports/],
    ['serverHostKey', 'serverHostKey: [bogus-key]', /^sluice: config: sftp\.algorithms\.serverHostKey\.0: "bogus-key" is no host key algorithm/],
    // ssh2 knows it, but sluice has no ECDSA host key: the server offered none, and no client could connect.
    ['serverHostKey with no key of that kind', 'serverHostKey: [ecdsa-sha2-nistp256]', /^sluice: config: sftp\.algorithms\.serverHostKey\.0: "ecdsa-sha2-nistp256" is no host key algorithm for sluice's ed25519 and RSA keys \(one of: ssh-ed25519, rsa-sha2-512, rsa-sha2-256, ssh-rsa\)$/],
  ];
  for (const [what, list, line] of bad) {
    it(`refuses an unknown ${what}`, () => refuses(`sftp:\n  algorithms:\n    ${list}\n`, line));
  }

  it('serve stops with one line and exit 2 before listening, not an "Unsupported algorithm" stack', async () => {
    const r = withConfig('sftp:\n  algorithms:\n    cipher: [bogus-cipher]\n', ['serve'], { SLUICE_SFTP_PORT: String(await freePort()) });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^sluice: config: sftp\.algorithms\.cipher\.0: "bogus-cipher" is no cipher ssh2 supports \(one of: [^\n]*\)\n$/);
  });

  it('accepts what ssh2 supports beyond the defaults (SHA-1, CBC for old clients)', () => {
    accepts('sftp:\n  algorithms:\n    kex: [diffie-hellman-group14-sha1]\n    cipher: [aes128-cbc]\n    hmac: [hmac-sha1]\n    serverHostKey: [ssh-rsa]\n');
  });
});

describe('limits.hashRate: 0 is no limit, as for rateUp and rateDown', () => {
  let srv: TestServer;
  before(async () => {
    srv = await TestServer.start({ yaml: 'ftp:\n  tls: optional\nlimits:\n  hashRate: 0\n', users: [{ name: 'alice', password: 'alice password' }] });
  });
  after(() => srv?.stop());

  it('HASH reads the file at once, and the server prints no TimeoutOverflowWarning (it did for every chunk: a wait of bytes / 0)', async () => {
    // Written on disk, not uploaded: the hash is read from the file, through the session's hashing rate.
    const file = join(srv.home('alice'), 'disk.bin');
    const data = randomBytes(2 * 1024 * 1024);
    writeFileSync(file, data);
    const ftp = await loggedIn(srv.ftpPort, 'alice', 'alice password');
    try {
      const r = await ftp.cmd('HASH disk.bin');
      assert.equal(r.text, `213 SHA-256 0-${data.length} ${createHash('sha256').update(data).digest('hex')} disk.bin`);
    } finally {
      ftp.socket.destroy();
    }
    // Warnings go to stderr as the process emits them; let a late one arrive.
    await new Promise((r) => setTimeout(r, 200));
    assert.doesNotMatch(srv.stderr, /TimeoutOverflowWarning/);
  });
});

describe('RateLimit: a wait longer than one timer holds', () => {
  it('a tiny rate with a debt of more than 24.8 days waits, instead of firing at once with a TimeoutOverflowWarning', () => {
    // In a child process: the waits it starts would keep this one alive for weeks.
    const script = `
      import { RateLimit } from ${JSON.stringify(new URL('../src/session/rate-limit.js', import.meta.url).href)};
      const warnings = [];
      process.on('warning', (w) => warnings.push(w.name));
      const limit = new RateLimit(1);
      let done = 0;
      for (let i = 0; i < 10; i++) void limit.take(256 * 1024).then(() => done++);
      setTimeout(() => { console.log(JSON.stringify({ done, warnings })); process.exit(0); }, 300);
    `;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { done: 0, warnings: [] });
  });
});
