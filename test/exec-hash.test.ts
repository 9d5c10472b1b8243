import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type ssh2 from 'ssh2';
import { parseExecCommand } from '../src/exec/command.js';
import { CommandError } from '../src/exec/words.js';
import { programMissing } from './helpers/programs.js';
import { TestServer } from './helpers/server.js';
import { sftpOf, sshConnect } from './helpers/ssh.js';

const hex = (algorithm: string, data: Buffer | string) => createHash(algorithm).update(data).digest('hex');

describe('parseExecCommand: checksum commands', () => {
  const all = { scp: true, hash: true };
  const ok: [string, unknown][] = [
    ['md5sum', { program: 'md5sum', algorithm: 'md5', paths: [], binary: false }],
    ['sha1sum /a\\ b', { program: 'sha1sum', algorithm: 'sha1', paths: ['/a b'], binary: false }],
    ["sha256sum -b -- -x 'y z' ~/w", { program: 'sha256sum', algorithm: 'sha256', paths: ['-x', 'y z', '/w'], binary: true }],
    ['sha384sum --text a', { program: 'sha384sum', algorithm: 'sha384', paths: ['a'], binary: false }],
    ['sha384sum --binary -t a', { program: 'sha384sum', algorithm: 'sha384', paths: ['a'], binary: false }],
    ['sha512sum -t --binary a', { program: 'sha512sum', algorithm: 'sha512', paths: ['a'], binary: true }],
    // Grouped as getopt takes them.
    ['md5sum -tb a', { program: 'md5sum', algorithm: 'md5', paths: ['a'], binary: true }],
    ['md5sum -bt a', { program: 'md5sum', algorithm: 'md5', paths: ['a'], binary: false }],
    // Escaped as rclone escapes a name (an Office lock file): a name, not a home.
    ["md5sum \\~\\$report.docx '~'/w", { program: 'md5sum', algorithm: 'md5', paths: ['~$report.docx', '~/w'], binary: false }],
  ];
  for (const [line, want] of ok) it(`takes ${line}`, () => assert.deepEqual(parseExecCommand(line, all), { kind: 'hash', hash: want }));

  const refused: [string, RegExp, string | null][] = [
    ['md5sum -c sums', /unsupported option -c/, 'md5sum'],
    ['md5sum -bc sums', /unsupported option -c/, 'md5sum'],
    ['md5sum -', /standard input is not read here/, 'md5sum'],
    ['md5sum *.txt', /wildcards/, 'md5sum'],
    // As a shell reads the program's name: quoted, it is still md5sum's refusal (exit 1), not an unknown command's (127).
    ["'md5sum' *", /wildcards/, 'md5sum'],
    ['"sha1sum" a|b', /shell syntax "\|"/, 'sha1sum'],
    ["'md5 sum' *", /wildcards/, null],
    ['sha1sum a;id', /shell syntax ";"/, 'sha1sum'],
    ['md5sum ~root/x', /~user/, 'md5sum'],
    [`md5sum ${Array.from({ length: 65 }, (_, i) => `f${i}`).join(' ')}`, /at most 64 files/, 'md5sum'],
    ['md5 -r x', /only scp, md5sum, sha1sum, sha256sum, sha384sum, sha512sum are served here/, null],
    ['b3sum x', /only scp/, null],
  ];
  for (const [line, why, program] of refused) {
    it(`refuses ${JSON.stringify(line.slice(0, 40))}`, () =>
      assert.throws(() => parseExecCommand(line, all), (err) => err instanceof CommandError && why.test(err.message) && err.program === program));
  }

  it('serves only what is switched on (sftp.scp, sftp.hashCommands)', () => {
    assert.throws(() => parseExecCommand('md5sum x', { scp: true, hash: false }), /^CommandError: only scp is served here$/);
    assert.throws(() => parseExecCommand('scp -t x', { scp: false, hash: true }), /only md5sum, sha1sum, sha256sum, sha384sum, sha512sum are served here/);
    assert.throws(() => parseExecCommand('scp -t x;y', { scp: false, hash: true }), (err) => err instanceof CommandError && err.program === null);
  });
});

