import { openServices, type Services } from '../app.js';
import { ensureKeys } from '../certs/ensure.js';
import type { Config } from '../config/schema.js';

/** A front-end started by `serve`: FTP, FTPS, SFTP. */
export interface FrontEnd {
  readonly name: string;
  close(): Promise<void>;
}

export type FrontEndStarter = (services: Services) => Promise<FrontEnd | null>;

/** Front-ends in start order; each returns null when its port is 0. */
export const FRONT_ENDS: FrontEndStarter[] = [];

/** `sluice init`: data directory, database and keys, nothing served. */
export async function init(config: Config, out: (s: string) => void): Promise<Services> {
  const created = await ensureKeys(config.certsDir);
  if (created.length > 0) out(`created in ${config.certsDir}: ${created.join(', ')}\n`);
  return openServices(config);
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
  const services = await init(config, out);
  const { log } = services;
  if (services.users.count() === 0) {
    out(
      'No users yet. Add one with:\n' +
        '  npx sluice user add alice --generate-password\n' +
        `(data in ${config.dataDir}; see README.md)\n`,
    );
  }
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
  log.info({ frontEnds: running.map((fe) => fe.name), dataDir: config.dataDir }, 'sluice started');
  // Hold the process while signals decide; front-end listeners would do this alone.
  const keepAlive = setInterval(() => undefined, 1 << 30);
  const signal = await stopped;
  clearInterval(keepAlive);
  log.info({ signal }, 'stopping');
  await Promise.all(running.map((fe) => fe.close()));
  await services.close();
  return 0;
}
