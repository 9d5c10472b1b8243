import type { FastifyInstance } from 'fastify';
import { USER_NAME } from '../auth/authenticator.js';
import type { AdminContext } from './context.js';
import { NotFound } from './errors.js';
import { NoSuchUser } from '../users/errors.js';
import { StoreUnavailable } from '../store/store.js';

/*
 * Live sessions, wherever they run (this process or the workers), through
 * LiveSessionsView: listed with their transfers in progress, ended one by one
 * or all of a user's. Ending closes the connection; unfinished uploads are
 * recorded aborted.
 */

const transfer = {
  type: 'object',
  properties: {
    direction: { type: 'string', enum: ['upload', 'download'] },
    path: { type: 'string' },
    bytes: { type: 'integer' },
    started: { type: 'string', format: 'date-time' },
  },
} as const;
const session = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    user: { type: 'string' },
    protocol: { type: 'string', enum: ['ftp', 'ftps', 'sftp'] },
    ip: { type: 'string' },
    port: { type: 'integer' },
    method: { type: 'string', enum: ['password', 'publickey', 'anonymous'], description: 'how the login proved itself' },
    worker: { type: 'integer', description: '0: the server runs in one process' },
    since: { type: 'string', format: 'date-time' },
    transfers: { type: 'array', items: transfer },
  },
} as const;
const ended = { type: 'object', properties: { sessionsEnded: { type: 'integer' } } } as const;
const reasonQuery = { type: 'object', additionalProperties: false, properties: { reason: { type: 'string', maxLength: 200 } } } as const;

export function sessionRoutes(api: FastifyInstance, { base, coordination, sessions }: AdminContext): void {
  const why = (reason: string | undefined) => reason ?? 'ended by an administrator';
  /** Sessions carry the user's name as stored, found whatever the case asked; a user removed since keeps the name asked for. */
  const storedName = async (name: string) => (await base.admin.require(name).catch(() => null))?.name ?? name;

  api.get<{ Querystring: { user?: string } }>(
    '/sessions',
    {
      schema: {
        summary: 'Logged-in sessions, with their transfers in progress',
        querystring: { type: 'object', additionalProperties: false, properties: { user: { type: 'string', maxLength: 64 } } },
        response: { 200: { type: 'array', items: session } },
      },
    },
    async (req) => {
      const all = await sessions.list();
      if (req.query.user === undefined) return all;
      const user = await storedName(req.query.user);
      return all.filter((s) => s.user === user);
    },
  );

  api.delete<{ Params: { id: string }; Querystring: { reason?: string } }>(
    '/sessions/:id',
    {
      schema: {
        summary: 'End one session',
        params: { type: 'object', additionalProperties: false, required: ['id'], properties: { id: { type: 'string', maxLength: 128 } } },
        querystring: reasonQuery,
        response: { 200: ended },
      },
    },
    async (req) => {
      if (!(await sessions.end(req.params.id, why(req.query.reason)))) throw new NotFound(`no live session ${req.params.id}`);
      return { sessionsEnded: 1 };
    },
  );

  api.delete<{ Params: { name: string }; Querystring: { reason?: string } }>(
    '/users/:name/sessions',
    {
      schema: {
        summary: 'End every session of a user',
        params: { type: 'object', additionalProperties: false, required: ['name'], properties: { name: { type: 'string', pattern: USER_NAME.source } } },
        querystring: reasonQuery,
        response: { 200: ended },
      },
    },
    async (req) => {
      let unread: unknown = null;
      const user = await base.admin.require(req.params.name).catch((err: unknown) => {
        if (err instanceof NoSuchUser) return null;
        unread = err;
        return null;
      });
      const name = user?.name ?? req.params.name;
      const sessionsEnded = await sessions.endUser(name, why(req.query.reason));
      // The store away (PostgreSQL down): the sessions here under the name given still end, as a kill switch
      // must; they failed with the read before (found by a review). 503 says what was done: the same request
      // again, once the store is back, ends what is left here and on the other nodes.
      if (unread !== null) {
        throw new StoreUnavailable(`${sessionsEnded} sessions of ${name} ended on this node; the user store could not be read (${(unread as Error).message}): try again`, { cause: unread });
      }
      // The other nodes' sessions of the user end at this notice, each node ending its own (a shared store); this
      // count is this node's. Before, they went on (found by a review).
      await coordination.everyNode?.endUserSessions(name, why(req.query.reason)).catch((err: unknown) => {
        // 503: the same request again ends what is left, here and on the others.
        throw new StoreUnavailable(`${sessionsEnded} sessions of ${name} ended on this node; the other nodes were not told (${(err as Error).message}): try again`, { cause: err });
      });
      // A user removed since may still have sessions to end; a name no user has and no session has is a mistake: 404, as every /users/:name.
      if (!user && sessionsEnded === 0) throw new NoSuchUser(req.params.name);
      return { sessionsEnded };
    },
  );

  api.post<{ Params: { name: string } }>(
    '/users/:name/sessions/recheck',
    {
      schema: {
        summary: "The user changed in the store without the API (the CLI on SQLite; the API's own changes do this themselves): its live sessions take its permissions as stored now, those holding more than these give end, and logins under way read the user again",
        params: { type: 'object', additionalProperties: false, required: ['name'], properties: { name: { type: 'string', pattern: USER_NAME.source } } },
        response: { 200: { type: 'object', properties: { sessionsRenewed: { type: 'integer' }, sessionsEnded: { type: 'integer' } } } },
      },
    },
    async (req) => {
      const user = await base.admin.require(req.params.name);
      const { renewed, ended } = await sessions.userChanged(user.id);
      return { sessionsRenewed: renewed, sessionsEnded: ended };
    },
  );
}
