import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { sluice } from './helpers/cli.js';
import { waitFor } from './helpers/quota.js';
import { TestServer } from './helpers/server.js';
import { call, sftpOf, sshConnect } from './helpers/ssh.js';

/*
 * With workers, the primary keeps each worker's transfers in flight until
 * their records come, to record them aborted if the worker dies first. Found
 * by a review: an upload whose directory was renamed while it was open is
 * recorded where it ended (`path`, with `path_at_open`), and the primary
 * matched the record by `path` against the path of the open, so the entry
 * stayed: the worker's exit, clean or not, wrote an `aborted` record for an
 * upload whose `ok` record was already in the trail, and every such upload
 * kept its entry in the primary's memory for the worker's lifetime.
 */

const PASSWORD = 'moved upload password';

/** One SFTP upload into /d<i>, whose directory is renamed to /e<i> before the CLOSE. */
async function movedUpload(srv: TestServer, i: number): Promise<void> {
  const conn = await sshConnect({ port: srv.sftpPort, username: 'mover', password: PASSWORD });
  try {
    const sftp = await sftpOf(conn);
    await call((cb) => sftp.mkdir(`/d${i}`, cb));
    const h = await call<Buffer>((cb) => sftp.open(`/d${i}/f.bin`, 'w', cb));
    const data = randomBytes(64 * 1024);
    await call((cb) => sftp.write(h, data, 0, data.length, 0, cb));
    await call((cb) => sftp.rename(`/d${i}`, `/e${i}`, cb));
    await call((cb) => sftp.close(h, cb));
  } finally {
    conn.end();
  }
}

/** The upload records of /d<i>/f.bin, wherever they say it ended, as [path, path_at_open, result]. */
function uploadsOf(records: Record<string, unknown>[], i: number): unknown[][] {
  return records
    .filter((r) => r.event === 'upload' && (r.path === `/d${i}/f.bin` || r.path_at_open === `/d${i}/f.bin`))
    .map((r) => [r.path, r.path_at_open, r.result]);
}

describe('workers: 2 — an upload whose directory was renamed while open', () => {
  let srv: TestServer;
  before(async () => {
    srv = await TestServer.start({ env: { SLUICE_WORKERS: '2' }, users: [{ name: 'mover', password: PASSWORD }] });
  });
  after(() => srv.stop());

  it('has one record, ok, when its worker is killed afterwards: no aborted one', async () => {
    await movedUpload(srv, 0);
    await srv.auditUntil((r) => r.event === 'upload' && r.path === '/e0/f.bin');
    const readyLines = () => srv.log.split('\n').filter((l) => l.includes('"msg":"worker ready"')).length;
    // Both workers: whichever served the upload.
    for (const pid of execFileSync('pgrep', ['-P', String(srv.pid)]).toString().trim().split('\n').map(Number)) process.kill(pid, 'SIGKILL');
    await waitFor('two new workers', () => readyLines() === 4);
    // An aborted record would be written as the primary saw the workers die: a failed login on a new
    // worker is recorded after it, and waited for.
    await assert.rejects(sshConnect({ port: srv.sftpPort, username: 'mover', password: 'not the password' }));
    const records = await srv.auditUntil((r) => r.event === 'login-failed' && r.user === 'mover');
    assert.deepEqual(uploadsOf(records, 0), [['/e0/f.bin', '/d0/f.bin', 'ok']]);
  });

  it('has one record, ok, when the server stops cleanly afterwards: no aborted one', async () => {
    await movedUpload(srv, 1);
    await srv.auditUntil((r) => r.event === 'upload' && r.path === '/e1/f.bin');
    await srv.terminate();
    const records = await srv.audit(0);
    assert.deepEqual(uploadsOf(records, 1), [['/e1/f.bin', '/d1/f.bin', 'ok']]);
    assert.deepEqual(records.filter((r) => r.result === 'aborted'), []);
    const verify = sluice(srv.dir, ['audit', 'verify']);
    assert.equal(verify.code, 0, verify.stdout);
  });
});