/** What an exec channel gave back: its exit status, stdout and stderr. */
interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `command`, sending `input` (none: EOF at once, as rclone's session.Run does). */
function exec(c: ssh2.Client, command: string, input = ''): Promise<Ran> {
  return new Promise((resolve, reject) =>
    c.exec(command, (err, ch) => {
      if (err) return reject(err);
      let stdout = '';
      let stderr = '';
      let code: number | null = null;
      ch.on('data', (d: Buffer) => (stdout += d.toString()));
      ch.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      ch.on('exit', (n: number) => (code = n));
      ch.on('close', () => resolve({ code, stdout, stderr }));
      ch.end(input);
    }),
  );
}

describe('checksum commands over SSH exec (md5sum, sha1sum, ...)', () => {
  let srv: TestServer;
  let c: ssh2.Client;
  const data = randomBytes(300_000);

  before(async () => {
    srv = await TestServer.start({
      users: [
        { name: 'alice', password: 'alice password' },
        { name: 'drop', password: 'drop password', args: ['--perms', 'upload,list'] },
      ],
    });
    const home = srv.home('alice');
    mkdirSync(join(home, 'dir'));
    writeFileSync(join(home, 'dir', 'f.bin'), data);
    writeFileSync(join(srv.home('drop'), 'dropped.bin'), data);
    symlinkSync('/etc/passwd', join(home, 'out'));
    c = await sshConnect({ port: srv.sftpPort, username: 'alice', password: 'alice password' });
  });
  after(async () => {
    c?.end();
    await srv?.stop();
  });

  it('answers the hash of an empty input, as rclone probes for the command', async () => {
    assert.deepEqual(await exec(c, 'md5sum'), { code: 0, stdout: 'd41d8cd98f00b204e9800998ecf8427e  -\n', stderr: '' });
    assert.deepEqual(await exec(c, 'sha1sum'), { code: 0, stdout: 'da39a3ee5e6b4b0d3255bfef95601890afd80709  -\n', stderr: '' });
  });

  it('refuses to hash bytes the client sends: only files', async () => {
    assert.deepEqual(await exec(c, 'md5sum', 'some bytes'), { code: 1, stdout: '', stderr: 'md5sum: standard input is not read here: name each file\n' });
  });

  it('a client that closes its channel before its input ends gets nothing written after, and the connection serves on', async () => {
    await new Promise<void>((resolve, reject) =>
      c.exec('sha1sum', (err, ch) => {
        if (err) return reject(err);
        ch.on('close', () => resolve());
        ch.resume();
        ch.stderr.resume();
        ch.close();
      }),
    );
    assert.equal((await exec(c, 'md5sum')).code, 0);
    assert.doesNotMatch(srv.log + srv.stderr, /exec failed|ERR_STREAM|uncaught/i);
  });

  it('hashes files by name, as coreutils prints them, each one a checksum on record', async () => {
    for (const [program, algorithm] of [
      ['md5sum', 'md5'],
      ['sha1sum', 'sha1'],
      ['sha256sum', 'sha256'],
      ['sha384sum', 'sha384'],
      ['sha512sum', 'sha512'],
    ] as const) {
      const r = await exec(c, `${program} /dir/f.bin dir/f.bin`);
      assert.deepEqual(r, { code: 0, stdout: `${hex(algorithm, data)}  /dir/f.bin\n${hex(algorithm, data)}  dir/f.bin\n`, stderr: '' });
    }
    const md5 = (r: Record<string, unknown>) => r.event === 'checksum' && r.algorithm === 'md5' && r.path === '/dir/f.bin';
    const records = await srv.auditUntil(md5, 5000);
    const record = records.find(md5);
    assert.ok(record, 'a checksum record for md5sum');
    assert.equal(record.end, data.length);
    assert.equal(record.protocol, 'sftp');
    assert.equal(record.user, 'alice');
  });

  it('marks names as coreutils does in binary mode (-b: "HASH *NAME"), the last of -b and -t counting', async () => {
    assert.deepEqual(await exec(c, 'sha256sum -b /dir/f.bin'), { code: 0, stdout: `${hex('sha256', data)} */dir/f.bin\n`, stderr: '' });
    assert.deepEqual(await exec(c, 'sha1sum -b -t /dir/f.bin'), { code: 0, stdout: `${hex('sha1', data)}  /dir/f.bin\n`, stderr: '' });
    assert.deepEqual(await exec(c, 'md5sum --binary'), { code: 0, stdout: 'd41d8cd98f00b204e9800998ecf8427e *-\n', stderr: '' });
  });

  it('escapes a name with a backslash as coreutils does (a separator here, as for Windows clients)', async () => {
    // GNU md5sum 9.1 on the name dir\f.bin: a leading backslash, the name's doubled.
    assert.deepEqual(await exec(c, "md5sum 'dir\\f.bin'"), { code: 0, stdout: `\\${hex('md5', data)}  dir\\\\f.bin\n`, stderr: '' });
  });

  it('names a path it refuses escaped, on one line: a line break in a name cannot forge a result', async () => {
    const r = await exec(c, "md5sum 'x\n0123456789abcdef0123456789abcdef  /dir/f.bin'");
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr.split('\n').length, 2, r.stderr);
    assert.match(r.stderr, /^md5sum: x\\n0123456789abcdef0123456789abcdef  \/dir\/f\.bin: Invalid character in path\n$/);
  });

  it('says why a file could not be hashed, goes on with the rest, and exits 1', async () => {
    const r = await exec(c, 'sha1sum /nope /dir/f.bin /dir');
    assert.equal(r.code, 1);
    assert.equal(r.stdout, `${hex('sha1', data)}  /dir/f.bin\n`);
    assert.match(r.stderr, /^sha1sum: \/nope: No such file or directory\nsha1sum: \/dir: .+\n$/);
  });

  it('stays inside the home: .. and a link out of it are refused', async () => {
    const r = await exec(c, 'md5sum ../../../../../../etc/passwd /out');
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr.split('\n').length, 3, r.stderr);
  });

  it('needs the download permission: a drop box gives no hashes back, refused on record', async () => {
    const d = await sshConnect({ port: srv.sftpPort, username: 'drop', password: 'drop password' });
    try {
      const r = await exec(d, 'md5sum /dropped.bin');
      assert.equal(r.code, 1);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, /^md5sum: \/dropped\.bin: Permission denied\n$/);
    } finally {
      d.end();
    }
    const denied = (r: Record<string, unknown>) => r.event === 'denied' && r.operation === 'checksum' && r.user === 'drop';
    assert.ok((await srv.auditUntil(denied, 5000)).some(denied));
  });

  it('a command line a shell would expand is refused on stderr, naming the program', async () => {
    assert.deepEqual(await exec(c, 'md5sum /dir/*'), { code: 1, stdout: '', stderr: 'md5sum: wildcards are not supported: name each file\n' });
    assert.deepEqual(await exec(c, 'md5sum -c sums'), { code: 1, stdout: '', stderr: 'md5sum: unsupported option -c\n' });
  });
});

