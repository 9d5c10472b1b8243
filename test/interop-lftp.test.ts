import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { programMissing } from './helpers/programs.js';
import { TestServer } from './helpers/server.js';

/**
 * lftp: the scripted client of choice for publishing a website (`mirror -R`),
 * with its own FTP, FTPS (GnuTLS) and SFTP (its own codec over OpenSSH's ssh)
 * code, several data connections or requests at once (`--parallel`, `pget`)
 * and resumed transfers (`reput`, `get -c`).
 */
const lftpMissing = programMissing('lftp');

const MiB = 1024 * 1024;
const PASSWORD = 'lftp password';
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** A website: small files in a few directories, names a shell or a URL would take apart, and one archive. */
const site: Record<string, Buffer> = {
  ...Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`${['', 'css/', 'img/', 'js/lib/'][i % 4]}f${i}.txt`, randomBytes(i * 131)])),
  'sp ace & more.html': Buffer.from('<p>odd name</p>\n'),
  'ünï cödé.txt': Buffer.from('utf-8 name\n'),
  'empty.txt': Buffer.alloc(0),
};
const big = randomBytes(12 * MiB);

type Rec = Record<string, unknown>;

/** Every file under `dir`, by its path relative to it. */
function tree(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out[relative(dir, p)] = sha256(readFileSync(p));
    }
  };
  walk(dir);
  return out;
}

