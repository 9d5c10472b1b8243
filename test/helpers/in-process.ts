import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { openAdmin, type AdminServices } from '../../src/admin-services.js';
import { openCoordination, servicesOn, type Coordination, type Services } from '../../src/app.js';
import { ensureKeys } from '../../src/certs/ensure.js';
import { loadConfig } from '../../src/config/load.js';
import { startFrontEnds, type FrontEnd } from '../../src/front-ends.js';
import type ssh2 from 'ssh2';
import { PERMISSIONS } from '../../src/session/permissions.js';
import { freePorts, withRunCertificates } from './server.js';
import { call, sftpOf, sshConnect } from './ssh.js';

/**
 * The serving code of `sluice serve` in this process, on loopback ports of
 * its own (plain FTP and SFTP): for tests that reach into its parts (the
 * live sessions, the hasher, the authenticator) while real clients talk to
 * it. `env` adds to or overrides the settings (a function: of the server's
 * directory, for paths in it).
 */
export class InProcessServer {
  private running: FrontEnd[] = [];

  private constructor(
    readonly dir: string,
    readonly base: AdminServices,
    readonly coordination: Coordination,
    readonly services: Services,
    readonly ftpPort: number,
    readonly sftpPort: number,
  ) {}

  static async start(env: NodeJS.ProcessEnv | ((dir: string) => NodeJS.ProcessEnv) = {}, users: string[] = [], password = ''): Promise<InProcessServer> {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-inproc-'));
    const [ftp, sftp, drawn] = (await freePorts(3)) as [number, number, number];
    // A front-end's port inside the passive range is a refused config: drawn again until neither is in it.
    const rangeFrom = (port: number) => Math.min(Math.max(port, 1024), 65_515);
    let pasv = drawn;
    while ([ftp, sftp].some((port) => port >= rangeFrom(pasv) && port <= rangeFrom(pasv) + 20)) pasv = (await freePorts(1))[0] as number;
    const config = loadConfig({
      cwd: dir,
      env: {
        SLUICE_LOG_LEVEL: 'silent',
        SLUICE_BIND: '127.0.0.1',
        SLUICE_FTP_PORT: String(ftp),
        SLUICE_FTPS_PORT: '0',
        SLUICE_SFTP_PORT: String(sftp),
        SLUICE_FTP_TLS: 'optional',
        // Within the valid ports: a free port near the top once made a range past 65535 (a refused config).
        SLUICE_PASV_PORTS: `${rangeFrom(pasv)}-${rangeFrom(pasv) + 20}`,
        ...(typeof env === 'function' ? env(dir) : env),
      },
    });
    // The run's set where the test keeps its certificates in the default place; a new one (0.4 s of CPU) elsewhere.
    if (config.certsDir === join(dir, 'certs')) withRunCertificates(dir);
    await ensureKeys(config.certsDir);
    const base = await openAdmin(config);
    const coordination = await openCoordination(base);
    const services = servicesOn(base, coordination.coordinator);
    coordination.sessions.join(services.live);
    for (const name of users) await base.admin.add({ name, password, keys: [] });
    const server = new InProcessServer(dir, base, coordination, services, ftp, sftp);
    server.running = await startFrontEnds(services);
    return server;
  }

  async close(): Promise<void> {
    await Promise.all(this.running.map((fe) => fe.close()));
    await this.coordination.close();
    await this.base.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * An in-process server with one user who holds every right (chmod is not
 * among the defaults), logged in over SFTP with its home made.
 */
export async function sftpWithEveryRight(name: string): Promise<{ srv: InProcessServer; sftp: ssh2.SFTPWrapper; home: string; close(): Promise<void> }> {
  const password = `${name} password`;
  const srv = await InProcessServer.start();
  await srv.base.admin.add({ name, password, keys: [], permissions: [...PERMISSIONS] });
  const conn = await sshConnect({ port: srv.sftpPort, username: name, password });
  const sftp = await sftpOf(conn);
  // The home is made at the first login; a look at it makes sure it is there.
  await call<ssh2.Stats>((cb) => sftp.stat('/', cb));
  return {
    srv,
    sftp,
    home: join(srv.dir, 'data', 'homes', name),
    async close() {
      conn.end();
      await srv.close();
    },
  };
}

/**
 * The primary's real coordination (and the admin services it stands on) on a
 * store in a temp dir, opened before the suite's cases and closed after them.
 */
export function primaryOnTempStore(): { dir: string; primary: () => Coordination; admin: () => AdminServices } {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-ipc-'));
  let base: AdminServices;
  let coordination: Coordination;
  before(async () => {
    base = await openAdmin(loadConfig({ env: { SLUICE_LOG_LEVEL: 'silent' }, cwd: dir }));
    coordination = await openCoordination(base);
  });
  after(async () => {
    await coordination.close();
    await base.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { dir, primary: () => coordination, admin: () => base };
}