describe('checksum commands switched off (sftp.hashCommands: false)', () => {
  it('refuses the exec request itself; scp still runs', async () => {
    const srv = await TestServer.start({ users: [{ name: 'alice', password: 'alice password' }], yaml: 'sftp:\n  hashCommands: false\n' });
    try {
      const c = await sshConnect({ port: srv.sftpPort, username: 'alice', password: 'alice password' });
      assert.deepEqual(await exec(c, 'md5sum'), { code: 127, stdout: '', stderr: 'sluice: only scp is served here\n' });
      c.end();
    } finally {
      await srv.stop();
    }
  });
});

describe('a checksum command whose client goes away', () => {
  it('stops reading the file: its session ends with the channel, not once the file is read at the hashing rate', async () => {
    const srv = await TestServer.start({ users: [{ name: 'alice', password: 'alice password' }], yaml: 'limits:\n  hashRate: 1M\n' });
    try {
      // 10 s of reading at the hashing rate.
      writeFileSync(join(srv.home('alice'), 'big.bin'), randomBytes(10 << 20));
      const c = await sshConnect({ port: srv.sftpPort, username: 'alice', password: 'alice password' });
      const file = join(srv.home('alice'), 'big.bin');
      let reading = 0;
      await new Promise<void>((resolve, reject) =>
        c.exec('sha256sum /big.bin', (err, ch) => {
          if (err) return reject(err);
          ch.resume();
          ch.stderr.resume();
          ch.on('close', () => resolve());
          setTimeout(() => {
            reading = opened(srv, file);
            ch.close();
          }, 500);
        }),
      );
      assert.ok(reading > 0, 'big.bin was being read as the channel closed');
      const closed = Date.now();
      // Seen by the file's descriptor: the connection stays, and with it its login, whose logout comes at its close.
      while (opened(srv, file) > 0 && Date.now() - closed < 9000) await new Promise((r) => setTimeout(r, 50));
      assert.ok(Date.now() - closed < 3000, `the channel's session closed the file ${Date.now() - closed} ms after the channel's close`);
      c.end();
    } finally {
      await srv.stop();
    }
  });
});

