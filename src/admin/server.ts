import { promises as fsp } from 'node:fs';
import type http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import swagger from '@fastify/swagger';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { readTlsMaterial } from '../certs/tls-material.js';
import { StartRefused, listenOn } from '../listening.js';
import { BanCheck } from '../security/ban-check.js';
import { countConnection } from '../security/gate.js';
import { HeldTime } from '../security/held-time.js';
import { ConnectionRegistry } from '../session/registry.js';
import { version } from '../version.js';
import { authenticate, clientAddress } from './auth.js';
import type { AdminContext, AdminRoutes } from './context.js';
import { adminEndpoint } from './endpoint.js';
import { auditRequests } from './request-audit.js';
import { answerErrors, BODY_LIMIT, parseJsonBodies, refuseUnusedBodies, routableUrl } from './errors.js';
import { withDocumentedErrors } from './openapi.js';
import { apiRoutes } from './routes.js';

/** A connection with nothing read or written this long is closed. */
const IDLE_MS = 30_000;
/** An idle connection between two requests is kept this long. */
const KEEP_ALIVE_MS = 5_000;
/** A request must have arrived whole (headers and body) within this. */
const REQUEST_MS = 10_000;
/** At a stop, what is left open this long after the listener closed is cut. */
const CLOSE_GRACE_MS = 1_000;
/** Longer than any request line Node takes: a parameter's schema says how long it may be. */
const MAX_PARAM_LENGTH = 16 * 1024;
/** TCP connections to the API at once, in all and from one address (limits.ipv6Prefix applies). */
const MAX_CONNECTIONS = 64;
const MAX_CONNECTIONS_PER_IP = 16;

export interface AdminServer {
  /** Where it listens, as an operator would write it. */
  readonly address: string;
  close(): Promise<void>;
}

/**
 * The admin API on admin.listen (set), in the process that holds the
 * coordinator. Fails (throws) rather than serve without it when the address
 * is taken or the socket path holds something else.
 */
export async function startAdminApi(
  context: AdminContext,
  extensions: readonly AdminRoutes[],
  log: Logger,
): Promise<AdminServer> {
  const { config } = context.base;
  const endpoint = adminEndpoint(config.admin.listen);
  const local = 'path' in endpoint;
  const https = config.admin.tls ? await readTlsMaterial(config.certsDir) : null;
  const app = Fastify({
    // A TLS handshake not done in this time ends (Node's default: 120 s, counted before any of the timeouts below).
    ...(https ? { https: { ...https, handshakeTimeout: REQUEST_MS } } : {}),
    bodyLimit: BODY_LIMIT,
    logger: false,
    // A connection holds a descriptor and a slot of the API's budget: one that sends no request, or sends it
    // a byte at a time, or idles between requests, is closed within seconds, not the minutes Node allows.
    connectionTimeout: IDLE_MS,
    keepAliveTimeout: KEEP_ALIVE_MS,
    requestTimeout: REQUEST_MS,
    // Schemas are the contract: an unknown field is an error, never silently dropped,
    // and "5" is not a number.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
    // A path that does not decode, and a parameter of any length (the request line is bounded by Node's 16 KiB
    // of headers), reach the hooks (token, ban, trail) and are refused there, not by the router before them.
    rewriteUrl: routableUrl,
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
  });
  answerErrors(app, log);
  parseJsonBodies(app);
  refuseUnusedBodies(app);
  // A banned address is refused at accept, as on every other port, and a connection it kept
  // alive from before its ban is served nothing more: its next request ends it.
  const bans = new BanCheck(context.base.bans, config.defender.allowList, config.limits.ipv6Prefix);
  const connections = new ConnectionRegistry(MAX_CONNECTIONS, MAX_CONNECTIONS_PER_IP);
  if (!local) {
    app.addHook('onRequest', async (req, reply) => {
      if (!bans.banned(clientAddress(req.socket))) return;
      reply.hijack();
      req.socket.destroy();
    });
  }
  // Before authentication's hook, so that a request it refuses is recorded too.
  auditRequests(app, context.coordination.coordinator.audit, local);
  authenticate(app, {
    tokens: context.base.tokens,
    scorer: context.coordination.coordinator,
    local,
    metricsPublic: config.admin.metricsPublic,
  });
  // By the peer's address and port: with TLS a request's socket wraps the one 'connection' gave.
  const answered = new Set<string>();
  // A token holder's reply that has begun answers its connection, finished or not: a stream (GET /audit) that
  // its client stops reading and closes (a pager quit, `| head`, a timeout) never finishes, and was scored
  // as an idle connection until the address was banned (found by a review). Looked at when the connection
  // closes, as its status line may go out at any time before.
  const begun = new Map<string, http.ServerResponse>();
  const peer = (socket: net.Socket) => `${socket.remoteAddress}|${socket.remotePort}`;
  if (!local) {
    app.server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
      res.once('finish', () => answered.add(peer(req.socket)));
    });
    // After authentication's hook: a request it refused never gets here. A reply begun already is kept, not
    // replaced by that of a request pipelined behind it.
    app.addHook('onRequest', async (req, reply) => {
      const key = peer(req.raw.socket);
      if (req.principal !== null && begun.get(key)?.headersSent !== true) begun.set(key, reply.raw);
    });
  }
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: 'sluice admin API', version: version() },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
    transform: ({ schema, url }) => ({ schema: withDocumentedErrors(schema as Record<string, unknown> | undefined, url) as typeof schema, url }),
  });
  refuseUnknownQueries(app);
  await app.register(async (api) => apiRoutes(api, context), { prefix: '/api/v1' });
  for (const routes of extensions) await app.register(async (scope) => routes(scope, context));
  await app.ready();

  // Every connection, TLS or not, handshake done or not: what a stop cuts after its grace.
  const sockets = new Set<net.Socket>();
  // TCP connections have a budget of their own, apart from the protocols' limits: a flood of either
  // cannot lock out the other (an operator banning the flood, a scrape of /metrics). Answered in
  // microtasks, before the socket's first read.
  const admission = { admit: async (source: string) => connections.tryAcquire(source) };
  // A connection that held its place and was never answered (no request, or one sent too slowly to arrive
  // before REQUEST_MS) adds that time to its source's, scored as the protocols' idle connections are (found by
  // a review: 4 addresses of 16 slow requests, each cut at 10 s and sent again, held every place and
  // /healthz with them, never scored). Each REQUEST_MS of it is one offence, as a protocol's connection that
  // reaches its login deadline is; a browser's preconnected socket or two, closed unused, come to less.
  const unanswered = new HeldTime(REQUEST_MS, config.defender.window * 1000);
  app.server.on('connection', (socket: net.Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    if (local) return;
    const ip = clientAddress(socket);
    if (bans.banned(ip)) return void socket.destroy();
    const source = bans.source(ip);
    const since = performance.now();
    const key = peer(socket);
    void countConnection(admission, source, socket, log).then((counted) => {
      if (counted !== 'counted') return void socket.destroy();
      socket.once('close', () => {
        const reply = begun.get(key);
        begun.delete(key);
        if (answered.delete(key) || reply?.headersSent === true) return;
        for (let n = unanswered.add(source, performance.now() - since); n > 0; n--) {
          void context.coordination.coordinator.score(ip, 'admin', 'login-timeout').catch((err: unknown) => log.error({ err, ip }, 'offence not scored'));
        }
      });
    });
  });
  if (local) await listenOnSocket(app, endpoint.path);
  else await listenOn(app.server, 'the admin API', endpoint);
  log.info({ address: config.admin.listen, tls: config.admin.tls }, `admin API listening on ${config.admin.listen}`);
  // SIGHUP: the renewed certificate, as the FTPS listeners take it; a file that cannot be used keeps the old one.
  const server = app.server;
  const onHangup = server instanceof tls.Server
    ? () => {
        readTlsMaterial(config.certsDir)
          .then((material) => server.setSecureContext(material))
          .catch((err: unknown) => log.error({ err }, 'admin API: TLS certificate reload failed, the old one stays'));
      }
    : null;
  if (onHangup) process.on('SIGHUP', onHangup);
  return {
    address: config.admin.listen,
    async close() {
      if (onHangup) process.off('SIGHUP', onHangup);
      // Node closes idle keep-alive connections itself, but not one that never sent a request (nor, with
      // TLS, finished its handshake): the stop would wait for its timeouts. Requests under way get
      // CLOSE_GRACE_MS to finish.
      const force = setTimeout(() => {
        for (const socket of sockets) socket.destroy();
      }, CLOSE_GRACE_MS);
      try {
        await app.close();
      } finally {
        clearTimeout(force);
      }
    },
  };
}


