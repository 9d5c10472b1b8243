import type { Services } from './app.js';
import { readHostKeys } from './certs/ensure.js';
import { FtpFrontEnd } from './ftp/listener.js';
import type { Listening } from './listening.js';
import { SftpFrontEnd } from './sftp/server.js';

/** A front-end started by `serve`: FTP/FTPS, SFTP. */
export interface FrontEnd {
  readonly name: string;
  readonly listeners: readonly Listening[];
  reload?(): void;
  close(): Promise<void>;
}

export type FrontEndStarter = (services: Services) => Promise<FrontEnd | null>;

/** Front-ends in start order; each returns null when its ports are 0. */
export const FRONT_ENDS: FrontEndStarter[] = [
  FtpFrontEnd.start,
  async (services) => SftpFrontEnd.start(services, { hostKeys: await readHostKeys(services.config.certsDir) }),
];

/** Every front-end, started in order; if one fails, those already started are closed and the error thrown. */
export async function startFrontEnds(services: Services): Promise<FrontEnd[]> {
  const running: FrontEnd[] = [];
  try {
    for (const start of FRONT_ENDS) {
      const fe = await start(services);
      if (fe) running.push(fe);
    }
    return running;
  } catch (err) {
    await Promise.all(running.map((fe) => fe.close()));
    throw err;
  }
}

