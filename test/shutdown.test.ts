import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { TestServer } from './helpers/server.js';
import { call, sftpOf, sshConnect } from './helpers/ssh.js';

describe('SIGTERM with SFTP sessions open', () => {
  it('records every open session ending (upload aborted, logout) before the audit log closes, and exits 0', async () => {
    const srv = await TestServer.start({ users: [{ name: 'alice', password: 'alice password' }] });
    const dir = srv.dir;
    try {
      const clients = await Promise.all([1, 2, 3].map(() => sshConnect({ port: srv.sftpPort, username: 'alice', password: 'alice password' })));
      for (const [i, c] of clients.entries()) {
        const sftp = await sftpOf(c);
        const handle = await call<Buffer>((cb) => sftp.open(`/open-${i}.bin`, 'w', cb));
        await call((cb) => sftp.write(handle, Buffer.alloc(4096, i), 0, 4096, 0, cb));
      }
      for (const c of clients) c.on('error', () => undefined);
      const exited = new Promise<number | null>((resolve) => srv.process?.once('exit', resolve));
      srv.signal('SIGTERM');
      assert.equal(await exited, 0, srv.log);
      const records = readFileSync(join(dir, 'data', 'audit.log'), 'utf8')
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      const sessions = new Set(records.filter((r) => r.event === 'login').map((r) => r.session));
      assert.equal(sessions.size, 3);
      for (const session of sessions) {
        const mine = records.filter((r) => r.session === session);
        assert.ok(mine.some((r) => r.event === 'upload' && r.result === 'aborted'), `no aborted upload for ${String(session)}`);
        assert.ok(mine.some((r) => r.event === 'logout'), `no logout for ${String(session)}`);
      }
    } finally {
      await srv.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