/** A query that takes no parameter: any one given is refused by name. */
const NO_QUERY = { type: 'object', additionalProperties: false, properties: {} } as const;

/**
 * Every route of the API refuses a query parameter it does not take (400,
 * `query.x: unknown field`), as GET /audit and /sessions did: GET /users?x=1
 * answered as if none had been given (found by an operator's review), and a
 * mistyped filter answers more than was asked. Routes registered after this.
 * Not the probes and /metrics, outside /api/v1: no parameter changes what they
 * answer, and a balancer or scraper that adds one must not take a node down.
 */
function refuseUnknownQueries(app: FastifyInstance): void {
  app.addHook('onRoute', (route) => {
    if (!route.url.startsWith('/api/v1/') || route.schema?.querystring !== undefined) return;
    route.schema = { ...route.schema, querystring: NO_QUERY };
  });
}

/**
 * Listen on a unix socket created mode 0600: the umask is narrowed around the
 * bind itself (synchronous in the process that listens), so the socket never
 * exists with a wider mode, not even between bind and a chmod. A socket left
 * by a crashed run is replaced; a live one, or any other file, is refused.
 */
async function listenOnSocket(app: FastifyInstance, path: string): Promise<void> {
  await removeStaleSocket(path);
  const previous = process.umask(0o177);
  let bound: Promise<void>;
  try {
    bound = listenOn(app.server, 'the admin API', { path });
  } finally {
    process.umask(previous);
  }
  await bound;
  await fsp.chmod(path, 0o600);
}

async function removeStaleSocket(path: string): Promise<void> {
  const stat = await fsp.lstat(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null;
    throw err;
  });
  if (stat === null) return;
  if (!stat.isSocket()) throw new StartRefused(`admin.listen: ${path} exists and is not a socket; not replacing it`);
  const alive = await new Promise<boolean>((resolve) => {
    const probe = net.connect({ path });
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (alive) throw new StartRefused(`admin.listen: ${path} is in use by a running process`);
  await fsp.unlink(path);
}
