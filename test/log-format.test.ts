// logFormat: human lines on a terminal, JSON lines for a pipe or when asked;
// the audit trail is JSON whatever the console shows.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { BIN, sluice } from './helpers/cli.js';
import { RawFtp } from './helpers/ftp-raw.js';
import { freePorts, TestServer, withRunCertificates } from './helpers/server.js';

const USERS = [{ name: 'alice', password: 'alice password' }];
/** The console lines of the log: without the one `serve` prints itself (not through the log) on a first start. */
const lines = (text: string) => text.split('\n').filter((l) => l !== '' && !l.startsWith('created in '));

describe('logFormat', () => {
  it('pretty: the console shows human lines (time, level name, message), the audit file stays JSON', async () => {
    const srv = await TestServer.start({ yaml: 'logFormat: pretty\n', users: USERS });
    try {
      const out = lines(srv.log);
      assert.ok(out.length > 3, srv.log);
      assert.ok(out.every((l) => !l.startsWith('{')), srv.log);
      assert.ok(out.some((l) => /^\[[\d-]+ [\d:.]+\] INFO \(\d+\): sluice started$/.test(l)), srv.log);
      assert.ok(out.some((l) => /^\[[\d-]+ [\d:.]+\] INFO \(\d+\): listening: sftp 127\.0\.0\.1:\d+$/.test(l)), srv.log);
      assert.ok(!srv.log.includes('\x1b['), 'no colours on a pipe');
      const audit = await srv.auditUntil((r) => r.event === 'audit-start');
      assert.equal(audit[0]?.event, 'audit-start');
    } finally {
      await srv.stop();
    }
  });

  for (const format of ['json', 'auto']) {
    it(`${format}: on a pipe every console line is a JSON object`, async () => {
      const srv = await TestServer.start({ env: { SLUICE_LOG_FORMAT: format }, users: USERS });
      try {
        const out = lines(srv.log).map((l) => JSON.parse(l) as { level: number; msg: string });
        assert.ok(out.some((l) => l.msg === 'sluice started' && l.level === 30), srv.log);
      } finally {
        await srv.stop();
      }
    });
  }

  for (const format of ['pretty', 'json']) {
    it(`${format}: a client's name reaches the console with CSI, NEL and bidi controls escaped`, async () => {
      // A failed FTP login is logged with the name the client sent: C0 is escaped by JSON, but U+009B
      // (CSI, which terminals act on), NEL and a bidi override went to the operator's console as they were.
      const srv = await TestServer.start({ yaml: `logFormat: ${format}\nftp:\n  tls: optional\n`, users: USERS });
      try {
        const ftp = await RawFtp.connect(srv.ftpPort);
        await ftp.read();
        const name = 'x\u009b2J\u0085\u202egnp.exe';
        assert.equal((await ftp.login(name, 'wrong')).code, 530);
        ftp.socket.destroy();
        await srv.logs(/login failed/);
        const line = srv.log.split('\n').find((l) => l.includes('login failed') || l.includes('gnp.exe')) ?? '';
        assert.doesNotMatch(srv.log, /[\u0080-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/, line);
        if (format === 'json') {
          const parsed = srv.log.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { msg: string; user?: string });
          assert.equal(parsed.find((l) => l.msg === 'login failed')?.user, name, 'the JSON line still parses to the name sent');
        }
      } finally {
        await srv.stop();
      }
    });
  }

  it('auto: on a terminal, human lines', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-tty-'));
    after(() => rmSync(dir, { recursive: true, force: true }));
    withRunCertificates(dir);
    const [sftpPort] = await freePorts(1);
    // script(1) gives the server a pseudo-terminal for stdout, and copies what it shows to our pipe.
    const command = `exec '${process.execPath}' '${BIN}' serve`;
    const child = spawn('script', ['-qfec', command, '/dev/null'], {
      cwd: dir,
      env: { ...process.env, SLUICE_BIND: '127.0.0.1', SLUICE_FTP_PORT: '0', SLUICE_FTPS_PORT: '0', SLUICE_SFTP_PORT: String(sftpPort), SLUICE_WORKERS: '1', SLUICE_LOG_FORMAT: 'auto', TERM: 'xterm' },
    });
    let shown = '';
    child.stdout.on('data', (d: Buffer) => (shown += d));
    const exited = new Promise((r) => child.once('exit', r));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no start line:\n${shown}`)), 60_000);
      child.stdout.on('data', () => /sluice started/.test(shown) && (clearTimeout(timer), resolve()));
    });
    child.kill('SIGTERM');
    await exited;
    // eslint-disable-next-line no-control-regex
    const plain = shown.replace(/\x1b\[[0-9;]*m/g, '');
    assert.match(plain, /^\[[\d-]+ [\d:.]+\] INFO \(\d+\): sluice started\r?$/m);
    assert.ok(!/^\{/m.test(plain), shown);
  });

  it('a bad value is a config error: exit 2, one line', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-logfmt-'));
    after(() => rmSync(dir, { recursive: true, force: true }));
    // Were the value taken, this server would listen on no port (and on loopback only).
    const quiet = { SLUICE_BIND: '127.0.0.1', SLUICE_FTP_PORT: '0', SLUICE_FTPS_PORT: '0', SLUICE_SFTP_PORT: '0' };
    const fromEnv = sluice(dir, ['serve'], '', { ...quiet, SLUICE_LOG_FORMAT: 'fancy' });
    assert.equal(fromEnv.code, 2);
    assert.match(fromEnv.stderr, /^sluice: config: logFormat \(from SLUICE_LOG_FORMAT\): .*"auto".*\n$/);
    writeFileSync(join(dir, 'sluice.yaml'), 'logFormat: text\n');
    const fromFile = sluice(dir, ['serve'], '', quiet);
    assert.equal(fromFile.code, 2);
    assert.match(fromFile.stderr, /^sluice: config: logFormat: .*"pretty".*\n$/);
  });
});
