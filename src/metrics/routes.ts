import { join, resolve } from 'node:path';
import type { AdminContext, AdminRoutes } from '../admin/context.js';
import { TLS_CERT } from '../certs/names.js';
import { READINESS_REASONS, readiness, ReadinessLog, type ReadinessSources } from './health.js';

/** What /readyz looks at, in the process that holds the coordination. */
export function readinessSources({ base, coordination }: Pick<AdminContext, 'base' | 'coordination'>): ReadinessSources {
  const { config } = base;
  return {
    serving: coordination.serving,
    storeAnswers: () => base.store.ping(),
    auditFile: config.audit.enabled ? resolve(config.dataDir, config.audit.file) : null,
    certFile: join(config.certsDir, TLS_CERT),
    details: new ReadinessLog(base.log),
  };
}

/**
 * /healthz, /readyz and /metrics on the admin listener. The probes need no
 * token (a load balancer or an orchestrator asks them, and they say nothing
 * an operator would hide: /readyz gives fixed labels, the details go to the
 * log); /metrics needs one unless admin.metricsPublic
 * (the counters show users' activity): see admin/auth.ts.
 */
export const monitorRoutes: AdminRoutes = async (app, context) => {
  const sources = readinessSources(context);
  const { metrics } = context.coordination;
  // Kept whenever admin.listen is set, the only way to this API.
  if (!metrics) throw new Error('the admin API runs on a coordination that keeps no metrics');
  // The process answers: nothing else is looked at, so a slow disk cannot make it fail.
  app.get('/healthz', { config: { access: 'public' }, schema: HEALTHZ }, async () => ({ status: 'ok' }));
  app.get('/readyz', { config: { access: 'public' }, schema: READYZ }, async (_request, reply) => {
    const r = await readiness(sources);
    return reply.code(r.ready ? 200 : 503).send(r);
  });
  app.get('/metrics', { config: { access: 'metrics' }, schema: METRICS }, async (_request, reply) =>
    reply.type(metrics.contentType).send(await metrics.text()),
  );
};

const READINESS = {
  type: 'object',
  properties: {
    ready: { type: 'boolean' },
    reasons: { type: 'array', items: { type: 'string', enum: [...READINESS_REASONS] } },
    warnings: { type: 'array', items: { type: 'string', enum: [...READINESS_REASONS] } },
  },
  required: ['ready', 'reasons', 'warnings'],
  additionalProperties: false,
} as const;

/** Described in the OpenAPI document like every other route; the probes need no token (security: none). */
const HEALTHZ = {
  summary: 'The process answers (no token)',
  security: [],
  response: { 200: { type: 'object', properties: { status: { type: 'string', enum: ['ok'] } }, required: ['status'], additionalProperties: false } },
};
const READYZ = {
  summary: 'Listeners up, store answering, audit log writable, certificate valid; else 503 with the reasons; a certificate within 7 days of its end is a warning (no token)',
  security: [],
  response: { 200: READINESS, 503: READINESS },
};
const METRICS = {
  summary: 'Prometheus text format, every worker counted (a token unless admin.metricsPublic)',
};
