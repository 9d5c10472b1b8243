import type { FastifyInstance } from 'fastify';
import { openApiRoute } from './openapi.js';
import type { AdminContext } from './context.js';
import { statusRoutes } from './status.js';

/** Everything under /api/v1, one file per resource. */
export async function apiRoutes(api: FastifyInstance, context: AdminContext): Promise<void> {
  openApiRoute(api);
  statusRoutes(api, context);
}
