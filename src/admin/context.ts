import type { FastifyInstance } from 'fastify';
import type { AdminServices } from '../admin-services.js';
import type { Coordination } from '../app.js';
import type { LiveSessionsView } from '../session/live.js';

/** What the routes work with: the store's services, the coordinator's state, the live sessions. */
export interface AdminContext {
  readonly base: AdminServices;
  readonly coordination: Coordination;
  /** Every logged-in session of the server, wherever it runs. */
  readonly sessions: LiveSessionsView;
}

/**
 * Routes mounted beside /api/v1 (e.g. /metrics, /healthz by the monitoring
 * code). Each route says who may call it in `config.access` (auth.ts);
 * without it a token is required.
 */
export type AdminRoutes = (app: FastifyInstance, context: AdminContext) => Promise<void>;
