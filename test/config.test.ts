import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ConfigError } from '../src/config/errors.js';
import { loadConfig } from '../src/config/load.js';
import { sluice } from './helpers/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'sluice-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const load = (env: NodeJS.ProcessEnv = {}, file?: string) => loadConfig({ env, cwd: dir, file });
const fails = (pattern: RegExp) => (e: unknown) => e instanceof ConfigError && pattern.test(e.message) && !e.message.includes('\n');

describe('configuration', () => {
  it('has working defaults', () => {
    const c = load();
    assert.equal(c.ftp.port, 2121);
    assert.equal(c.ftp.implicitTlsPort, 2990);
    assert.equal(c.sftp.port, 2222);
    assert.equal(c.ftp.passivePorts, '50000-50100');
    assert.equal(c.ftp.tls, 'required');
    assert.equal(c.bind, '0.0.0.0');
    assert.equal(c.dataDir, join(dir, 'data'));
    assert.equal(c.source, null);
  });

  // Found by an operator's review: the shipped logrotate file keeps 520 weeks, but with rotateSize 0 the
  // default keep.count of 30 made sluice delete every rotated file past the 30th itself.
  it('keeps 30 rotated audit files when it rotates them, no limit by count when logrotate does, unless told', () => {
    assert.equal(load().audit.keep.count, 30);
    writeFileSync(join(dir, 'logrotate.yaml'), 'audit:\n  rotateSize: 0\n');
    assert.equal(load({}, 'logrotate.yaml').audit.keep.count, 0);
    writeFileSync(join(dir, 'logrotate-kept.yaml'), 'audit:\n  rotateSize: 0\n  keep:\n    count: 600\n');
    assert.equal(load({}, 'logrotate-kept.yaml').audit.keep.count, 600);
  });

  it('reads YAML and lets the environment override it', () => {
    writeFileSync(join(dir, 'a.yaml'), 'ftp:\n  port: 2100\n  tls: optional\nsftp:\n  port: 0\nlogLevel: debug\n');
    const c = load({ SLUICE_FTP_PORT: '2200', SLUICE_PASV_PORTS: '40000-40010', SLUICE_BIND: '127.0.0.1' }, 'a.yaml');
    assert.equal(c.ftp.port, 2200);
    assert.equal(c.ftp.tls, 'optional');
    assert.equal(c.sftp.port, 0, 'a port of 0 disables the front-end');
    assert.equal(c.ftp.passivePorts, '40000-40010');
    assert.equal(c.bind, '127.0.0.1');
    assert.equal(c.logLevel, 'debug');
  });

  it('every documented environment variable is honoured', () => {
    const c = load({
      SLUICE_DATA_DIR: 'd2', SLUICE_CERTS_DIR: 'c2', SLUICE_BIND: '::', SLUICE_FTP_PORT: '1', SLUICE_FTPS_PORT: '2',
      SLUICE_SFTP_PORT: '3', SLUICE_PASV_PORTS: '2000-2001', SLUICE_FTP_TLS: 'optional', SLUICE_LOG_LEVEL: 'warn',
    });
    assert.deepEqual(
      [c.dataDir, c.certsDir, c.bind, c.ftp.port, c.ftp.implicitTlsPort, c.sftp.port, c.ftp.passivePorts, c.ftp.tls, c.logLevel],
      [join(dir, 'd2'), join(dir, 'c2'), '::', 1, 2, 3, '2000-2001', 'optional', 'warn'],
    );
  });

  it('reads the PROXY protocol settings from the environment', () => {
    const c = load({ SLUICE_TRUSTED_PROXIES: '10.0.0.5, fd00::/64', SLUICE_FTP_PROXY_PROTOCOL: 'v2', SLUICE_SFTP_PROXY_PROTOCOL: 'optional' });
    assert.deepEqual([c.trustedProxies, c.ftp.proxyProtocol, c.sftp.proxyProtocol], [['10.0.0.5/32', 'fd00::/64'], 'v2', 'optional']);
  });

  it('reads admin.listen from SLUICE_ADMIN_LISTEN: an address and port, or a unix socket path', () => {
    assert.equal(load({ SLUICE_ADMIN_LISTEN: '127.0.0.1:8022' }).admin.listen, '127.0.0.1:8022');
    assert.equal(load({ SLUICE_ADMIN_LISTEN: '/run/sluice/admin.sock' }).admin.listen, '/run/sluice/admin.sock');
    assert.equal(load().admin.listen, '', 'off by default');
  });

  it("an empty variable sets a key whose empty value means something, and leaves the file's value of any other", () => {
    // README: `SLUICE_ADMIN_LISTEN= sluice ban remove 127.0.0.1` writes the store directly; with admin.listen in
    // the file, the empty variable was skipped and the CLI went to the API (found by a new user's try).
    writeFileSync(join(dir, 'e.yaml'), "admin:\n  listen: 127.0.0.1:8022\nstore: postgres://db/x\ntrustedProxies: [10.0.0.5]\nnodeId: n1\nftp:\n  port: 2100\n");
    const c = load({ SLUICE_ADMIN_LISTEN: '', SLUICE_STORE_URL: '', SLUICE_TRUSTED_PROXIES: '', SLUICE_NODE_ID: '', SLUICE_FTP_PORT: '', SLUICE_BIND: '' }, 'e.yaml');
    assert.deepEqual([c.admin.listen, c.store, c.trustedProxies, c.ftp.port, c.bind], ['', '', [], 2100, '0.0.0.0']);
    assert.notEqual(c.nodeId, 'n1', 'the host name, as with no nodeId');
  });

  it('reads the drain timeout from the environment', () => {
    assert.equal(load().shutdown.drainTimeout, 30);
    assert.equal(load({ SLUICE_SHUTDOWN_DRAIN_TIMEOUT: '5' }).shutdown.drainTimeout, 5);
    assert.equal(load({ SLUICE_SHUTDOWN_DRAIN_TIMEOUT: '0.5' }).shutdown.drainTimeout, 0.5);
    // Decimal numbers are taken as written, spaces around them and exponents too.
    assert.deepEqual(
      [' 5 ', '1e2', '+7', '.5'].map((t) => load({ SLUICE_SHUTDOWN_DRAIN_TIMEOUT: t }).shutdown.drainTimeout),
      [5, 100, 7, 0.5],
    );
    assert.equal(load({ SLUICE_WORKERS: ' 4 ' }).workers, 4);
  });

  it('finds ./sluice.yaml and SLUICE_CONFIG', () => {
    writeFileSync(join(dir, 'sluice.yaml'), 'ftp:\n  port: 2333\n');
    assert.equal(load().ftp.port, 2333);
    writeFileSync(join(dir, 'other.yaml'), 'ftp:\n  port: 2444\n');
    assert.equal(load({ SLUICE_CONFIG: 'other.yaml' }).ftp.port, 2444);
    // Empty, as every SLUICE_* variable: the default file (a review found the directory read as the config, EISDIR).
    assert.equal(load({ SLUICE_CONFIG: '' }).ftp.port, 2333);
    rmSync(join(dir, 'sluice.yaml'));
  });

  it('reads a UTF-8 file, with a byte order mark or without, its names as written', () => {
    writeFileSync(join(dir, 'utf8.yaml'), 'dataDir: ./données\n');
    writeFileSync(join(dir, 'bom.yaml'), '\ufeffdataDir: ./données\n');
    assert.deepEqual([load({}, 'utf8.yaml').dataDir, load({}, 'bom.yaml').dataDir], [join(dir, 'données'), join(dir, 'données')]);
  });

  const bad: [string, NodeJS.ProcessEnv, string | Buffer | null, RegExp][] = [
    ['unknown top-level key', {}, 'colour: blue\n', /unknown key "colour"/],
    ['unknown nested key', {}, 'ftp:\n  prot: 21\n', /unknown key "ftp.prot"/],
    ['a key that moved', {}, 'sftp:\n  maxAuthTries: 3\n', /"sftp.maxAuthTries" is now "auth.maxTries"/],
    // Found by a review: the moved-keys table was read through Object.prototype ("constructor" is now "function Object()...").
    ['a key named after a property every object has', {}, 'constructor: 1\n', /unknown key "constructor"/],
    ['toString, likewise', {}, 'toString: 1\n', /unknown key "toString"/],
    ['port out of range', {}, 'ftp:\n  port: 70000\n', /ftp\.port/],
    ['port of the wrong type', {}, 'sftp:\n  port: "ssh"\n', /sftp\.port/],
    ['bad TLS policy', { SLUICE_FTP_TLS: 'sometimes' }, null, /ftp\.tls \(from SLUICE_FTP_TLS\)/],
    ['bad port in the environment', { SLUICE_SFTP_PORT: '22x' }, null, /SLUICE_SFTP_PORT: "22x" is not a port/],
    ['bad passive range', { SLUICE_PASV_PORTS: '60000-50000' }, null, /ftp\.passivePorts/],
    ['bad log level', { SLUICE_LOG_LEVEL: 'loud' }, null, /logLevel/],
    ['a size that is not one', {}, 'audit:\n  rotateSize: 10 bananas\n', /audit\.rotateSize: .*"10 bananas" is not a size/],
    ['a negative size', {}, 'audit:\n  rotateSize: -1\n', /audit\.rotateSize/],
    ['not YAML', {}, 'ftp: [\n', /not valid YAML/],
    ['not a mapping', {}, '- a\n- b\n', /must be a mapping/],
    // Found by a hostile-input review: an unknown tag was warned of on stderr and dropped (this ran at info), !!binary
    // gave a Buffer refused with its hundred method names as unknown keys, a second document was refused with the
    // parser's advice to a programmer (use YAML.parseAllDocuments()).
    ['a YAML tag', {}, 'logLevel: !custom debug\n', /^config file .*: not valid YAML: Unresolved tag: !custom at line 1, column 11$/],
    ['a YAML 1.1 type', {}, 'ftp: !!binary aGVsbG8=\n', /^config file .*: not valid YAML: Unresolved tag: tag:yaml\.org,2002:binary at line 1, column 6$/],
    ['two YAML documents', {}, 'dataDir: ./a\n---\ndataDir: ./b\n', /^config file .*: more than one YAML document \(a --- after the first\): a configuration is one$/],
    ['an alias bomb', {}, `a: &a [1,1,1,1,1,1,1,1,1]\n${['b', 'c', 'd', 'e'].map((k, i) => `${k}: &${k} [${Array(9).fill(`*${'abcd'[i]}`).join(',')}]\n`).join('')}`, /not valid YAML: Excessive alias count/],
    // Found by a hostile-input review: taken, a quarantine directory with a NUL byte ran a server whose every scan
    // failed, an audit file with one stopped the start with Node's "must be ... without null bytes", a hook never ran.
    ['a NUL byte in a path', {}, 'uploads:\n  quarantineDir: "q\\0d"\n', /^config: uploads\.quarantineDir: holds a NUL byte, which no path or argument can$/],
    ['a NUL byte in the audit file', {}, 'audit:\n  file: "au\\0dit.log"\n', /^config: audit\.file: holds a NUL byte/],
    ['a NUL byte in a hook argument', {}, 'hooks:\n  actions:\n    - name: a\n      on: [upload]\n      command: ["logger", "a\\0b"]\n', /^config: hooks\.actions\.0\.command\.1: holds a NUL byte/],
    ['a key given twice', {}, 'ftp:\n  port: 2100\n  port: 2200\n', /^config file .*: not valid YAML: Map keys must be unique at line 3, column 3$/],
    ['a bad trusted proxy', { SLUICE_TRUSTED_PROXIES: '10.0.0.0/8, 300.1.2.3' }, null, /^config: trustedProxies\.1 \(from SLUICE_TRUSTED_PROXIES\): "300\.1\.2\.3" is not an IP/],
    ['a bad IPv6 prefix', {}, 'trustedProxies: ["fd00::/129"]\n', /trustedProxies\.0: "fd00::\/129" has a bad prefix length/],
    ['an unknown PROXY mode', { SLUICE_SFTP_PROXY_PROTOCOL: 'v3' }, null, /sftp\.proxyProtocol \(from SLUICE_SFTP_PROXY_PROTOCOL\)/],
    ['an admin address without a port', { SLUICE_ADMIN_LISTEN: '127.0.0.1' }, null, /^config: admin\.listen \(from SLUICE_ADMIN_LISTEN\): must be ADDRESS:PORT/],
    // Found by an operator-side review: Node bound such a path cut to its first 108 bytes, the chmod of the path as
    // given failed, and serve neither started nor ended (SIGTERM included) with the socket listening where no one said.
    ['an admin socket path longer than a socket takes', { SLUICE_ADMIN_LISTEN: `/run/${'a'.repeat(104)}` }, null, /^config: admin\.listen \(from SLUICE_ADMIN_LISTEN\): a unix socket path is at most 108 bytes, this one is 109: choose a shorter one$/],
    ['TLS on the admin socket', { SLUICE_ADMIN_LISTEN: '/run/admin.sock' }, 'admin:\n  tls: true\n', /^config: admin\.tls: a unix socket takes no TLS/],
    ['a drain timeout that is not a number', { SLUICE_SHUTDOWN_DRAIN_TIMEOUT: '30s' }, null, /shutdown\.drainTimeout \(from SLUICE_SHUTDOWN_DRAIN_TIMEOUT\)/],
    ['a negative drain timeout', {}, 'shutdown:\n  drainTimeout: -1\n', /shutdown\.drainTimeout/],
    // Found by a new user's try: these said "expected number, received string", "Invalid input" and ended on a colon.
    ['a negative drain timeout in the environment', { SLUICE_SHUTDOWN_DRAIN_TIMEOUT: '-1' }, null, /^config: shutdown\.drainTimeout \(from SLUICE_SHUTDOWN_DRAIN_TIMEOUT\): Too small: expected number to be >=0$/],
    ['workers that are no count', { SLUICE_WORKERS: 'many' }, null, /^config: workers \(from SLUICE_WORKERS\): must be 'auto' \(one per core\) or a whole number from 1 to 256$/],
    ['a negative number of workers', { SLUICE_WORKERS: '-3' }, null, /^config: workers \(from SLUICE_WORKERS\): Too small: expected number to be >=1$/],
    ['a YAML indentation error', {}, 'ftp:\n  port: a: b\n', /not valid YAML: .* at line 2, column \d+$/],
    ['clamd named twice', {}, "uploads:\n  scan: clamd\n  clamdSocket: /run/clamav/clamd.ctl\n  clamdHost: 127.0.0.1:3310\n", /^config: uploads\.clamdSocket: give clamdSocket or clamdHost, not both/],
    ['clamd named nowhere', {}, "uploads:\n  scan: clamd\n", /^config: uploads\.clamdSocket: scan: clamd needs clamdSocket or clamdHost$/],
    ['two hooks of one name', {}, "hooks:\n  actions:\n    - name: a\n      on: [upload]\n      command: ['logger']\n    - name: a\n      on: [login]\n      command: ['logger']\n", /^config: hooks\.actions\.1\.name: "a" names another hook already/],
    ['a hook field inside the script sh -c runs', {}, "hooks:\n  actions:\n    - name: a\n      on: [login-failed]\n      command: ['sh', '-c', '/opt/x/run.sh \"{user}\"']\n", /^config: hooks\.actions\.0\.command: hook "a": a \{field\} inside code a shell, an interpreter, a tool such as awk or sed, or a remote host runs \('\/opt\/x\/run\.sh "\{user\}"'\) would run what a client sends/],
    ['a hook field in perl -ne code behind env', {}, "hooks:\n  actions:\n    - name: a\n      on: [upload]\n      command: ['/usr/bin/env', 'LC_ALL=C', 'perl', '-ne', 'print \"{path}\"']\n", /hooks\.actions\.0\.command: hook "a": a \{field\} inside code/],
    ['a hook field with other text in its argument', {}, "hooks:\n  actions:\n    - name: a\n      on: [login-failed]\n      command: ['psql', '-c', 'select notify({user})']\n", /^config: hooks\.actions\.0\.command: hook "a": a \{field\} with other text in its argument \('select notify\(\{user\}\)'\)/],
    // Found by an operator's walk: README says such a configuration "stops the start with a line naming the hook",
    // the line named only its place in the list (hooks.actions.1), not the name the log and the audit trail use.
    ['a hook field inside text, the README\'s logger example', {}, "hooks:\n  actions:\n    - name: first\n      on: [upload]\n      command: ['logger']\n    - name: notify\n      on: [upload]\n      command: ['logger', 'upload {path}']\n", /^config: hooks\.actions\.1\.command: hook "notify": a \{field\} with other text in its argument \('upload \{path\}'\)/],
    ['a hook field in code a shell runs behind sudo -u', {}, "hooks:\n  actions:\n    - name: a\n      on: [login-failed]\n      command: ['sudo', '-u', 'backup', 'sh', '-c', 'run.sh {user}']\n", /hooks\.actions\.0\.command: hook "a": a \{field\} inside code .*\('run\.sh \{user\}'\)/],
    ['a hook env that names no variable', {}, "hooks:\n  actions:\n    - name: a\n      on: [upload]\n      command: ['true']\n      env: ['A=B']\n", /hooks\.actions\.0\.env\.0: an environment variable name/],
    ['a hook env with no command', {}, "hooks:\n  actions:\n    - name: a\n      on: [upload]\n      url: 'http://127.0.0.1:1/'\n      env: ['A']\n", /hooks\.actions\.0\.env: env is given to a command/],
    ['PROXY v2 with no trusted proxy', { SLUICE_FTP_PROXY_PROTOCOL: 'v2' }, null, /ftp\.proxyProtocol.*needs trustedProxies/],
    ['a first ban longer than the longest', {}, 'defender:\n  banTime: 172800\n', /^config: defender\.banTime: 172800 s is longer than defender\.maxBanTime \(86400 s\), the longest ban: raise maxBanTime too$/],
    // Found by a review: a name failed the start with getaddrinfo's stack, exit 1.
    ['a bind address that is a name', { SLUICE_BIND: 'not-an-ip' }, null, /^config: bind \(from SLUICE_BIND\): must be an IP address to listen on/],
    // Found by a hostile-input review: read with toString(), each byte that is no UTF-8 became U+FFFD without a word,
    // and a Latin-1 file's dataDir was a directory no one named, made for the server.
    ['a file that is not UTF-8', {}, Buffer.from('logLevel: info\ndataDir: ./donn\xe9es\n', 'latin1'), /^config file .*: line 2 is not UTF-8: save the file as UTF-8$/],
    // Found by an operator-side review: the environment's bytes too (Node reads them so), a data directory no one named made.
    ['a variable that is not UTF-8', { SLUICE_DATA_DIR: './donn\uFFFDes' }, null, /^SLUICE_DATA_DIR: not UTF-8 \(it holds U\+FFFD, what bytes that are not UTF-8 are read as\): set it in UTF-8$/],
    // Found likewise: a 100 MB file held the CLI 11 to 36 s and 1 to 3.4 GB in the YAML parser.
    ['a file larger than any configuration', {}, `${'#'.repeat(1024 * 1024)}\n`, /^config file .*: 1048577 bytes, more than any configuration needs \(at most 1 MiB\)$/],
    // Found likewise: Number() read these as 16, 3 and 15, where the ports refuse them.
    ['workers in hexadecimal', { SLUICE_WORKERS: '0x10' }, null, /^config: workers \(from SLUICE_WORKERS\): must be 'auto'/],
    ['a drain timeout in binary', { SLUICE_SHUTDOWN_DRAIN_TIMEOUT: '0b11' }, null, /^config: shutdown\.drainTimeout \(from SLUICE_SHUTDOWN_DRAIN_TIMEOUT\): /],
    ['a hold timeout in octal', { SLUICE_STORE_HOLD_TIMEOUT: '0o17' }, null, /^config: storeHoldTimeout \(from SLUICE_STORE_HOLD_TIMEOUT\): /],
    ['a TLS version FTPS does not offer', { SLUICE_FTP_TLS_MAX_VERSION: 'TLSv1.1' }, null, /^config: ftp\.tlsMaxVersion \(from SLUICE_FTP_TLS_MAX_VERSION\): /],
  ];
  for (const [what, env, yaml, pattern] of bad) {
    it(`refuses ${what} with one line naming the key`, () => {
      let file: string | undefined;
      if (yaml !== null) {
        file = `bad-${what.replace(/\W+/g, '-')}.yaml`;
        writeFileSync(join(dir, file), yaml);
      }
      assert.throws(() => load(env, file), fails(pattern));
    });
  }

  it('refuses a missing config file and an unusable data directory', () => {
    assert.throws(() => load({}, 'missing.yaml'), fails(/cannot read it \(ENOENT\)/));
    writeFileSync(join(dir, 'afile'), '');
    assert.throws(() => load({ SLUICE_DATA_DIR: 'afile/sub' }), fails(/dataDir: .* is not a usable directory/));
  });

  it('a config file that is no regular file is refused at once, saying what it is', () => {
    // A FIFO named by --config held the CLI in its read for ever (the command never answered).
    const fifo = join(dir, 'config.fifo');
    assert.equal(spawnSync('mkfifo', [fifo]).status, 0);
    const r = sluice(dir, ['--config', fifo, 'user', 'list']);
    assert.deepEqual([r.code, r.stderr], [2, `sluice: config file ${fifo}: cannot read it (${fifo} is a FIFO, not a regular file)\n`]);
    assert.throws(() => load({}, dir), fails(/cannot read it \(.* is a directory, not a regular file\)/));
  });

  // Found by an operator-side review: the parser made such a key text and warned of it on stderr in five lines of
  // its own (mapAsMap, --trace-warnings) before ours.
  it('the CLI refuses a key that is a list or a mapping in one line, naming its line', () => {
    writeFileSync(join(dir, 'sluice.yaml'), 'logLevel: info\n? [a, b]\n: 1\n');
    const r = sluice(dir, ['user', 'list']);
    rmSync(join(dir, 'sluice.yaml'));
    assert.deepEqual([r.code, r.stderr], [2, `sluice: config file ${join(dir, 'sluice.yaml')}: line 2: a key is a list or a mapping; keys are names\n`]);
  });

  it('the CLI exits 2 with one line on a bad config', () => {
    writeFileSync(join(dir, 'sluice.yaml'), 'bogus: 1\n');
    const r = sluice(dir, ['serve']);
    rmSync(join(dir, 'sluice.yaml'));
    assert.equal(r.code, 2);
    assert.equal(r.stderr, 'sluice: config: unknown key "bogus"\n');
  });
});
