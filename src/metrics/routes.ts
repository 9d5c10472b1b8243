import { join, resolve } from 'node:path';
import type { AdminContext, AdminRoutes } from '../admin/context.js';
import { TLS_CERT } from '../certs/ensure.js';
import { readiness, type ReadinessSources } from './health.js';

/** What /readyz looks at, in the process that holds the coordination. */
export function readinessSources({ base, coordination }: Pick<AdminContext, 'base' | 'coordination'>): ReadinessSources {
  const { config } = base;
  return {
    serving: coordination.serving,
    storeAnswers: () => void base.users.count(),
    auditFile: config.audit.enabled ? resolve(config.dataDir, config.audit.file) : null,
    certFile: join(config.certsDir, TLS_CERT),
  };
}

/**
 * /healthz, /readyz and /metrics on the admin listener. The probes need no
 * token (a load balancer or an orchestrator asks them, and they say nothing
 * an operator would hide); /metrics needs one unless admin.metricsPublic
 * (the counters show users' activity): see admin/auth.ts.
 */
export const monitorRoutes: AdminRoutes = async (app, context) => {
  const sources = readinessSources(context);
  const { metrics } = context.coordination;
  // The process answers: nothing else is looked at, so a slow disk cannot make it fail.
  app.get('/healthz', { config: { access: 'public' } }, async () => ({ status: 'ok' }));
  app.get('/readyz', { config: { access: 'public' } }, async (_request, reply) => {
    const r = await readiness(sources);
    return reply.code(r.ready ? 200 : 503).send(r);
  });
  app.get('/metrics', { config: { access: 'metrics' } }, async (_request, reply) => reply.type(metrics.contentType).send(await metrics.text()));
};
