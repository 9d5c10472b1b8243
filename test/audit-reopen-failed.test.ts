import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, describe, it } from 'node:test';
import { sluice } from './helpers/cli.js';
import { freshRoot, openAuditLog, recordsOf } from './helpers/audit-files.js';
import { RawFtp, loggedIn, type Reply } from './helpers/ftp-raw.js';
import { TestServer } from './helpers/server.js';

/*
 * logrotate moves the trail and sends SIGHUP, and the new file cannot be
 * made just then: the file system out of inodes (ENOSPC on the open), or the
 * directory not writable. Found by a review (a tmpfs with nr_inodes filled,
 * then mv audit.log audit.log.1 and kill -HUP): the writer took the stream
 * whose open had failed as its file. Every record from then on went to a
 * stream with no descriptor: a burst of them threw ERR_OUT_OF_RANGE (fd -1)
 * out of the audit write into the session (FTP answered 451 Local error to a
 * refused SITE CHMOD), and when the next SIGHUP found a file it dropped that
 * stream with everything it held: `sluice audit verify` then failed
 * ('sequence jumps'), the logins and refusals of that time gone. The old
 * file stays open until the new one is: records go on into it meanwhile.
 */

const dir = mkdtempSync(join(tmpdir(), 'sluice-audit-reopen-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const actor = { session: 's1', user: 'alice', protocol: 'sftp' as const, ip: '127.0.0.1', port: 40000 };
/** A non-root process is refused a file in a directory it cannot write; root is not. */
const asRoot = process.getuid?.() === 0;

describe('audit: a reopen whose new file cannot be made loses nothing', () => {
  it('the writer keeps the moved file until a new one opens; the chain stays whole', async (t) => {
    if (asRoot) return t.skip('running as root: a directory without write permission refuses root nothing');
    const { root, data, file } = freshRoot(dir, 'unit');
    const { log, errors } = await openAuditLog(file);
    log.record(actor, { event: 'mkdir', path: '/before' });
    await log.flush();
    renameSync(file, `${file}.1`);
    chmodSync(data, 0o500);
    try {
      await log.reopen();
      // One line naming the file, what it was for and what happens meanwhile (found by an operator's review: libuv's words).
      const said = `a new ${file} could not be made after the file was moved away (SIGHUP): permission denied; lines go on into the file before it, and the new one is tried again each second`;
      assert.ok(errors.includes(said), `the failed open is reported: ${errors.join('; ')}`);
      // More than the writer's 4 KiB buffer at once: the write that hands it to the file must not throw.
      for (let i = 0; i < 40; i++) log.record(actor, { event: 'mkdir', path: `/meanwhile-${i}-${'x'.repeat(100)}` });
      await log.flush();
    } finally {
      chmodSync(data, 0o700);
    }
    await log.reopen();
    log.record(actor, { event: 'mkdir', path: '/after' });
    await log.close();
    const paths = [...recordsOf(`${file}.1`), ...recordsOf(file)].map((r) => r.path).filter((p) => p !== undefined);
    assert.equal(paths.length, 42, 'every record is in one of the files');
    assert.equal(paths[0], '/before');
    assert.equal(paths.at(-1), '/after');
    const verify = sluice(root, ['audit', 'verify']);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  });

  it('the server: refusals answered as such while the new file cannot be made, and the trail verifies after', async (t) => {
    if (asRoot) return t.skip('running as root: a directory without write permission refuses root nothing');
    const srv = await TestServer.start({
      env: { SLUICE_FTP_TLS: 'optional' },
      yaml: 'audit:\n  file: trail/audit.log\n',
      users: [{ name: 'alice', password: 'alice password' }],
    });
    const trail = join(srv.dir, 'data', 'trail');
    let c: RawFtp | null = null;
    try {
      c = await loggedIn(srv.ftpPort, 'alice', 'alice password');
      renameSync(join(trail, 'audit.log'), join(trail, 'audit.log.1'));
      chmodSync(trail, 0o500);
      try {
        srv.signal('SIGHUP');
        // Logged as 'audit log' with libuv's words and a stack (found by an operator's review): one line, the code kept.
        await srv.logs(/"code":"EACCES"[^\n]*audit trail: a new \S+audit\.log could not be made after the file was moved away \(SIGHUP\): permission denied; lines go on/);
        const line = srv.log.split('\n').find((l) => l.includes('could not be made')) ?? '';
        assert.doesNotMatch(line, /"stack"|"err"/, line);
        // alice may not chmod: each is refused and recorded, 40 records at once.
        for (let i = 0; i < 40; i++) {
          const reply: Reply = await c.cmd(`SITE CHMOD 644 /nothing-${i}`);
          assert.equal(reply.code, 550, `refused as a refusal, not a local error: ${reply.text}`);
        }
        await new Promise((r) => setTimeout(r, 1500));
      } finally {
        chmodSync(trail, 0o700);
      }
      srv.signal('SIGHUP');
      await new Promise((r) => setTimeout(r, 300));
      await c.cmd('QUIT');
      c = null;
      await srv.terminate();
      const text = ['audit.log.1', 'audit.log'].map((f) => readFileSync(join(trail, f), 'utf8')).join('');
      assert.equal(text.match(/"event":"denied"/g)?.length ?? 0, 40, 'every refusal recorded');
      const verify = sluice(srv.dir, ['audit', 'verify']);
      assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    } finally {
      c?.close();
      await srv.stop();
    }
  });

  it('a size rotation on a file system out of inodes: lines go on in the rotated file, a new one when an inode is free', (t) => {
    // Renaming needs no inode and creating does: only a full inode table gives this order, so the
    // writer runs in a user and mount namespace of its own (no root needed) over a tmpfs with few.
    if (spawnSync('unshare', ['-Urm', 'true']).status !== 0) return t.skip('unshare -Urm fails here (unprivileged user namespaces off)');
    const root = join(dir, 'inodes');
    const out = join(root, 'data');
    mkdirSync(out, { recursive: true });
    const small = join(root, 'small');
    mkdirSync(small);
    const script = join(root, 'rotate.mts');
    const auditLog = pathToFileURL(resolve('src/audit/log.ts')).href;
    writeFileSync(
      script,
      `import { closeSync, copyFileSync, openSync, readdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { AuditLog } from ${JSON.stringify(auditLog)};
const [dir, out] = process.argv.slice(2);
const errors = [];
const log = await AuditLog.open({ file: join(dir, 'audit.log'), node: 'n1', rotateSize: 4096, keep: { count: 0, days: 0 }, xferlog: null, onError: (e) => errors.push(e.code ?? e.message) });
const actor = { session: 's', user: 'u', protocol: 'sftp', ip: '127.0.0.1', port: 1 };
await log.flush();
const fillers = [];
try { for (;;) { const f = join(dir, 'i' + fillers.length); closeSync(openSync(f, 'w')); fillers.push(f); } } catch {}
for (let i = 0; i < 60; i++) log.record(actor, { event: 'mkdir', path: '/while-full-' + i + '-' + 'x'.repeat(100) });
await log.flush();
await new Promise((r) => setTimeout(r, 1500));
for (const f of fillers) unlinkSync(f);
await new Promise((r) => setTimeout(r, 1500));
log.record(actor, { event: 'mkdir', path: '/after' });
await log.close();
for (const name of readdirSync(dir)) if (name.startsWith('audit.log')) copyFileSync(join(dir, name), join(out, name));
console.log(JSON.stringify(errors));
`,
    );
    const r = spawnSync(
      'unshare',
      ['-Urm', 'sh', '-c', 'mount -t tmpfs -o nr_inodes=16,size=4m tmpfs "$1" && exec "$2" --import tsx "$3" "$1" "$4"', 'sh', small, process.execPath, script, out],
      { encoding: 'utf8', timeout: 60_000 },
    );
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /ENOSPC/, 'the open of the new file failed for want of an inode');
    const files = readdirSync(out).filter((f) => f.startsWith('audit.log')).sort().reverse();
    const paths = files.flatMap((f) => recordsOf(join(out, f))).map((rec) => rec.path).filter((p) => p !== undefined);
    assert.equal(paths.length, 61, `every record kept, in ${files.join(', ')}`);
    assert.equal(paths.at(-1), '/after');
    const verify = sluice(root, ['audit', 'verify']);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  });
});

// Found by a review of b9b27d8, which refused a FIFO as the trail at start only: one put in the trail's place
// before a SIGHUP held the reopen in its open for ever, and the stop behind it (still running 60 s later).
describe('audit: a FIFO in the trail\'s place at a reopen', () => {
  it('is refused as the new file, the records going on into the old one, and the stop ends', { timeout: 60_000 }, async () => {
    const srv = await TestServer.start({ users: [{ name: 'alice', password: 'alice password' }] });
    try {
      const trail = join(srv.dir, 'data', 'audit.log');
      const { uid, gid } = statSync(trail);
      renameSync(trail, `${trail}.1`);
      assert.equal(spawnSync('mkfifo', [trail]).status, 0);
      chownSync(trail, uid, gid);
      srv.signal('SIGHUP');
      // O_NONBLOCK makes the open of a FIFO with no reader fail at once (ENXIO); one with a reader is refused by its type.
      await srv.logs(/"msg":"audit trail: a new \S+audit\.log could not be made after the file was moved away \(SIGHUP\): (not a regular file|\S+ is a FIFO, not a regular file); /);
      const child = srv.process;
      assert.ok(child);
      const exited = new Promise((r) => child.once('exit', () => r('exited')));
      srv.signal('SIGTERM');
      assert.equal(await Promise.race([exited, new Promise((r) => setTimeout(() => r('still running 20 s after SIGTERM'), 20_000))]), 'exited');
      // The records went on into the moved file: it is the whole trail.
      rmSync(trail);
      renameSync(`${trail}.1`, trail);
      const verify = sluice(srv.dir, ['audit', 'verify']);
      assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    } finally {
      await srv.kill();
      await srv.stop();
    }
  });
});
