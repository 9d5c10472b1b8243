import { readRegularFileSync } from '../regular-file.js';
import type http from 'node:http';
import { createRequire } from 'node:module';
import net from 'node:net';
import { join } from 'node:path';
import { TLS_CERT } from '../certs/names.js';
import type { Config } from '../config/schema.js';
import { adminEndpoint } from './endpoint.js';

/** An answer of the admin API. */
export interface ApiReply {
  readonly status: number;
  readonly body: unknown;
}

/** The admin API could not be used, or refused: one line for the user. */
export class ApiError extends Error {
  constructor(
    message: string,
    /** The HTTP status of a refusal; null when the API could not be reached or read. */
    readonly status: number | null = null,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** What sluice admin/session commands send and expect back. */
export interface AdminClient {
  /** Where it talks to, as admin.listen says. */
  readonly address: string;
  /** null: nothing listens there (no server running). */
  request(method: string, path: string, body?: unknown): Promise<ApiReply | null>;
}

/**
 * The CLI's way to the running server's admin API, on admin.listen: the unix
 * socket (no token: its mode 0600 is the credential), or TCP with the token
 * in SLUICE_ADMIN_TOKEN, over HTTPS checked against the server's own
 * certificate file when admin.tls. null when admin.listen is empty (the API is off).
 */
export function adminClient(config: Config, env: NodeJS.ProcessEnv = process.env): AdminClient | null {
  if (config.admin.listen === '') return null;
  const endpoint = adminEndpoint(config.admin.listen);
  const headers: Record<string, string> = {};
  let target: http.RequestOptions;
  // Missing on TCP: said only once a server answers there; with none running, the commands that can act on the store do so.
  let noToken = false;
  let badToken = false;
  if ('path' in endpoint) target = { socketPath: endpoint.path };
  else {
    // Spaces around it are no part of it (HTTP drops them too). A token is printable ASCII: a carriage return
    // (a file with CRLF line ends) failed with Node's 'Invalid character in header content ["authorization"]',
    // and a non-ASCII character was sent mangled, told "a bearer token is needed".
    const token = env.SLUICE_ADMIN_TOKEN?.trim();
    if (token && !/^[\x21-\x7e]+$/.test(token)) badToken = true;
    else if (token) headers.authorization = `Bearer ${token}`;
    else noToken = true;
    target = { host: endpoint.host, port: endpoint.port };
  }
  const missingToken = () =>
    badToken
      ? new ApiError('SLUICE_ADMIN_TOKEN holds a character no token has (a control character or one that is not ASCII): give the token `sluice admin token create` printed')
      : new ApiError(`the admin API listens on TCP (${config.admin.listen}): set SLUICE_ADMIN_TOKEN to a token from \`sluice admin token create NAME\``);
  const secure = config.admin.tls && !('path' in endpoint);
  // The server's own certificate is the only one trusted, whatever name it carries (a self-signed one names the host, not 127.0.0.1).
  const tls = secure ? { ca: readRegularFileSync(join(config.certsDir, TLS_CERT)), checkServerIdentity: () => undefined } : {};
  return {
    address: config.admin.listen,
    request: (method, path, body) =>
      new Promise((resolve, reject) => {
        if ((noToken || badToken) && !('path' in endpoint)) {
          // A bare connect: no request, so no 401 for the defender to score against this host.
          const probe = net.connect({ host: endpoint.host, port: endpoint.port });
          probe.once('connect', () => {
            probe.destroy();
            reject(missingToken());
          });
          probe.once('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNREFUSED' ? resolve(null) : reject(missingToken())));
          return;
        }
        const payload = body === undefined ? undefined : JSON.stringify(body);
        // Loaded at the first request: every CLI command loads this module, and node:https (with node:http) was
        // about 15 ms of the CPU of each, with the API off or nothing to ask.
        const { request } = createRequire(import.meta.url)(secure ? 'node:https' : 'node:http') as typeof http;
        const req = request(
          { ...target, ...tls, method, path: `/api/v1${path}`, agent: false, headers: payload === undefined ? headers : { ...headers, 'content-type': 'application/json' } },
          (res) => {
            let text = '';
            res.setEncoding('utf8');
            res.on('data', (d: string) => (text += d));
            res.on('end', () => {
              try {
                resolve({ status: res.statusCode ?? 0, body: text === '' ? null : JSON.parse(text) });
              } catch {
                reject(new ApiError(`the admin API on ${config.admin.listen} answered ${res.statusCode} with something not JSON`));
              }
            });
          },
        );
        req.on('error', (err: NodeJS.ErrnoException) => {
          if (err.code === 'ECONNREFUSED' || err.code === 'ENOENT') resolve(null);
          else if (err.code === 'ECONNRESET') {
            // What a banned address gets at accept.
            reject(new ApiError(`admin API on ${config.admin.listen}: the connection was closed at once (ECONNRESET): is this address banned? \`sluice ban list\`; see \`sluice ban --help\` to lift it`));
          } else reject(new ApiError(`admin API on ${config.admin.listen}: ${err.code ?? err.message}`));
        });
        req.end(payload);
      }),
  };
}

/** The client of the configured API, or null when it is off; made only when a command needs it. */
export type Reach = () => AdminClient | null;

/**
 * A request to the running server when there is one: null when the API is
 * off or nothing listens, so the caller acts on the store itself instead;
 * a refusal (4xx, 5xx) is an ApiError.
 */
export async function ifRunning(reach: Reach, method: string, path: string, body?: unknown): Promise<ApiReply | null> {
  const reply = (await reach()?.request(method, path, body)) ?? null;
  if (reply !== null && reply.status >= 400) throw new ApiError(refusal(reply), reply.status);
  return reply;
}

/** The `error` of a refusal, or the status when there is none. */
export function refusal(reply: ApiReply): string {
  const error = (reply.body as { error?: unknown } | null)?.error;
  return typeof error === 'string' ? error : `HTTP ${reply.status}`;
}