describe('a checksum command that takes longer than the idle timeout', () => {
  it('is answered: a connection waiting for its hashes is not idle', async () => {
    const srv = await TestServer.start({ users: [{ name: 'alice', password: 'alice password' }], yaml: 'limits:\n  hashRate: 1M\nsftp:\n  idleTimeout: 10\n' });
    try {
      // 12 s of reading at the hashing rate, past sftp.idleTimeout with nothing from the client meanwhile.
      const data = randomBytes(12 << 20);
      writeFileSync(join(srv.home('alice'), 'big.bin'), data);
      const c = await sshConnect({ port: srv.sftpPort, username: 'alice', password: 'alice password' });
      const started = Date.now();
      assert.deepEqual(await exec(c, 'sha1sum big.bin'), { code: 0, stdout: `${hex('sha1', data)}  big.bin\n`, stderr: '' });
      assert.ok(Date.now() - started > 10_000, 'read at the hashing rate');
      // Its end starts the idle timer again: the connection serves on.
      assert.equal((await exec(c, 'md5sum')).code, 0);
      c.end();
    } finally {
      await srv.stop();
    }
  });
});

/** Descriptors the server's processes (its workers too) hold on `file` now. */
function opened(srv: TestServer, file: string): number {
  const pids = [srv.pid as number, ...spawnSync('pgrep', ['-P', String(srv.pid)], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean).map(Number)];
  let n = 0;
  for (const pid of pids) {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        if (readlinkSync(`/proc/${pid}/fd/${fd}`) === file) n++;
      } catch {
        // Closed between the listing and the look.
      }
    }
  }
  return n;
}

async function until(what: string, ok: () => boolean, ms = 10_000): Promise<void> {
  for (const end = Date.now() + ms; !ok(); await new Promise((r) => setTimeout(r, 50))) {
    if (Date.now() > end) assert.fail(`not within ${ms} ms: ${what}`);
  }
}