describe('lftp: a website published and fetched with mirror, parallel and resumed transfers', { skip: lftpMissing }, () => {
  let srv: TestServer;
  const local = mkdtempSync(join(tmpdir(), 'sluice-lftp-'));
  const source = join(local, 'site');
  const expected = (): Record<string, string> => Object.fromEntries(Object.entries(site).map(([name, data]) => [name, sha256(data)]));

  before(async () => {
    srv = await TestServer.start({
      // Plain FTP is served beside FTPS for the one case that uses it; lftp's mirror and pget open up to 4 data connections at once.
      yaml: 'ftp:\n  tls: optional\n',
      // chmod is not among a new user's permissions (README, Permissions).
      users: [{ name: 'lena', password: PASSWORD, args: ['--perms', 'all'] }],
    });
    for (const [name, data] of Object.entries(site)) {
      mkdirSync(join(source, name, '..'), { recursive: true });
      writeFileSync(join(source, name), data);
    }
    writeFileSync(join(local, 'big.bin'), big);
    writeFileSync(join(local, 'part.bin'), big.subarray(0, 5 * MiB));
  });
  after(async () => {
    await srv.stop();
    rmSync(local, { recursive: true, force: true });
  });

  /** Runs `commands` after opening `url` as lena; no retries, so that a retry cannot hide a failure. */
  function lftp(url: string, commands: string[]): string {
    const script = [
      'set net:max-retries 1',
      'set net:timeout 20',
      'set cmd:fail-exit true',
      'set ssl:verify-certificate no',
      'set sftp:connect-program "ssh -a -x -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"',
      `open -u lena,"${PASSWORD}" ${url}`,
      ...commands,
    ].join('\n');
    const r = spawnSync('lftp', ['-c', script], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, HOME: local } });
    assert.equal(r.status, 0, `lftp ${commands.join('; ')}: ${r.stderr}${r.stdout}`);
    return r.stdout;
  }

  /**
   * The audit trail once `seen` holds of it and every session logged in has logged out: what lftp did is
   * all written, a record not there then was never made. `seen` comes first: right after lftp's exit, its
   * last session's login may not be written yet either.
   */
  const settled = (seen: (records: Rec[]) => boolean = () => true): Promise<Rec[]> =>
    srv.auditWhen((rs) => seen(rs) && rs.filter((r) => r.event === 'login').length === rs.filter((r) => r.event === 'logout').length);
  /** Whether a record of `event` on `path` was written after the first `from`. */
  const has = (event: string, path: string, from: number) => (rs: Rec[]) => rs.slice(from).some((r) => r.event === event && r.path === path);

  const ok = (records: Rec[], event: string, prefix: string) => records.filter((r) => r.event === event && r.result === 'ok' && String(r.path).startsWith(prefix));

  for (const { scheme, force } of [
    { scheme: 'ftp', force: true },
    { scheme: 'ftp', force: false },
    { scheme: 'sftp', force: false },
  ]) {
    const name = scheme === 'sftp' ? 'SFTP' : force ? 'FTPS (explicit, data protected)' : 'plain FTP';
    const top = `/${name.split(' ')[0]?.toLowerCase()}`;
    it(`${name}: mirror -R --parallel=4 up, mirror back, again only what changed; pget -n 4; reput; get -c`, { timeout: 180_000 }, async () => {
      const port = scheme === 'sftp' ? srv.sftpPort : srv.ftpPort;
      const url = `${scheme}://127.0.0.1:${port}`;
      const tls = scheme === 'ftp' ? [`set ftp:ssl-allow ${force}`, `set ftp:ssl-force ${force}`, `set ftp:ssl-protect-data ${force}`] : [];
      const since = (await settled()).length;
      lftp(url, [...tls, `mkdir ${top}`, `mirror -R --parallel=4 ${source} ${top}/site`]);
      assert.deepEqual(tree(join(srv.home('lena'), top, 'site')), expected());
      const back = join(local, `back-${name.split(' ')[0]}`);
      lftp(url, [...tls, `mirror --parallel=4 ${top}/site ${back}`]);
      assert.deepEqual(tree(back), expected());
      let records = (await settled(has('download', `${top}/site/js/lib/f39.txt`, since))).slice(since);
      // Each file up once and down once, whole, with its hash; lftp's FTP mirror makes an empty file without a RETR.
      for (const event of ['upload', 'download'] as const) {
        const got = ok(records, event, `${top}/site/`);
        const names = Object.keys(site).filter((n) => event === 'upload' || scheme === 'sftp' || (site[n] as Buffer).length > 0);
        const others = records.filter((r) => r.event === event && r.result !== 'ok');
        assert.deepEqual(got.map((r) => String(r.path)).sort(), names.map((n) => `${top}/site/${n}`).sort(), `${event}s; not ok: ${JSON.stringify(others)}`);
        for (const r of got) assert.equal(r.sha256, sha256(site[String(r.path).slice(`${top}/site/`.length)] as Buffer), String(r.path));
      }

      // One page edited: mirror -R --only-newer sends it alone.
      const edited = 'css/f1.txt';
      site[edited] = Buffer.from(`edited for ${name}\n`);
      writeFileSync(join(source, edited), site[edited] as Buffer);
      // Later than what the first mirror -R set on the server's copy, whatever an earlier case set here.
      const later = new Date(statSync(join(source, edited)).mtimeMs + 3_600_000);
      utimesSync(join(source, edited), later, later);
      const before = (await settled()).length;
      lftp(url, [...tls, `mirror -R --only-newer ${source} ${top}/site`]);
      assert.deepEqual(tree(join(srv.home('lena'), top, 'site')), expected());
      records = (await settled(has('upload', `${top}/site/${edited}`, before))).slice(before);
      assert.deepEqual(ok(records, 'upload', `${top}/site/`).map((r) => r.path), [`${top}/site/${edited}`]);

      // An archive: part of it, then the rest resumed (reput); fetched in 4 parts at once (pget), and resumed (get -c).
      lftp(url, [...tls, `put ${join(local, 'part.bin')} -o ${top}/big.bin`, `reput ${join(local, 'big.bin')} -o ${top}/big.bin`]);
      assert.equal(sha256(readFileSync(join(srv.home('lena'), top, 'big.bin'))), sha256(big));
      const parts = join(local, `pget-${name.split(' ')[0]}.bin`);
      const resumed = join(local, `getc-${name.split(' ')[0]}.bin`);
      writeFileSync(resumed, big.subarray(0, 3 * MiB));
      lftp(url, [...tls, `pget -n 4 ${top}/big.bin -o ${parts}`, `get -c ${top}/big.bin -o ${resumed}`]);
      assert.equal(sha256(readFileSync(parts)), sha256(big));
      assert.equal(sha256(readFileSync(resumed)), sha256(big));
      records = (await settled(has('download', `${top}/big.bin`, before))).slice(before);
      const resumedUpload = ok(records, 'upload', `${top}/big.bin`).at(-1);
      assert.equal(resumedUpload?.offset, 5 * MiB, JSON.stringify(resumedUpload));

      // Renamed, its mode set, and the whole tree removed.
      lftp(url, [...tls, `mv ${top}/big.bin ${top}/archive.bin`, `chmod 600 ${top}/archive.bin`]);
      assert.equal(statSync(join(srv.home('lena'), top, 'archive.bin')).mode & 0o777, 0o600);
      lftp(url, [...tls, `rm -r ${top}`]);
      assert.deepEqual(readdirSync(srv.home('lena')).filter((n) => n === top.slice(1)), []);
    });
  }
});
