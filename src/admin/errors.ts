import type http from 'node:http';
import type { FastifyError, FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { USER_NAME } from '../auth/authenticator.js';
import { UsageError } from '../cli/args.js';
import { StoreUnavailable } from '../store/store.js';
import { AdminError, NotStored } from '../users/errors.js';
import { allowedMethods, pathOf } from './methods.js';
import { auditedPath } from './request-audit.js';

/** Bodies larger than this are refused before they are parsed. */
export const BODY_LIMIT = 64 * 1024;

/** Bad input found by a route after the schema passed it: 400, naming the field. */
export class BadInput extends Error {
  constructor(field: string, message: string) {
    super(`${field}: ${message}`);
    this.name = 'BadInput';
  }
}

/** Something the request names that is not there: 404. */
export class NotFound extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NotFound';
  }
}

/** `parse()` with its AdminError or UsageError turned into a BadInput on `field`. */
export function inField<T>(field: string, parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    throw asFieldError(field, err);
  }
}

/** inField for a change the store makes (asynchronously). */
export async function inFieldAsync<T>(field: string, change: () => Promise<T>): Promise<T> {
  try {
    return await change();
  } catch (err) {
    throw asFieldError(field, err);
  }
}

function asFieldError(field: string, err: unknown): unknown {
  // An unknown user stays a 404, whichever field led to it.
  if (err instanceof NotStored) return err;
  if (err instanceof AdminError || err instanceof UsageError) return new BadInput(field, err.message);
  return err;
}

interface SchemaIssue {
  instancePath: string;
  keyword: string;
  message?: string;
  params: Record<string, unknown>;
}

/**
 * What a pattern of the routes' schemas asks, said as the README and the CLI
 * say it: AJV's "must match pattern \"^/\"" told an operator who gave a
 * relative home only a regular expression (found by an operator's walk).
 */
const PATTERN_SENTENCES = new Map<string, string>([
  ['^/', 'must be an absolute path on the server (starting with /)'],
  [USER_NAME.source, 'must be a user name: 1-64 of letters, digits, . _ - and starting with a letter or digit'],
]);

/** Pure: one schema violation as a sentence naming its field, e.g. `body.quotaBytes: must be integer`. */
export function describeIssue(where: string, issue: SchemaIssue): string {
  const at = [where, ...issue.instancePath.split('/').filter((p) => p !== '')].join('.');
  if (issue.keyword === 'additionalProperties') return `${at}.${String(issue.params.additionalProperty)}: unknown field`;
  if (issue.keyword === 'required') return `${at}.${String(issue.params.missingProperty)}: missing`;
  if (issue.keyword === 'enum' && Array.isArray(issue.params.allowedValues)) return `${at}: must be one of ${issue.params.allowedValues.join(', ')}`;
  const sentence = issue.keyword === 'pattern' ? PATTERN_SENTENCES.get(String(issue.params.pattern)) : undefined;
  if (sentence !== undefined) return `${at}: ${sentence}`;
  return `${at}: ${issue.message ?? issue.keyword}`;
}

/**
 * Every error becomes one JSON `{ "error": "..." }`: schema violations and
 * routes' own checks 400 naming the field, oversized or malformed bodies
 * 400, unknown things 404, a store that cannot take the write now 503; anything else 500, logged, its text kept from
 * the client.
 */
