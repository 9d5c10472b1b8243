import type { Services } from './app.js';
import { readHostKeys } from './certs/ensure.js';
import { FtpFrontEnd } from './ftp/listener.js';
import type { Listening } from './listening.js';
import type { DrainCounts, LiveRegistry } from './session/live.js';
import { SftpFrontEnd } from './sftp/server.js';

/** A front-end started by `serve`: FTP/FTPS, SFTP. */
export interface FrontEnd {
  readonly name: string;
  readonly listeners: readonly Listening[];
  reload?(): void;
  /** New connections are refused; live ones go on until close(). */
  stopAccepting(): void;
  /** Stop accepting and end every connection; settles once they and their sessions are gone. */
  close(): Promise<void>;
}

export type FrontEndStarter = (services: Services) => Promise<FrontEnd | null>;

/** Front-ends in start order; each returns null when its ports are 0. */
export const FRONT_ENDS: FrontEndStarter[] = [
  FtpFrontEnd.start,
  async (services) => SftpFrontEnd.start(services, { hostKeys: () => readHostKeys(services.config.certsDir) }),
];

/**
 * SIGTERM: stop accepting at once, then drain the sessions (see
 * LiveRegistry.drain) for `seconds` at most, or until `hurry` settles (a
 * second signal); then close what is left, connections that never logged in
 * among them.
 */
export async function drainFrontEnds(running: readonly FrontEnd[], live: LiveRegistry, seconds: number, hurry: Promise<unknown>): Promise<DrainCounts> {
  for (const fe of running) fe.stopAccepting();
  const reason = 'server shutting down';
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<string>((resolve) => (timer = setTimeout(() => resolve(`${reason}: drain timeout`), seconds * 1000)));
  try {
    return await live.drain(reason, Promise.race([timeout, hurry.then(() => `${reason}: drain cut short`)]));
  } finally {
    clearTimeout(timer);
    await Promise.all(running.map((fe) => fe.close()));
  }
}

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

