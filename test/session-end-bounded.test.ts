import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Ledger, Ledgers } from '../src/session/quota.js';
import { loggedIn } from './helpers/ftp-raw.js';
import { InProcessServer } from './helpers/in-process.js';

/*
 * A session's end waits for its changes under way (session-end-waits), but
 * not for ever: found by a review of 32088c4. A change stuck on something
 * outside the server (a shared store that is down holds a removal at its
 * write lock; here the quota ledger never answers a MKDIR) held the end of
 * its session, and with it a drain, until that came back. The end now goes
 * on after a while.
 */
describe('a session whose change is stuck', () => {
  let srv: InProcessServer;
  const PASSWORD = 'kim-secret-12';

  before(async () => {
    srv = await InProcessServer.start({}, ['kim'], PASSWORD);
    const deps = srv.services.sessionDeps as { quotas: Ledgers };
    const real = deps.quotas;
    // kim's ledger never answers for a name more: her MKDIR waits for ever.
    deps.quotas = {
      acquire: async (account) => {
        const ledger = await real.acquire(account);
        return new Proxy(ledger, {
          get(target, key) {
            if (key === 'holdFile') return () => new Promise<void>(() => undefined);
            const value: unknown = Reflect.get(target, key, target);
            return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
          },
        }) as Ledger;
      },
    };
  });
  after(async () => {
    await srv?.close();
  });

  it('still ends once its client has gone, and its logout is recorded', { timeout: 60_000 }, async () => {
    const c = await loggedIn(srv.ftpPort, 'kim', PASSWORD);
    c.send('MKD stuck\r\n');
    await new Promise((r) => setTimeout(r, 200));
    const gone = Date.now();
    c.close();
    const trail = resolve(srv.base.config.dataDir, srv.base.config.audit.file);
    let logout = false;
    while (!logout && Date.now() - gone < 30_000) {
      await new Promise((r) => setTimeout(r, 250));
      await srv.coordination.auditLog?.flush();
      logout = readFileSync(trail, 'utf8').split('\n').filter(Boolean).some((l) => {
        const r = JSON.parse(l) as { user?: string; event?: string };
        return r.user === 'kim' && r.event === 'logout';
      });
    }
    assert.ok(logout, 'the session of a stuck change never ended (no logout 30 s after its client left)');
  });
});
