import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { parseCidr } from '../auth/ip-rules.js';
import { filterRecords, formatCsv, formatTable, summarize, type AuditFilter, type AuditRecord } from '../audit/query.js';
import { resolve } from 'node:path';
import { logFiles } from '../audit/files.js';
import { verifyLines, type ChainHead } from '../audit/chain.js';
import { loadConfig } from '../config/load.js';
import { AUDITED_PROTOCOLS } from '../session/account.js';
import { UsageError, parse, parseTime } from './args.js';

export const AUDIT_HELP = `Usage: sluice audit verify [FILE...]
       sluice audit query [--user U] [--ip CIDR] [--protocol P] [--path GLOB]
                          [--since T] [--until T] [--result ok|failed]
                          [--json | --csv] [--file F]...
       sluice audit report [--since T] [--json] [--file F]...

  verify    check the hash chain and sequence of the audit log (default:
            the audit log and its rotated files, oldest first); several
            files are checked in the order given, the chain continuing from
            one to the next. Reports the
            first line that was altered, removed, inserted or reordered;
            exit 1 on any break. A line torn by a crash is accepted when
            the restart after it recorded it (its length and SHA-256), and
            reported.
  query     the records that match every filter, oldest first, across the
            audit log and its rotated files (.gz too), as a table, JSON
            lines or CSV. T is YYYY-MM-DD[THH:MM[:SS]][Z]; GLOB uses * within
            a name and ** across names, e.g. '/incoming/**'.
  report    per user: completed uploads and downloads (count, bytes),
            failed logins and refusals.
`;

export function auditCommand(args: string[], configFile: string | undefined, out: (s: string) => void): number {
  const [sub, ...rest] = args;
  if (sub === undefined || sub === '--help' || sub === '-h') {
    out(AUDIT_HELP);
    return sub === undefined ? 2 : 0;
  }
  if (sub === 'query') return queryCommand(rest, configFile, out);
  if (sub === 'report') return reportCommand(rest, configFile, out);
  if (sub !== 'verify') throw new UsageError(`unknown audit command "${sub}"; see sluice audit --help`);
  const { values, positionals } = parseVerify(rest);
  if (values.help) {
    out(AUDIT_HELP);
    return 0;
  }
  const files = positionals.length > 0 ? positionals : auditFiles(configFile);
  let start: ChainHead | undefined;
  let afterTear = false;
  let total = 0;
  const tears: string[] = [];
  // Each file is checked knowing the next one's first line, which may record a tear at this one's end.
  let lines = files.length > 0 ? readLines(files[0] as string) : [];
  for (let i = 0; i < files.length; i++) {
    const file = files[i] as string;
    const following = i + 1 < files.length ? readLines(files[i + 1] as string) : [];
    const result = verifyLines(lines, { start, afterTear, next: following[0] });
    if (result.break) {
      out(`${file}:${result.break.line}: ${result.break.reason}\n`);
      return 1;
    }
    tears.push(...result.torn.map((t) => `${file}:${t.line} (${t.bytes} bytes)`));
    start = result.head ?? start;
    afterTear = result.endsTorn;
    total += lines.length;
    lines = following;
  }
  const torn = tears.length === 0 ? '' : `; torn by a crash and recorded at restart: ${tears.join(', ')}`;
  out(`ok: ${total} lines, chain intact${torn}\n`);
  return 0;
}

function parseVerify(args: string[]) {
  // Any number of files: parse options, keep positionals as they come.
  const parsed = parse(args.filter((a) => a.startsWith('-')), {}, 0);
  return { values: parsed.values as { help?: boolean }, positionals: args.filter((a) => !a.startsWith('-')) };
}

function queryCommand(args: string[], configFile: string | undefined, out: (s: string) => void): number {
  const { values: v } = parse(args, {
    user: { type: 'string' },
    ip: { type: 'string' },
    protocol: { type: 'string' },
    path: { type: 'string' },
    since: { type: 'string' },
    until: { type: 'string' },
    result: { type: 'string' },
    json: { type: 'boolean' },
    csv: { type: 'boolean' },
    file: { type: 'string', multiple: true },
  }, 0);
  if (v.help) {
    out(AUDIT_HELP);
    return 0;
  }
  if (v.json && v.csv) throw new UsageError('--json and --csv exclude each other');
  const filter = auditFilter(v);
  const files = v.file ?? auditFiles(configFile);
  const records = filterRecords(readRecords(files), filter);
  if (v.json) out(records.map((r) => JSON.stringify(r)).join('\n') + (records.length ? '\n' : ''));
  else if (v.csv) out(formatCsv(records));
  else out(formatTable(records));
  return 0;
}

