// Issue #15: /metrics counts what really happened, over every worker; /healthz
// and /readyz on the admin listener. Real clients (basic-ftp, ssh2, curl)
// against the real server process, with workers: 1 and workers: 2.
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { Client as FtpClient } from 'basic-ftp';
import { sluice } from './helpers/cli.js';
import { names, parseMetrics, sample } from './helpers/prometheus.js';
import { freePort, TestServer } from './helpers/server.js';
import { call, sftpOf, sshConnect } from './helpers/ssh.js';

const PASSWORD = 'metrics test password';
const run = promisify(execFile);

/** GET with curl: the status and the body. */
async function curl(port: number, path: string, token?: string): Promise<{ status: number; body: string }> {
  const args = ['-s', '-o', '-', '-w', '\n%{http_code}', ...(token ? ['-H', `Authorization: Bearer ${token}`] : []), `http://127.0.0.1:${port}${path}`];
  const { stdout } = await run('curl', args);
  const cut = stdout.lastIndexOf('\n');
  return { status: Number(stdout.slice(cut + 1)), body: stdout.slice(0, cut) };
}

async function scrape(port: number): Promise<Map<string, number>> {
  const r = await curl(port, '/metrics');
  assert.equal(r.status, 200, r.body);
  return parseMetrics(r.body);
}

type User = { name: string; password: string; args?: string[] };

async function start(workers: string, yaml = '', users: User[] = [{ name: 'alice', password: PASSWORD }]): Promise<{ srv: TestServer; admin: number }> {
  const admin = await freePort();
  const srv = await TestServer.start({
    env: { SLUICE_WORKERS: workers, SLUICE_ADMIN_LISTEN: `127.0.0.1:${admin}` },
    yaml: `auth:\n  failureDelay: 0\n  maxTries: 10\n${yaml}`,
    users,
  });
  return { srv, admin };
}

async function ftps(srv: TestServer, user: string, password: string): Promise<FtpClient> {
  const c = new FtpClient(30_000);
  await c.access({ host: '127.0.0.1', port: srv.ftpPort, user, password, secure: true, secureOptions: { rejectUnauthorized: false } });
  return c;
}

async function ftpsDownload(c: FtpClient, path: string): Promise<number> {
  let n = 0;
  await c.downloadTo(new Writable({ write: (chunk: Buffer, _e, done) => ((n += chunk.length), done()) }), path);
  return n;
}

/** Once every session's end has reached the registry (a close is asynchronous), the answer. */
async function sessionsClosed(admin: number): Promise<Map<string, number>> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const s = await scrape(admin);
    if (['ftps', 'sftp'].every((protocol) => sample(s, 'sluice_sessions', { protocol }) === 0) || Date.now() > deadline) return s;
    await new Promise((r) => setTimeout(r, 100));
  }
}

