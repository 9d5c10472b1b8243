import type { Socket } from 'node:net';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { SystemAuditSink } from '../audit/events.js';
import { clientAddress } from './auth.js';

/**
 * Query parameters whose values are credentials by their name (`?token=`,
 * `?access_token=`, `?password=`, `?api_key=`, `?X-Amz-Signature=`...),
 * matched anywhere in the decoded name, any case.
 */
const CREDENTIAL_NAME = /token|pass|pwd|^pw$|secret|auth|bearer|key|credential|signature|sig$|session_?id|cookie/i;
/** A sluice admin token (tokens.ts), wherever it stands: a value under any name, a bare `?sluice_...`, the path. */
const TOKEN_SHAPE = /sluice_[A-Za-z0-9_-]{20,}/g;
export const REDACTED = '[redacted]';
/** The longest path recorded: the request line may be up to Node's 16 KiB of headers. */
const MAX_PATH = 1024;

/**
 * Pure: a request's URL as the trail and the server log may show it. The
 * query is kept (the filters of GET /audit are evidence of what an
 * administrator looked for), but the values of credential-like parameters,
 * and anything shaped like an admin token, are replaced by `[redacted]`: a
 * client that put its token in the URL (refused 401, only the Authorization
 * header counts) must not leave it in a log line that outlives the token
 * and is read by more people than hold it. The rest is left as sent, not
 * re-encoded, so what is recorded is what came.
 */
export function auditedPath(sent: string): string {
  // An absolute-form target (RFC 9112 3.2.2) may carry a user and password before its host.
  const url = sent.replace(USER_INFO, `$1${REDACTED}@`);
  const q = url.indexOf('?');
  let out = (q >= 0 ? url.slice(0, q) : url).split('/').map(tokenFree).join('/');
  if (q >= 0) {
    const params = url
      .slice(q + 1)
      .split('&')
      .map((param) => {
        const eq = param.indexOf('=');
        if (eq < 0) return tokenFree(param);
        const name = param.slice(0, eq);
        return `${tokenFree(name)}=${CREDENTIAL_NAME.test(decoded(name)) ? REDACTED : tokenFree(param.slice(eq + 1))}`;
      });
    out = `${out}?${params.join('&')}`;
  }
  // After the names: a token under a name no pattern knows, or given bare, or in the path. Cut only
  // after redacting, so that a cut never leaves a token's head too short for the pattern to see.
  return out.replace(TOKEN_SHAPE, REDACTED).slice(0, MAX_PATH);
}

/**
 * A path segment, query name or value that holds a token once decoded, and
 * is not as sent (`sluice%5F...`, found by an attack on the API: the shape
 * alone let it through): redacted whole. Nor may part of one be encoded: the
 * shape matched the head of `sluice_` and twenty characters, then `%78` and
 * the rest, and only the head was redacted (found by an adversarial review).
 * One sent plain is left for the shape, which keeps the text around it.
 */
function tokenFree(piece: string): string {
  const text = decoded(piece);
  return text !== piece && ONE_TOKEN.test(text) ? REDACTED : piece;
}

const ONE_TOKEN = new RegExp(TOKEN_SHAPE.source);
/** `scheme://user:password@` at the start of an absolute-form target. */
const USER_INFO = /^([a-z][a-z0-9+.-]*:\/\/)[^/?#@]*@/i;

function decoded(text: string): string {
  try {
    return decodeURIComponent(text.replace(/\+/g, ' '));
  } catch {
    return text;
  }
}

/**
 * Per connection: what its requests waiting for their records do at its
 * close, behind one listener however many a client pipelines (a listener
 * each put 33 on one socket for 30 pipelined GETs, and Node warned).
 */
const atClose = new WeakMap<Socket, Set<() => void>>();

/** Call `then` when `socket` closes; returns what stops that. */
function whenClosed(socket: Socket, then: () => void): () => void {
  let waiting = atClose.get(socket);
  if (!waiting) {
    const fresh = new Set<() => void>();
    atClose.set(socket, (waiting = fresh));
    socket.once('close', () => {
      for (const call of [...fresh]) call();
    });
  }
  waiting.add(then);
  const own = waiting;
  return () => void own.delete(then);
}

/** Per request: the reply's status is final (onSend ran); set by the onSend hook, read by the watcher. */
const answered = new WeakMap<FastifyRequest, () => void>();

/**
 * Every request that reached a route's handler or was refused (401 in
 * onRequest), except the public probes, becomes one `admin` record, exactly
 * once. Fastify's onResponse fires on the response's 'finish' only: a client
 * that closed or reset the connection before its reply was written (a POST
 * /users whose argon2 hash was still running, a DELETE pipelined behind it)
 * left no record of a request the server acted on (found by a review). So
 * the record is written at the first of:
 * - the response finished: what the client was sent;
 * - the client gone (the response's or the connection's 'close', the latter
 *   for a pipelined request whose response Node has queued and will never
 *   close) and the status final: recorded with `client_left: true`. A
 *   handler still at work when the client leaves goes on (its change is
 *   made), so the record waits for its status rather than guess one.
 * A request hijacked (the ban check cuts a banned address's connection) has
 * no reply and no record: the ban was recorded when it was made.
 */
export function auditRequests(app: FastifyInstance, audit: SystemAuditSink | null, local: boolean): void {
  if (audit === null) return;
  app.addHook('onRequest', async (req: FastifyRequest, reply: FastifyReply) => {
    // Probes of the public routes come every few seconds from machines, not from
    // administrators: recording them would bury the trail's real entries.
    if (req.access === 'public') return;
    const res = reply.raw;
    const socket = req.raw.socket;
    // Taken now, not when recorded: the kernel forgets a reset connection's peer. A TCP connection reset
    // before it was even accepted has none to give (its bytes are still read): 'unknown', not 'local'.
    const ip = local || socket.remoteAddress !== undefined ? clientAddress(socket) : 'unknown';
    let final = false;
    let left = false;
    let recorded = false;
    const record = (clientLeft: boolean) => {
      if (recorded) return;
      recorded = true;
      res.off('close', gone);
      unwatch();
      answered.delete(req);
      audit.system({
        event: 'admin',
        token: req.principal,
        ip,
        method: req.method,
        // As sent: a path that does not decode is routed by another (routableUrl).
        path: auditedPath(req.originalUrl),
        status: reply.statusCode,
        ...(clientLeft ? { client_left: true as const } : {}),
      });
    };
    function gone(): void {
      if (res.writableFinished) return record(false);
      left = true;
      if (final) record(true);
    }
    answered.set(req, () => {
      final = true;
      if (left) record(true);
    });
    res.once('finish', () => record(false));
    res.once('close', gone);
    const unwatch = whenClosed(socket, gone);
  });
  app.addHook('onSend', async (req: FastifyRequest, _reply: FastifyReply, payload: unknown) => {
    answered.get(req)?.();
    return payload;
  });
}