export function answerErrors(app: FastifyInstance, log: Logger): void {
  app.setErrorHandler(async (err: FastifyError, req, reply) => {
    if (err.validation) {
      const where = err.validationContext === 'querystring' ? 'query' : (err.validationContext ?? 'request');
      const first = err.validation[0] as SchemaIssue | undefined;
      return reply.code(400).send({ error: first ? describeIssue(where, first) : err.message });
    }
    if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return reply.code(400).send({ error: `body: larger than ${BODY_LIMIT} bytes` });
    if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
      const type = String(req.headers['content-type'] ?? 'none').slice(0, 100);
      return reply.code(415).send({ error: `body: content type ${JSON.stringify(type)} is not taken: send JSON as application/json` });
    }
    if (err instanceof NotFound || err instanceof NotStored) return reply.code(404).send({ error: err.message });
    if (err instanceof BadInput || err instanceof AdminError || err instanceof UsageError) return reply.code(400).send({ error: err.message });
    // Nothing was written and the same request may go through later: not the server's fault, nor the client's.
    if (err instanceof StoreUnavailable) {
      // Not the server's fault, but an operator should see it: a full disk refuses every write until it is freed.
      log.warn({ err: err.message, method: req.method, url: auditedPath(req.originalUrl) }, 'admin API request not served now: the store refused the write');
      return reply.code(503).header('retry-after', '5').send({ error: err.message });
    }
    if (err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500) {
      // Fastify's own refusals: a body that is not JSON, an unsupported content type.
      return reply.code(err.statusCode).send({ error: `body: ${err.message}` });
    }
    // The URL as the trail records it: a credential put in the query must reach no log line.
    log.error({ err, method: req.method, url: auditedPath(req.originalUrl) }, 'admin API');
    return reply.code(500).send({ error: 'internal error (see the server log)' });
  });
  app.setNotFoundHandler(async (req, reply) => {
    if (undecodable.has(req.raw)) return reply.code(400).send({ error: 'path: not a valid URL (a % must begin two hex digits that encode UTF-8)' });
    const path = pathOf(req.url);
    // A resource that is there under other methods: 405 with what it takes (RFC 9110 15.5.6), so a client
    // that sent PUT for PATCH is told its method is wrong, not that the user is missing.
    const allowed = allowedMethods(app, path);
    if (allowed.length > 0) {
      return reply.code(405).header('allow', allowed.join(', ')).send({ error: `${req.method} is not allowed on ${path} (allowed: ${allowed.join(', ')})` });
    }
    return reply.code(404).send({ error: `no resource ${req.method} ${path}` });
  });
}

/**
 * The API's JSON body parser in place of Fastify's, for its messages: a body
 * that is not JSON says where it breaks, and one naming `__proto__` or
 * `constructor` (keys no resource has, refused as prototype pollution) says
 * so, where Fastify answers both with "Body is not valid JSON".
 */
export function parseJsonBodies(app: FastifyInstance): void {
  app.removeContentTypeParser(['application/json', 'text/plain']);
  // Fastify's own text/plain parser handed JSON sent as text on as a string, refused as "body: must be
  // object" (found by an operator's walk). An empty one stays nothing: fetch() sends text/plain with
  // `body: ''`, to routes that take no body (found by a review).
  app.addContentTypeParser('text/plain', { parseAs: 'string', bodyLimit: BODY_LIMIT }, (_req, text, done) => {
    if (text === '') return done(null, undefined);
    done(Object.assign(new Error('content type "text/plain" is not taken: send JSON as application/json'), { statusCode: 415 }), undefined);
  });
  app.addContentTypeParser('application/json', { parseAs: 'buffer', bodyLimit: BODY_LIMIT }, (_req, bytes, done) => {
    try {
      done(null, parseBody(utf8Body(bytes as Buffer)));
    } catch (err) {
      done(err as Error, undefined);
    }
  });
}

/**
 * Pure: a body's bytes as text, refused unless UTF-8 (as JSON must be,
 * whatever charset the request says). Read as a string, each byte that is
 * no UTF-8 became U+FFFD without a word: a Latin-1 `"home": "/srv/donn\xe9es"`
 * made a user whose home was a directory no one named, made for it (found
 * by an operator-side review; the configuration file is refused so too).
 */
export function utf8Body(bytes: Buffer): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new BadInput(notUtf8Field(bytes.toString('utf8')), 'not UTF-8: send JSON in UTF-8');
  }
}

/** Pure: the field (`body.password`) of the first name or text in `lossy` holding U+FFFD, what the bytes that are not UTF-8 became; `body` if it is not JSON. */
function notUtf8Field(lossy: string): string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(lossy);
  } catch {
    return 'body';
  }
  const stack: [unknown, string][] = [[parsed, 'body']];
  for (let item = stack.pop(); item !== undefined; item = stack.pop()) {
    const [value, at] = item;
    if (typeof value === 'string' && value.includes('\uFFFD')) return at;
    if (typeof value !== 'object' || value === null) continue;
    const entries = Object.entries(value);
    const named = entries.find(([name]) => name.includes('\uFFFD'));
    if (named) return `${at}.${named[0]}`;
    // Reversed onto the stack, so that the first in the text is looked at first.
    for (const [name, inner] of entries.reverse()) stack.push([inner, `${at}.${name}`]);
  }
  return 'body';
}