for (const workers of ['1', '2']) {
  describe(`/metrics counts real logins and transfers (workers: ${workers})`, () => {
    let srv: TestServer;
    let admin: number;
    before(async () => {
      ({ srv, admin } = await start(workers, 'admin:\n  metricsPublic: true\n', [
        { name: 'alice', password: PASSWORD },
        { name: 'carol', password: PASSWORD, args: ['--quota-files', '1'] },
      ]));
    });
    after(() => srv.stop());

    it('exactly the logins, sessions, bytes, files and quota refusals that happened', async () => {
      const before = await scrape(admin);
      assert.equal(sample(before, 'sluice_logins_total', { protocol: 'ftps', result: 'ok', reason: '' }), 0);

      // FTPS: one good login, an upload of 3000 bytes and its download; two failed logins.
      const f = await ftps(srv, 'alice', PASSWORD);
      await f.uploadFrom(Readable.from([Buffer.alloc(3000, 1)]), 'a.bin');
      assert.equal(await ftpsDownload(f, 'a.bin'), 3000);
      await assert.rejects(ftps(srv, 'alice', 'wrong'));
      await assert.rejects(ftps(srv, 'nobody', 'wrong'));

      // SFTP: alice uploads 5000 bytes and reads them back; one failed login.
      const conn = await sshConnect({ port: srv.sftpPort, username: 'alice', password: PASSWORD });
      const sftp = await sftpOf(conn);
      await call((cb) => sftp.writeFile('b.bin', Buffer.alloc(5000, 2), cb));
      assert.equal((await call<Buffer>((cb) => sftp.readFile('b.bin', cb))).length, 5000);
      await assert.rejects(sshConnect({ port: srv.sftpPort, username: 'alice', password: 'wrong' }));
      // While the connections are open, they are the sessions.
      const during = await scrape(admin);
      assert.equal(sample(during, 'sluice_sessions', { protocol: 'ftps' }), 1);
      assert.equal(sample(during, 'sluice_sessions', { protocol: 'sftp' }), 1);

      // carol may keep one file: a second new name is refused at the open.
      const carol = await sshConnect({ port: srv.sftpPort, username: 'carol', password: PASSWORD });
      const cs = await sftpOf(carol);
      await call((cb) => cs.writeFile('one.bin', Buffer.alloc(100, 3), cb));
      await assert.rejects(call((cb) => cs.writeFile('two.bin', Buffer.alloc(100, 3), cb)));

      f.close();
      conn.end();
      carol.end();
      const s = await sessionsClosed(admin);
      const expected: [string, Record<string, string>, number][] = [
        ['sluice_logins_total', { protocol: 'ftps', result: 'ok', reason: '' }, 1],
        // A wrong password and an unknown name: read by anyone (admin.metricsPublic), not told apart.
        ['sluice_logins_total', { protocol: 'ftps', result: 'failed', reason: 'refused' }, 2],
        ['sluice_logins_total', { protocol: 'sftp', result: 'ok', reason: '' }, 2],
        ['sluice_logins_total', { protocol: 'sftp', result: 'failed', reason: 'refused' }, 1],
        ['sluice_sessions', { protocol: 'ftps' }, 0],
        ['sluice_sessions', { protocol: 'sftp' }, 0],
        ['sluice_transfer_bytes_total', { protocol: 'ftps', direction: 'upload' }, 3000],
        ['sluice_transfer_bytes_total', { protocol: 'ftps', direction: 'download' }, 3000],
        ['sluice_transfer_bytes_total', { protocol: 'sftp', direction: 'upload' }, 5100],
        ['sluice_transfer_bytes_total', { protocol: 'sftp', direction: 'download' }, 5000],
        ['sluice_transfer_files_total', { protocol: 'ftps', direction: 'upload', result: 'ok' }, 1],
        ['sluice_transfer_files_total', { protocol: 'ftps', direction: 'download', result: 'ok' }, 1],
        ['sluice_transfer_files_total', { protocol: 'sftp', direction: 'upload', result: 'ok' }, 2],
        ['sluice_transfer_files_total', { protocol: 'sftp', direction: 'download', result: 'ok' }, 1],
        ['sluice_transfer_duration_seconds_count', { protocol: 'sftp', direction: 'upload' }, 2],
        ['sluice_transfer_duration_seconds_count', { protocol: 'ftps', direction: 'download' }, 1],
        ['sluice_quota_refusals_total', { protocol: 'sftp' }, 1],
        ['sluice_bans_active', {}, 0],
      ];
      for (const [name, labels, value] of expected) assert.equal(sample(s, name, labels), value, `${name} ${JSON.stringify(labels)}`);
      // Nothing else was counted: no other login reason, no other transfer result.
      const counted = (name: string) => /^sluice_(logins|transfer_files)_total\b/.test(name);
      const moved = [...s].filter(([k, v]) => v !== 0 && counted(k)).map(([k]) => k);
      assert.equal(moved.length, expected.filter(([name, , value]) => value !== 0 && counted(name)).length, moved.join('\n'));
    });

    it('every metric deploy/prometheus.yml and deploy/grafana-dashboard.json name is in the answer', async () => {
      const exposed = names(await scrape(admin));
      for (const file of ['prometheus.yml', 'grafana-dashboard.json']) {
        const text = readFileSync(new URL(`../deploy/${file}`, import.meta.url), 'utf8');
        const referenced = new Set(text.match(/\bsluice_[a-z0-9_]+/g));
        assert.ok(referenced.size >= (file === 'prometheus.yml' ? 4 : 12), `${file} names ${referenced.size}`);
        for (const name of referenced) assert.ok(exposed.has(name), `${file}: ${name} is not in /metrics`);
      }
    });

    it('the audit writer: every line it wrote counted, its flushes timed', async () => {
      // The lines counted so far, then the file until it holds them and this scrape's own record (every
      // /metrics request is audited, once answered); the next scrape counts that record too.
      const counted = sample(await scrape(admin), 'sluice_audit_lines_total');
      const lines = (await srv.auditWhen((records) => records.length > counted)).length;
      const s = await scrape(admin);
      assert.equal(sample(s, 'sluice_audit_lines_total'), lines);
      assert.ok(sample(s, 'sluice_audit_flush_seconds_count') > 0);
    });

    it('bans in force, as the store has them', async () => {
      assert.equal(sluice(srv.dir, ['ban', 'add', '192.0.2.7']).code, 0);
      assert.equal(sample(await scrape(admin), 'sluice_bans_active'), 1);
    });

    it(`each process's memory, CPU and event-loop delay, labelled by worker (0: the primary)`, async () => {
      const ids = workers === '1' ? ['0'] : ['0', '1', '2'];
      const s = await scrape(admin);
      for (const worker of ids) {
        assert.ok(sample(s, 'sluice_process_resident_memory_bytes', { worker }) > 10 * 1024 * 1024, `rss of ${worker}`);
        assert.ok(sample(s, 'sluice_process_cpu_seconds_total', { worker }) > 0, `cpu of ${worker}`);
        assert.ok(s.has(`sluice_event_loop_delay_p99_seconds{worker="${worker}"}`), `loop delay of ${worker}`);
      }
      const labelled = new Set([...s.keys()].filter((k) => k.startsWith('sluice_process_resident_memory_bytes')).map((k) => /worker="(\d+)"/.exec(k)?.[1]));
      assert.deepEqual([...labelled].sort(), ids);
    });

    it('/healthz and /readyz answer 200 without a token', async () => {
      assert.equal((await curl(admin, '/healthz')).status, 200);
      const ready = await curl(admin, '/readyz');
      assert.equal(ready.status, 200, ready.body);
      assert.deepEqual(JSON.parse(ready.body), { ready: true, reasons: [], warnings: [] });
    });
  });
}

