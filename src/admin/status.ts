import { readRegularFile } from '../regular-file.js';
import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { HOST_KEYS, TLS_CERT } from '../certs/names.js';
import { certificateFingerprint } from '../certs/fingerprints.js';
import { hostKeyFingerprint } from '../started.js';
import { version } from '../version.js';
import type { AdminContext } from './context.js';

const listening = {
  type: 'object',
  properties: { protocol: { type: 'string', enum: ['ftp', 'ftps', 'sftp'] }, address: { type: 'string' }, port: { type: 'integer' } },
};

const serverSchema = {
  summary: 'Version, uptime, listeners, certificate expiry, host-key fingerprints',
  response: {
    200: {
      type: 'object',
      properties: {
        version: { type: 'string' },
        startedAt: { type: 'string', format: 'date-time' },
        uptimeSeconds: { type: 'integer' },
        workers: { type: 'integer' },
        frontEnds: { type: 'array', items: { type: 'string' } },
        listeners: { type: 'array', items: listening },
        certificate: {
          type: 'object',
          nullable: true,
          properties: {
            subject: { type: 'string' },
            notAfter: { type: 'string', format: 'date-time' },
            daysLeft: { type: 'integer' },
            fingerprint: { type: 'string' },
          },
        },
        hostKeys: { type: 'array', items: { type: 'object', properties: { name: { type: 'string' }, fingerprint: { type: 'string' } } } },
      },
    },
  },
} as const;

/** GET /server: what the start report said, and the certificate as it is on disk now (SIGHUP may have replaced it). */
export function statusRoutes(api: FastifyInstance, { base, coordination }: AdminContext): void {
  const { certsDir } = base.config;
  api.get('/server', { schema: serverSchema }, async () => {
    const report = coordination.started.current;
    const since = coordination.started.since;
    return {
      version: version(),
      startedAt: since.toISOString(),
      uptimeSeconds: Math.floor((Date.now() - since.getTime()) / 1000),
      workers: report?.workers ?? 0,
      frontEnds: report?.frontEnds ?? [],
      listeners: report?.listeners ?? [],
      certificate: await certificate(join(certsDir, TLS_CERT)),
      hostKeys: await Promise.all(HOST_KEYS.map(async (name) => ({ name, fingerprint: await hostKeyFingerprint(certsDir, name).catch(() => 'unreadable') }))),
    };
  });
}

async function certificate(file: string) {
  const pem = await readRegularFile(file).catch(() => null);
  if (pem === null) return null;
  const cert = new X509Certificate(pem);
  const notAfter = new Date(cert.validTo);
  return {
    subject: cert.subject,
    notAfter: notAfter.toISOString(),
    daysLeft: Math.floor((notAfter.getTime() - Date.now()) / 86_400_000),
    fingerprint: certificateFingerprint(pem),
  };
}
