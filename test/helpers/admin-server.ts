import assert from 'node:assert/strict';
import type { AdminTarget } from './admin-http.js';
import { sluice } from './cli.js';
import { freePort, TestServer, type ServerOptions } from './server.js';

/**
 * A test server with the admin API on a free TCP port of 127.0.0.1 and a
 * token (`ops`) made by the CLI; the target sends its requests from `from`,
 * so each file's refusals score an address of its own.
 */
export async function serverWithAdminToken(from: string, options: ServerOptions = {}): Promise<{ srv: TestServer; api: AdminTarget; token: string }> {
  const port = await freePort();
  const srv = await TestServer.start({ ...options, env: { ...options.env, SLUICE_ADMIN_LISTEN: `127.0.0.1:${port}` } });
  const made = sluice(srv.dir, ['admin', 'token', 'create', 'ops']);
  assert.equal(made.code, 0, made.stderr);
  return { srv, api: { port, from }, token: made.stdout.trim() };
}
