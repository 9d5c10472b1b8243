import { join, resolve } from 'node:path';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { AdminServices, Coordination } from '../app.js';
import { TLS_CERT } from '../certs/ensure.js';
import { readiness, type ReadinessSources } from './health.js';
import type { ServerMetrics } from './registry.js';

export interface MonitorRoutesOptions {
  readonly metrics: ServerMetrics;
  readonly readiness: ReadinessSources;
  /**
   * Runs before /metrics answers: the admin API's token check, unless
   * admin.metricsPublic. /healthz and /readyz never need a token: a load
   * balancer or an orchestrator asks them.
   */
  readonly guardMetrics?: (request: FastifyRequest, reply: FastifyReply) => Promise<void>;
}

/** What /readyz looks at, in the process that holds the coordination. */
export function readinessSources(base: AdminServices, coordination: Coordination): ReadinessSources {
  const { config } = base;
  return {
    serving: coordination.serving,
    storeAnswers: () => void base.users.count(),
    auditFile: config.audit.enabled ? resolve(config.dataDir, config.audit.file) : null,
    certFile: join(config.certsDir, TLS_CERT),
  };
}

/** /healthz, /readyz and /metrics, as a fastify plugin for the admin listener. */
export const monitorRoutes: FastifyPluginAsync<MonitorRoutesOptions> = async (app, opts) => {
  // The process answers: nothing else is looked at, so a slow disk cannot make it fail.
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_request, reply) => {
    const r = await readiness(opts.readiness);
    return reply.code(r.ready ? 200 : 503).send(r);
  });
  app.get('/metrics', { ...(opts.guardMetrics ? { onRequest: opts.guardMetrics } : {}) }, async (_request, reply) =>
    reply.type(opts.metrics.contentType).send(await opts.metrics.text()),
  );
};
