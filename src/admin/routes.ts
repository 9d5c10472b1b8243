import type { FastifyInstance } from 'fastify';
import { auditRoutes } from './audit.js';
import { banRoutes } from './bans.js';
import type { AdminContext } from './context.js';
import { openApiRoute } from './openapi.js';
import { sessionRoutes } from './sessions.js';
import { statusRoutes } from './status.js';
import { userRoutes } from './users.js';

/** Everything under /api/v1, one file per resource. */
export async function apiRoutes(api: FastifyInstance, context: AdminContext): Promise<void> {
  openApiRoute(api);
  statusRoutes(api, context);
  userRoutes(api, context);
  sessionRoutes(api, context);
  banRoutes(api, context);
  auditRoutes(api, context);
}