describe('/readyz says why the server is not ready; /metrics needs a token unless admin.metricsPublic', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-readyz-'));
  let srv: TestServer;
  let admin: number;
  before(async () => {
    // A certificate that expires in 3 days, made by openssl where the server looks for its own.
    const certs = join(dir, 'certs');
    mkdirSync(certs);
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', join(certs, 'tls-key.pem'), '-out', join(certs, 'tls-cert.pem'), '-days', '3', '-subj', '/CN=localhost'], { stdio: 'ignore' });
    ({ srv, admin } = await start('1', `certsDir: ${certs}\naudit:\n  file: trail/audit.log\n`));
  });
  after(async () => {
    await srv.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  // Found by an operator's review: a 503 a week before the end took every node sharing the certificate
  // out of the balancer's rotation at once, while it still served.
  it('ready, with a warning naming the certificate that expires within 7 days', async () => {
    const r = await curl(admin, '/readyz');
    assert.equal(r.status, 200, r.body);
    const body = JSON.parse(r.body) as { ready: boolean; reasons: string[]; warnings: string[] };
    assert.equal(body.ready, true);
    assert.deepEqual(body.reasons, [], r.body);
    assert.deepEqual(body.warnings, ['certificate expires within 7 days'], r.body);
    assert.equal((await curl(admin, '/healthz')).status, 200);
  });

  it('503 while the audit log cannot be written, and ready again once it can', async () => {
    const trail = join(srv.dir, 'data', 'trail');
    renameSync(trail, `${trail}.moved`);
    writeFileSync(trail, 'a file where the audit directory was');
    try {
      const r = await curl(admin, '/readyz');
      assert.equal(r.status, 503);
      // /readyz needs no token: a fixed label, no path or error text; the details are in the server's log.
      const body = JSON.parse(r.body) as { reasons: string[]; warnings: string[] };
      assert.deepEqual(body.reasons, ['audit log not writable'], r.body);
      assert.deepEqual(body.warnings, ['certificate expires within 7 days'], r.body);
      assert.ok(!r.body.includes(tmpdir()), r.body);
      assert.equal((await curl(admin, '/readyz')).body, r.body);
      // Logged once for the change, not for each of the two probes.
      const detail = `audit log not writable: ${trail} is not a directory`;
      const logged = () => srv.log.split('\n').filter((line) => line.includes(detail)).length;
      for (let i = 0; i < 50 && logged() === 0; i++) await new Promise((r) => setTimeout(r, 100));
      assert.equal(logged(), 1, srv.log);
    } finally {
      rmSync(trail);
      renameSync(`${trail}.moved`, trail);
    }
    const again = JSON.parse((await curl(admin, '/readyz')).body) as { reasons: string[] };
    assert.equal(again.reasons.filter((why) => why.startsWith('audit')).length, 0, again.reasons.join());
  });

  it('/metrics: 401 without a token, the numbers with one', async () => {
    assert.equal((await curl(admin, '/metrics')).status, 401);
    const created = sluice(srv.dir, ['admin', 'token', 'create', 'prometheus']);
    assert.equal(created.code, 0, created.stderr);
    const r = await curl(admin, '/metrics', created.stdout.trim());
    assert.equal(r.status, 200);
    assert.match(r.body, /^sluice_sessions\{protocol="sftp"\} 0$/m);
  });
});

describe('workers: 2 — workers killed: the counts stay, their sessions end, their process series go', () => {
  let srv: TestServer;
  let admin: number;
  before(async () => {
    ({ srv, admin } = await start('2', 'admin:\n  metricsPublic: true\n'));
  });
  after(() => srv.stop());

  it('after every worker is killed and started again', async () => {
    const conns = [];
    for (let i = 0; i < 2; i++) conns.push(await sshConnect({ port: srv.sftpPort, username: 'alice', password: PASSWORD }));
    for (const [i, c] of conns.entries()) {
      const sftp = await sftpOf(c);
      await call((cb) => sftp.writeFile(`f${i}`, Buffer.alloc(700), cb));
    }
    const during = await scrape(admin);
    assert.equal(sample(during, 'sluice_sessions', { protocol: 'sftp' }), 2);
    const pids = execFileSync('pgrep', ['-P', String(srv.pid)]).toString().trim().split('\n').map(Number);
    assert.equal(pids.length, 2);
    for (const pid of pids) process.kill(pid, 'SIGKILL');
    await Promise.all(
      conns.map((c) => {
        c.on('error', () => undefined);
        return new Promise<void>((resolve) => c.once('close', () => resolve()));
      }),
    );

    // Two new workers (ids 3 and 4) are up when /readyz says so.
    const deadline = Date.now() + 20_000;
    while ((await curl(admin, '/readyz')).status !== 200 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    let s = await scrape(admin);
    for (let i = 0; i < 30 && !s.has('sluice_process_resident_memory_bytes{worker="4"}'); i++) {
      await new Promise((r) => setTimeout(r, 200));
      s = await scrape(admin);
    }
    assert.equal(sample(s, 'sluice_sessions', { protocol: 'sftp' }), 0);
    assert.equal(sample(s, 'sluice_logins_total', { protocol: 'sftp', result: 'ok', reason: '' }), 2);
    assert.equal(sample(s, 'sluice_transfer_bytes_total', { protocol: 'sftp', direction: 'upload' }), 1400);
    const workersSeen = [...s.keys()].filter((k) => k.startsWith('sluice_process_resident_memory_bytes')).map((k) => /worker="(\d+)"/.exec(k)?.[1]);
    assert.deepEqual(workersSeen.sort(), ['0', '3', '4']);
  });
});
