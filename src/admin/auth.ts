import type { Socket } from 'node:net';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { plainAddress } from '../auth/ip-rules.js';
import type { LocalCoordinator } from '../coordinator/local.js';
import type { AdminTokenRepository } from '../store/store.js';
import { allowedMethods, pathOf } from './methods.js';
import { bearerToken, hashToken } from './tokens.js';

/**
 * Who may call a route, set in its `config.access`:
 * - 'token' (the default, every /api/v1 route and anything unknown): a valid
 *   bearer token; over the unix socket none is asked (see LOCAL_SOCKET).
 * - 'public': anyone who reaches the listener: /healthz and /readyz, which a
 *   load balancer or orchestrator probes without credentials and which say
 *   nothing an operator would hide.
 * - 'metrics': anyone when admin.metricsPublic is true (a Prometheus on a
 *   trusted network), else as 'token': the counters show users' activity.
 * A method no route of a path takes has the access its routes share (see
 * accessOf).
 */
export type Access = 'token' | 'public' | 'metrics';

/**
 * The principal of requests over the unix socket. The socket is created mode
 * 0600 in a path the operator chose: only the server's own user (and root)
 * can connect, the same people who can read the database and every token's
 * hash, so a token would add nothing there. Audited under this name.
 */
export const LOCAL_SOCKET = 'local-socket';

declare module 'fastify' {
  interface FastifyContextConfig {
    access?: Access;
  }
  interface FastifyRequest {
    /** The token's name (or LOCAL_SOCKET) once authenticated; null before, and on public routes. */
    principal: string | null;
    /** Who may make this request (see Access). */
    readonly access: Access;
  }
}

export interface AuthOptions {
  readonly tokens: AdminTokenRepository;
  readonly scorer: Pick<LocalCoordinator, 'score'>;
  /** The listener is a unix socket: see LOCAL_SOCKET. */
  readonly local: boolean;
  readonly metricsPublic: boolean;
}

/** The client's address as the defender and the trail know it; the unix socket has none. */
export function clientAddress(socket: Socket): string {
  const address = socket.remoteAddress;
  return address === undefined ? 'local' : plainAddress(address);
}

/**
 * Bearer-token authentication on every route that needs it, a failure scored
 * as a failed login (the defender bans an address guessing tokens as one
 * guessing passwords). The refusals are audited with the rest (request-audit.ts).
 */
export function authenticate(app: FastifyInstance, options: AuthOptions): void {
  app.decorateRequest('principal', null);
  // Each route's access by method and the path it was registered with; this runs before any route is added.
  const registered = new Map<string, Access>();
  app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) registered.set(`${method} ${route.url}`, route.config?.access ?? 'token');
  });
  app.decorateRequest('access', {
    getter(this: FastifyRequest) {
      return accessOf(app, registered, this);
    },
  });
  app.addHook('onRequest', async (req: FastifyRequest, reply: FastifyReply) => {
    const access = req.access;
    if (access === 'public' || (access === 'metrics' && options.metricsPublic)) return;
    if (options.local) {
      req.principal = LOCAL_SOCKET;
      return;
    }
    // Node keeps the first of several and drops the rest: a proxy or a log that reads the last would take the
    // request for another client's than the one let in (found by an attack on the API).
    if (headerCount(req.raw.rawHeaders, 'authorization') > 1) {
      return reply.code(400).send({ error: 'headers: Authorization given more than once: send one' });
    }
    const token = bearerToken(req.headers.authorization);
    const name = token === null ? null : await options.tokens.use(hashToken(token));
    if (name !== null) {
      req.principal = name;
      return;
    }
    // Its own offence, so a ban's reason says it was the API's tokens (a monitor with a stale one, say), not a login.
    await options.scorer.score(clientAddress(req.socket), 'admin', 'token-refused');
    await reply
      .code(401)
      .header('www-authenticate', 'Bearer realm="sluice"')
      .send({ error: token === null ? 'a bearer token is needed (sluice admin token create NAME)' : 'unknown token' });
  });
}

/** Pure: how many times `name` (lower case) is among Node's raw headers, names and values in turn. */
export function headerCount(raw: readonly string[], name: string): number {
  let n = 0;
  for (let i = 0; i < raw.length; i += 2) if (raw[i]?.toLowerCase() === name) n++;
  return n;
}

/**
 * A request no route takes (the not-found handler answers it) is the
 * resource's at its path: when every route there has one access, it has
 * that one. OPTIONS or POST /readyz, a balancer's probe (HAProxy's httpchk
 * sends OPTIONS), is public, told 405 and what the path allows, unscored:
 * it was a token route, 401 and scored as a guess, and six banned the
 * balancer's address (found by a review). A method not taken on a token
 * route, and a path with no route, still need a token: a stranger learns
 * nothing of what exists. Routes are looked up by the path they were
 * registered with, so one with a parameter counts as a token route: the
 * public ones have fixed paths.
 */
function accessOf(app: FastifyInstance, registered: ReadonlyMap<string, Access>, req: FastifyRequest): Access {
  if (!req.is404) return req.routeOptions.config.access ?? 'token';
  const path = pathOf(req.url);
  const shared = new Set(allowedMethods(app, path).map((method) => registered.get(`${method} ${path}`) ?? 'token'));
  const [only] = shared;
  return shared.size === 1 && only !== undefined ? only : 'token';
}
