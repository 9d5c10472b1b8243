import { join } from 'node:path';
import { openAdmin, openServices, type AdminServices, type Services } from '../app.js';
import { ensureKeys, readHostKeys } from '../certs/ensure.js';
import type { Config } from '../config/schema.js';
import { FtpFrontEnd } from '../ftp/listener.js';
import { checkDescriptorLimit } from '../security/descriptors.js';
import { SftpFrontEnd } from '../sftp/server.js';
import { sweepHomes } from '../session/home-sweep.js';

/** A front-end started by `serve`: FTP/FTPS, SFTP. */
export interface FrontEnd {
  readonly name: string;
  reload?(): void;
  close(): Promise<void>;
}

export type FrontEndStarter = (services: Services) => Promise<FrontEnd | null>;

/** Front-ends in start order; each returns null when its ports are 0. */
export const FRONT_ENDS: FrontEndStarter[] = [
  FtpFrontEnd.start,
  async (services) => SftpFrontEnd.start(services, { hostKeys: await readHostKeys(services.config.certsDir) }),
];

/** `sluice init`: data directory, database and keys, nothing served. */
export async function init(config: Config, out: (s: string) => void): Promise<AdminServices> {
  await createKeys(config, out);
  return openAdmin(config);
}

async function createKeys(config: Config, out: (s: string) => void): Promise<void> {
  const created = await ensureKeys(config.certsDir);
  if (created.length > 0) out(`created in ${config.certsDir}: ${created.join(', ')}\n`);
}

export async function serve(config: Config, out: (s: string) => void): Promise<number> {
  if (!process.platform.startsWith('linux')) {
    out('sluice serve needs Linux (/proc/self/fd confines every file operation to the home)\n');
    return 1;
  }
  // Listen for the stop signal first: a stop during start-up must still close cleanly.
  const stopped = new Promise<string>((resolve) => {
    for (const s of ['SIGINT', 'SIGTERM'] as const) process.once(s, () => resolve(s));
  });
  await createKeys(config, out);
  const services = openServices(config);
  const { log } = services;
  checkDescriptorLimit(config.limits.maxSessions, log);
  if (services.users.count() === 0) {
    out(
      'No users yet. Add one with:\n' +
        '  npx sluice user add alice --generate-password\n' +
        `(data in ${config.dataDir}; see README.md)\n`,
    );
  }
  // Before any session, so no upload in progress can be taken for a crash's leftover
  // and no usage changes while the homes are recounted.
  await sweepHomes(join(config.dataDir, 'homes'), services.users.all(), services.users, services.audit, log);
  const running: FrontEnd[] = [];
  try {
    for (const start of FRONT_ENDS) {
      const fe = await start(services);
      if (fe) running.push(fe);
    }
  } catch (err) {
    log.fatal({ err }, 'could not start');
    await Promise.all(running.map((fe) => fe.close()));
    await services.close();
    return 1;
  }
  // SIGHUP: new certificates and keys, and new log files after logrotate moved them.
  const onHangup = () => {
    running.forEach((fe) => fe.reload?.());
    services.audit?.reopen().catch((err: unknown) => log.error({ err }, 'audit log reopen'));
  };
  process.on('SIGHUP', onHangup);
  log.info({ frontEnds: running.map((fe) => fe.name), dataDir: config.dataDir }, 'sluice started');
  // With every port set to 0 nothing else holds the process until a signal comes.
  const keepAlive = setInterval(() => undefined, 1 << 30);
  const signal = await stopped;
  clearInterval(keepAlive);
  process.off('SIGHUP', onHangup);
  log.info({ signal }, 'stopping');
  await Promise.all(running.map((fe) => fe.close()));
  await services.close();
  return 0;
}
