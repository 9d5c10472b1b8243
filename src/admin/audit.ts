import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import type { FastifyInstance } from 'fastify';
import { TRANSFER_RESULTS } from '../audit/events.js';
import { openLogFiles, type LogSnapshot } from '../audit/snapshot.js';
import { recordMatcher, type AuditRecord } from '../audit/query.js';
import { UsageError } from '../cli/args.js';
import { auditFilter, type FilterOptions } from '../cli/audit.js';
import type { AdminContext } from './context.js';
import { AUDITED_PROTOCOLS } from '../session/account.js';
import { safeJson } from '../session/unsafe-chars.js';

const text = { type: 'string', maxLength: 1024 } as const;
const querySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    user: text,
    ip: { ...text, description: 'address or CIDR block' },
    protocol: { type: 'string', enum: AUDITED_PROTOCOLS },
    path: { ...text, description: "glob: * within a name, ** across names, e.g. /incoming/**" },
    since: { ...text, description: 'YYYY-MM-DD[THH:MM[:SS]][Z]' },
    until: { ...text, description: 'YYYY-MM-DD[THH:MM[:SS]][Z]' },
    result: { type: 'string', enum: TRANSFER_RESULTS },
  },
} as const;

/**
 * GET /audit: the records `sluice audit query` would show with the same
 * filters (checked by the same code), oldest first, across the rotated files,
 * as NDJSON streamed while the files are read: never the whole result in memory.
 */
export function auditRoutes(api: FastifyInstance, { base, coordination }: AdminContext): void {
  api.get<{ Querystring: FilterOptions }>(
    '/audit',
    { schema: { summary: 'Query the audit trail (NDJSON, one record a line)', querystring: querySchema } },
    async (req, reply) => {
      let matches: (r: AuditRecord) => boolean;
      try {
        matches = recordMatcher(auditFilter(req.query));
      } catch (err) {
        // The CLI's messages name the option (--since: ...); here it is a query parameter.
        if (err instanceof UsageError) return reply.code(400).send({ error: `query.${err.message.replace(/^--/, '')}` });
        throw err;
      }
      // What the server has recorded up to this request is in the files before they are read.
      await coordination.auditLog?.flush();
      // Every file opened now, as one set: a rotation while the reply streams moves names, not these.
      const snapshot = await openLogFiles(resolve(base.config.dataDir, base.config.audit.file));
      // A narrow filter over many rotated files may write nothing for longer than the API's idle timeout:
      // this response is a token holder's, and backpressure bounds what it holds.
      req.raw.socket.setTimeout(0);
      const body = Readable.from(matching(snapshot, matches));
      // A client gone before the first read: the generator never runs, so its finally closes nothing.
      body.once('close', () => void snapshot.close());
      return reply.type('application/x-ndjson').send(body);
    },
  );
}

/** The snapshot's records that match, as NDJSON lines; its files closed at the end, or when the client leaves (the generator is returned). */
async function* matching(snapshot: LogSnapshot, matches: (r: AuditRecord) => boolean): AsyncGenerator<string> {
  try {
    for (const file of snapshot.files) {
      if (file.handle === null) continue; // the live file not started yet
      // Its own handle's stream closes the handle at its end; snapshot.close() then closes the rest.
      const raw = file.handle.createReadStream();
      let input: Readable = raw;
      if (file.gz) {
        const gunzip = createGunzip();
        pipeline(raw, gunzip).catch(() => undefined);
        input = gunzip;
      }
      try {
        for await (const line of createInterface({ input, crlfDelay: Infinity })) {
          let record: AuditRecord;
          try {
            record = JSON.parse(line) as AuditRecord;
          } catch {
            continue; // a line torn by a crash: `sluice audit verify` reports it
          }
          if (matches(record)) yield safeJson(record) + '\n';
        }
      } finally {
        raw.destroy();
      }
    }
  } finally {
    await snapshot.close();
  }
}