/** Pure: a request body as parsed JSON, or a BadInput naming what is wrong with it. */
export function parseBody(raw: string): unknown {
  // A byte-order mark, which PowerShell and .NET tools write, is no error (Fastify's parser took it too).
  const text = raw.startsWith('\uFEFF') ? raw.slice(1) : raw;
  if (text.trim() === '') throw new BadInput('body', 'empty; send a JSON object');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text, (key, value: unknown) => {
      if (key === '__proto__' || key === 'constructor') throw new BadInput(`body.${key}`, 'not allowed');
      return value;
    });
  } catch (err) {
    if (err instanceof BadInput) throw err;
    throw new BadInput('body', `not valid JSON (${(err as Error).message})`);
  }
  const twice = repeatedName(text);
  if (twice !== null) throw new BadInput(['body', ...twice].join('.'), 'given twice');
  return parsed;
}

/**
 * Pure: where the first name given twice in one object of `text` (JSON that
 * parses) is, as the path of keys and indexes down to it; null when none is.
 * JSON.parse keeps the last of the two and says nothing: a proxy, a log or a
 * reviewer that reads the first would see another request than the one
 * acted on. Found by an attack on the API's bodies. A walk of the text, as
 * the parsed value no longer holds the first, with a stack of its own: a
 * body nested to the parser's limit costs no recursion here.
 */
export function repeatedName(text: string): (string | number)[] | null {
  // Per open object the names seen and the one being read; per open array the index being read.
  const open: { names: Set<string> | null; at: string | number }[] = [];
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    const top = open[open.length - 1];
    if (ch === '{') open.push({ names: new Set(), at: '' });
    else if (ch === '[') open.push({ names: null, at: 0 });
    else if (ch === '}' || ch === ']') open.pop();
    else if (ch === ',' && top && typeof top.at === 'number') top.at++;
    else if (ch === '"') {
      let end = i + 1;
      while (text[end] !== '"') end += text[end] === '\\' ? 2 : 1;
      let next = end + 1;
      while (/[ \t\n\r]/.test(text[next] ?? '')) next++;
      if (top?.names && text[next] === ':') {
        const name = JSON.parse(text.slice(i, end + 1)) as string;
        top.at = name;
        if (top.names.has(name)) return open.map((o) => o.at);
        top.names.add(name);
      }
      i = end;
    }
  }
  return null;
}

/**
 * A body sent to a route that takes none is refused, as an unknown field
 * is: ignored, it did what the client did not ask (found by an attack on the
 * API's bodies: DELETE /users/NAME with {"keepHome": true} removed the user
 * and said nothing). An empty object asks nothing and is taken; so is no
 * body, and fetch()'s empty text/plain (see parseJsonBodies).
 */
export function refuseUnusedBodies(app: FastifyInstance): void {
  app.addHook('preValidation', async (req) => {
    if (req.body === undefined || req.is404 || req.routeOptions.schema?.body !== undefined) return;
    const body: unknown = req.body;
    if (typeof body === 'object' && body !== null && !Array.isArray(body) && Object.keys(body).length === 0) return;
    throw new BadInput('body', `${req.method} ${pathOf(req.url)} takes none`);
  });
}

/** Requests whose path does not decode: see routableUrl. */
const undecodable = new WeakSet<http.IncomingMessage>();
/** Where they are routed: to no route. */
const UNDECODABLE = '/(undecodable)';

/**
 * The URL to route a request by (Fastify's rewriteUrl): its own, unless its
 * path does not decode (`%`, `%C0%AE`). The router answered those 400 itself,
 * before any hook (found by an attack on the API): no token asked, no guess
 * scored, no record, a banned address's connection served. Routed to no
 * route instead, such a request goes through the hooks as any other (the
 * trail records the URL as sent, req.originalUrl) and the not-found handler
 * refuses it 400.
 */
export function routableUrl(req: http.IncomingMessage): string {
  const url = req.url ?? '/';
  try {
    decodeURIComponent(url.split(/[?#]/, 1)[0] ?? '');
    return url;
  } catch {
    undecodable.add(req);
    return UNDECODABLE;
  }
}