/** The filter options of `audit query`, as text. */
export interface FilterOptions {
  user?: string | undefined;
  ip?: string | undefined;
  protocol?: string | undefined;
  path?: string | undefined;
  since?: string | undefined;
  until?: string | undefined;
  result?: string | undefined;
}

/** The filter `audit query` applies, checked; a bad value is a UsageError naming its option. The admin API filters with it too. */
export function auditFilter(v: FilterOptions): AuditFilter {
  if (v.result !== undefined && v.result !== 'ok' && v.result !== 'failed') throw new UsageError('--result: "ok" or "failed"');
  if (v.protocol !== undefined && !AUDITED_PROTOCOLS.includes(v.protocol)) throw new UsageError(`--protocol: one of ${AUDITED_PROTOCOLS.join(', ')}`);
  let cidr: string | undefined;
  if (v.ip !== undefined) {
    try {
      cidr = parseCidr(v.ip);
    } catch (err) {
      throw new UsageError(`--ip: ${(err as Error).message}`);
    }
  }
  return {
    user: v.user,
    cidr,
    protocol: v.protocol,
    pathGlob: v.path,
    since: v.since === undefined ? undefined : parseTime('since', v.since),
    until: v.until === undefined ? undefined : parseTime('until', v.until),
    result: v.result as AuditFilter['result'],
  };
}

/** The configured audit log and its rotated files, oldest first. */
function auditFiles(configFile: string | undefined): string[] {
  const config = loadConfig({ file: configFile });
  return logFiles(resolve(config.dataDir, config.audit.file));
}

/** A log file's lines as raw bytes (a torn fragment's are hashed as written), gunzipped if need be, without the final newline. */
function readLines(file: string): Buffer[] {
  let raw: Buffer;
  try {
    raw = readFileSync(file);
    if (file.endsWith('.gz')) raw = gunzipSync(raw);
  } catch (err) {
    throw new UsageError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const lines: Buffer[] = [];
  let from = 0;
  for (let nl = raw.indexOf(0x0a); nl >= 0; nl = raw.indexOf(0x0a, from)) {
    lines.push(raw.subarray(from, nl));
    from = nl + 1;
  }
  if (from < raw.length) lines.push(raw.subarray(from));
  return lines;
}

function* readRecords(files: string[]): Generator<AuditRecord> {
  for (const file of files) {
    const lines = readLines(file);
    for (let i = 0; i < lines.length; i++) {
      try {
        yield JSON.parse((lines[i] as Buffer).toString('utf8')) as AuditRecord;
      } catch {
        const where = i === lines.length - 1 ? 'truncated last line' : 'malformed line';
        process.stderr.write(`sluice: ${file}:${i + 1}: ${where} skipped\n`);
      }
    }
  }
}

function reportCommand(args: string[], configFile: string | undefined, out: (s: string) => void): number {
  const { values: v } = parse(args, { since: { type: 'string' }, json: { type: 'boolean' }, file: { type: 'string', multiple: true } }, 0);
  if (v.help) {
    out(AUDIT_HELP);
    return 0;
  }
  const since = v.since === undefined ? undefined : parseTime('since', v.since);
  const files = v.file ?? auditFiles(configFile);
  const summary = summarize(filterRecords(readRecords(files), { since }));
  if (v.json) {
    out(JSON.stringify(summary, null, 2) + '\n');
    return 0;
  }
  const head = ['USER', 'UPLOADS', 'UP BYTES', 'DOWNLOADS', 'DOWN BYTES', 'FAILED LOGINS', 'REFUSALS'];
  const rows = summary.map((u) => [u.user, u.uploads, u.uploadBytes, u.downloads, u.downloadBytes, u.failedLogins, u.refusals].map(String));
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ');
  out([line(head), ...rows.map(line)].join('\n') + '\n');
  return 0;
}
