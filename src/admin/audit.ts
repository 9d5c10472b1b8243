import { basename, resolve } from 'node:path';
import { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { DamagedFile } from '../audit/compressed.js';
import { LongLine } from '../audit/chain.js';
import { logFileLines } from '../audit/file-lines.js';
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
    since: { ...text, description: 'YYYY-MM-DD[THH:MM[:SS]][Z|+HH:MM], UTC unless an offset is given' },
    until: { ...text, description: 'YYYY-MM-DD[THH:MM[:SS]][Z|+HH:MM], UTC unless an offset is given' },
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
    {
      schema: {
        summary: 'Query the audit trail (NDJSON, one record a line)',
        // What the document tells a client that reads no README: the one line that is no record.
        description:
          'Records oldest first, each a JSON object on its own line, read from the log and its rotated files as they stood ' +
          'when the request came. When a rotated .gz file does not decompress, its records are left out (those of it that ' +
          'matched and were sent before the damage showed are counted in `sent`), the other files still answer, and the ' +
          'last line is {"incomplete":true,"damaged":[{"file","reason","sent"}]}: no record has an `incomplete` field.',
        querystring: querySchema,
      },
    },
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
      const body = Readable.from(matching(snapshot, matches, base.log));
      // A client gone before the first read: the generator never runs, so its finally closes nothing.
      body.once('close', () => void snapshot.close());
      return reply.type('application/x-ndjson').send(body);
    },
  );
}

/** A file whose compression broke while it was read: named in the reply's last line (see README, Admin API). */
interface Damaged {
  file: string;
  reason: string;
  /** Records of it that matched and were sent before the damage showed. */
  sent: number;
}

/**
 * The snapshot's records that match, as NDJSON lines; its files closed at
 * the end, or when the client leaves (the generator is returned). A .gz
 * that does not decompress is passed over as the CLI passes over it
 * (DamagedFile): the newer files still answer, the server log names it,
 * and a last line tells the client the answer is not whole. The status and
 * the lines before were sent already: a stream cannot take them back, so
 * the line says how many of that file's records went out (they decompressed,
 * but the gzip check that would vouch for them never came).
 */
async function* matching(snapshot: LogSnapshot, matches: (r: AuditRecord) => boolean, log: Logger): AsyncGenerator<string> {
  const damaged: Damaged[] = [];
  try {
    for (const file of snapshot.files) {
      if (file.handle === null) continue; // the live file not started yet
      let sent = 0;
      try {
        for await (const lines of logFileLines(file)) {
          for (const line of lines) {
            // Longer than any record: no record (`sluice audit verify` reports it).
            if (line instanceof LongLine) continue;
            let record: AuditRecord;
            try {
              record = JSON.parse(line.toString('utf8')) as AuditRecord;
            } catch {
              continue; // a line torn by a crash: `sluice audit verify` reports it
            }
            if (!matches(record)) continue;
            sent++;
            yield safeJson(record) + '\n';
          }
        }
      } catch (err) {
        if (!(err instanceof DamagedFile)) throw err;
        log.warn({ file: file.path, reason: err.reason, sent }, 'admin API: audit query passed over a damaged compressed file; its answer is not whole');
        damaged.push({ file: basename(file.path), reason: err.reason, sent });
      }
    }
    if (damaged.length > 0) yield safeJson({ incomplete: true, damaged }) + '\n';
  } finally {
    await snapshot.close();
  }
}