describe('a stop (SIGTERM) with checksum commands beside a download on one connection', () => {
  it('ends once the download has: a command is no transfer, and waits neither for its files nor for its input', async () => {
    const srv = await TestServer.start({
      users: [{ name: 'alice', password: 'alice password' }],
      env: { SLUICE_SHUTDOWN_DRAIN_TIMEOUT: '20' },
      yaml: 'limits:\n  hashRate: 1M\n  rateDown: 1M\n',
    });
    try {
      writeFileSync(join(srv.home('alice'), 'dl.bin'), randomBytes(2 << 20));
      // 40 s of reading at the hashing rate.
      writeFileSync(join(srv.home('alice'), 'big.bin'), randomBytes(40 << 20));
      const c = await sshConnect({ port: srv.sftpPort, username: 'alice', password: 'alice password' });
      const s = await sftpOf(c);
      let got = 0;
      const download = new Promise<void>((resolve) => {
        const rs = s.createReadStream('/dl.bin');
        rs.on('data', (d: Buffer) => (got += d.length));
        rs.on('error', () => resolve()).on('close', () => resolve());
      });
      // rclone's probe with its input never ended, and a hash under way.
      const channels: ssh2.ClientChannel[] = [];
      for (const command of ['md5sum', 'sha1sum big.bin']) {
        channels.push(await new Promise<ssh2.ClientChannel>((resolve, reject) => c.exec(command, (err, ch) => (err ? reject(err) : resolve(ch.resume())))));
      }
      channels[1]?.end();
      const big = join(srv.home('alice'), 'big.bin');
      await until('the download flowing and big.bin being hashed', () => got > 0 && opened(srv, big) > 0);
      const exited = new Promise((resolve) => srv.process?.once('exit', resolve));
      const stopped = Date.now();
      srv.signal('SIGTERM');
      await download;
      assert.equal(got, 2 << 20, 'the download finished');
      await exited;
      // Before, each held the stop until its deadline (20 s here): a checksum command's end counted as the reply it was owed.
      assert.ok(Date.now() - stopped < 8000, `stopped ${Date.now() - stopped} ms after SIGTERM`);
    } finally {
      await srv.stop();
    }
  });
});

const rcloneMissing = programMissing('rclone');

describe('rclone over SFTP finds and uses the checksum commands', { skip: rcloneMissing }, () => {
  let srv: TestServer;
  const local = mkdtempSync(join(tmpdir(), 'sluice-rclone-hash-'));
  const files: Record<string, Buffer> = { 'a.bin': randomBytes(1 << 20), 'sub/b.txt': Buffer.from('rclone checks me\n') };

  before(async () => {
    srv = await TestServer.start({ users: [{ name: 'rhea', password: 'rhea password' }] });
    for (const [name, body] of Object.entries(files)) {
      mkdirSync(join(local, 'src', name, '..'), { recursive: true });
      writeFileSync(join(local, 'src', name), body);
    }
  });
  after(async () => {
    await srv.stop();
    rmSync(local, { recursive: true, force: true });
  });

  function rclone(args: string[]) {
    const r = spawnSync('rclone', ['--config', join(local, 'rclone.conf'), '--cache-dir', join(local, 'cache'), ...args], { encoding: 'utf8', timeout: 120_000 });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  }

  it('md5sum and sha1sum of the remote match the files; check compares hashes, not only sizes', () => {
    // A remote of its own, as users set it up: rclone writes the commands it found into its section
    // (an on-the-fly remote, which cannot keep them, left a file unhashed in rclone 1.60).
    const pass = rclone(['obscure', 'rhea password']).stdout.trim();
    writeFileSync(join(local, 'rclone.conf'), `[s]\ntype = sftp\nhost = 127.0.0.1\nport = ${srv.sftpPort}\nuser = rhea\npass = ${pass}\n`);
    const remote = 's:';
    assert.equal(rclone(['copy', join(local, 'src'), `${remote}up`]).code, 0);
    for (const [command, algorithm] of [
      ['md5sum', 'md5'],
      ['sha1sum', 'sha1'],
    ] as const) {
      const r = rclone([command, `${remote}up`]);
      assert.equal(r.code, 0, r.stderr);
      const got = r.stdout.trim().split('\n').sort();
      const want = Object.entries(files).map(([name, body]) => `${hex(algorithm, body)}  ${name}`).sort();
      assert.deepEqual(got, want);
    }
    const check = rclone(['check', join(local, 'src'), `${remote}up`]);
    assert.equal(check.code, 0, check.stderr);
    assert.doesNotMatch(check.stderr, /hashes could not be checked/);
    assert.match(check.stderr, /2 matching files/);
    assert.match(readFileSync(join(local, 'rclone.conf'), 'utf8'), /^md5sum_command = md5sum$/m);
  });
});
