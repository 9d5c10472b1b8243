import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { adminRequest, type AdminTarget } from './helpers/admin-http.js';
import { RawFtp } from './helpers/ftp-raw.js';
import { freePort, TestServer } from './helpers/server.js';
import { sshConnect } from './helpers/ssh.js';

/*
 * Every refused login is answered alike; why it was refused goes to the audit
 * trail only (SECURITY.md, Authentication). Found by a review: with
 * admin.metricsPublic, anyone who reaches /metrics read it there,
 * sluice_logins_total{reason} counting `unknown-user` apart from
 * `bad-password` (which names exist), and `key-required`, `disabled`,
 * `address-not-allowed` and the like, checked only once the password has
 * verified, apart from both: a guess against a key-only account, or from
 * outside an account's allowed addresses, was told right there.
 */

describe('public metrics do not tell why a login was refused', () => {
  let srv: TestServer;
  let api: AdminTarget;
  before(async () => {
    const port = await freePort();
    srv = await TestServer.start({
      env: { SLUICE_ADMIN_LISTEN: `127.0.0.1:${port}` },
      // Without the defender: the test's own refusals would ban 127.0.0.1.
      yaml: 'admin:\n  metricsPublic: true\ndefender:\n  enabled: false\nauth:\n  failureDelay: 0.05\n',
      users: [
        { name: 'alice', password: 'alice password' },
        { name: 'keyonly', password: 'keyonly password', args: ['--require-key'] },
        { name: 'inside', password: 'inside password', args: ['--allow-ip', '192.0.2.0/24'] },
      ],
    });
    api = { port };
  });
  after(() => srv.stop());

  /** Failed logins by reason, as anyone reads them. */
  async function failedByReason(): Promise<Map<string, number>> {
    const r = await adminRequest(api, 'GET', '/metrics');
    assert.equal(r.status, 200, r.text);
    const counts = new Map<string, number>();
    for (const m of r.text.matchAll(/^sluice_logins_total\{([^}]*)\} (\S+)$/gm)) {
      const labels = Object.fromEntries([...(m[1] as string).matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
      if (labels.result !== 'failed' || Number(m[2]) === 0) continue;
      counts.set(labels.reason as string, (counts.get(labels.reason as string) ?? 0) + Number(m[2]));
    }
    return counts;
  }

  async function ftpRefused(user: string, password: string): Promise<void> {
    const c = await RawFtp.connect(srv.ftpPort);
    try {
      await c.read();
      await c.startTls();
      await c.cmd(`USER ${user}`);
      assert.equal((await c.cmd(`PASS ${password}`)).code, 530);
    } finally {
      c.close();
    }
  }

  it('the right password of a key-only account, of an account allowed elsewhere, a wrong one and an unknown name count alike', { timeout: 60_000 }, async () => {
    await ftpRefused('keyonly', 'keyonly password');
    await ftpRefused('inside', 'inside password');
    await ftpRefused('alice', 'not the password');
    await ftpRefused('nobody', 'not the password');
    await assert.rejects(sshConnect({ port: srv.sftpPort, username: 'keyonly', password: 'keyonly password' }));
    const counts = await failedByReason();
    assert.deepEqual([...counts.keys()], ['refused'], `reasons told: ${JSON.stringify(Object.fromEntries(counts))}`);
    assert.equal(counts.get('refused'), 5);
  });
});
