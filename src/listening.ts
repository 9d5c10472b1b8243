import type net from 'node:net';
import type { Logger } from 'pino';

/** One listening socket of a front-end, as bound. */
export interface Listening {
  /** `ftp` (plain and AUTH TLS), `ftps` (implicit TLS), `sftp`. */
  readonly protocol: 'ftp' | 'ftps' | 'sftp';
  readonly address: string;
  readonly port: number;
}

/**
 * An expected reason not to start (a port the system refused, a worker that
 * said why it could not start), said in one line, not with a stack.
 */
export class StartRefused extends Error {}

/** Why a listen failed, in words an operator acts on. */
const REFUSALS: Record<string, string> = {
  EADDRINUSE: 'the port is in use (another process listens there: stop it, or choose another port)',
  EACCES: 'permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)',
  EADDRNOTAVAIL: 'no interface of this machine has that address',
};

/**
 * A unix socket's path: libuv reports a missing directory as EACCES too, and
 * "ports below 1024" sent the operator after privileges for a typo in a path.
 */
const SOCKET_REFUSALS: Record<string, string> = {
  ...REFUSALS,
  EACCES: 'its directory does not exist, or this user may not create files in it',
};

/**
 * `server` listening where `options` say (an address and port, or a unix
 * socket's path) for `what` (a front-end's name). A refusal the system
 * explains becomes a StartRefused; anything else is thrown as it came.
 */
export function listenOn(server: net.Server, what: string, options: net.ListenOptions): Promise<void> {
  return new Promise((resolve, reject) => {
    const refused = (err: NodeJS.ErrnoException) => {
      const reason = err.code === undefined ? undefined : (options.path === undefined ? REFUSALS : SOCKET_REFUSALS)[err.code];
      const where = options.path ?? `${options.host ?? '*'}:${options.port ?? 0}`;
      reject(reason === undefined ? err : new StartRefused(`${what} cannot listen on ${where}: ${reason}`));
    };
    server.once('error', refused);
    server.listen(options, () => {
      server.off('error', refused);
      resolve();
    });
  });
}

/** A start that failed, logged once: a StartRefused in its own words, anything else with its stack. */
export function startFailed(log: Logger, err: unknown, msg: string): void {
  if (err instanceof StartRefused) log.fatal(`${msg}: ${err.message}`);
  else log.fatal({ err }, msg);
}
