import { parseArgs } from 'node:util';
import { parseCidr } from '../auth/ip-rules.js';
import { resolve } from 'node:path';
import { DamagedFile } from '../audit/compressed.js';
import { logFileLines, type LogFileSource, type LogLine } from '../audit/file-lines.js';
import { LongLine, longLineReason } from '../audit/chain.js';
import { collectSeries } from '../audit/files.js';
import { openLogFiles } from '../audit/snapshot.js';
import { UserTotals, formatCsv, place, recordMatcher, tableOf, timeOrder, type AuditFilter, type AuditRecord, type Placed } from '../audit/query.js';
import { textTable } from './table.js';
import { safeJson, shown } from '../session/unsafe-chars.js';
import { verdict, verifySeries, type ReadLines } from '../audit/verify.js';
import { loadConfig } from '../config/load.js';
import { AUDITED_PROTOCOLS } from '../session/account.js';
import { TRANSFER_RESULTS, type TransferResult } from '../audit/events.js';
import { UsageError, parse, parseTime } from './args.js';
import { complain } from './stdio.js';

export const AUDIT_HELP = `Usage: sluice audit verify [FILE|DIR...] [--file FILE|DIR]... [--from-rotation]
       sluice audit query [--user U] [--ip CIDR] [--protocol P] [--path GLOB]
                          [--since T] [--until T] [--result ${TRANSFER_RESULTS.join('|')}]
                          [--json | --csv] [--file FILE|DIR]...
       sluice audit report [--since T] [--json] [--file FILE|DIR]...

  Without files: the configured audit log and its rotated files (.gz too).
  Several nodes' logs: give each node's files, or directories holding them
  (every log in and below a directory, e.g. one directory per node copied
  from the nodes; names starting with a dot are passed over). A log and its
  rotated files (audit.log.2.gz, audit.log.1, audit.log) are one node's chain;
  so are files given by other names (logrotate's audit.log-20261203, a1 a2),
  each carrying on the node or sequence of the file given before it in its
  directory.

  verify    check the hash chain and sequence of each node's log apart: the
            files of one log in the order given (a directory's oldest
            first), the chain continuing from one to the next. Reports the
            first line that was altered, removed, inserted or reordered in
            each, named by the node's id; exit 1 on any break, or when two
            logs carry the same node id. A line torn by a crash is accepted
            when the restart after it recorded it (its length and SHA-256),
            and reported. Logs from before node ids verify as before.
            A chain must start at its first line ever written, or just after
            the files audit.keep deleted (the trail records each), so lines
            or files cut from its start are a break too. --from-rotation:
            older files were pruned outside sluice (logrotate, an archive);
            accept a chain that starts at a rotation. A compressed file that
            does not decompress is a break; the files after it are checked
            as a chain of their own.
  query     the records that match every filter, every node's merged in time
            order (equal times by node id, then sequence), as a table, JSON
            lines or CSV. T is YYYY-MM-DD[THH:MM[:SS]][Z]; GLOB uses * within
            a name and ** across names, e.g. '/incoming/**'.
            A damaged compressed file is named on stderr and its records
            left out; the others answer, and the exit is 1.
  report    per user, over every node given: completed uploads and downloads
            (count, bytes), failed logins and refusals; a damaged compressed
            file as in query.
`;

export async function auditCommand(args: string[], configFile: string | undefined, out: (s: string) => void): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === undefined || sub === 'help') {
    out(AUDIT_HELP);
    return sub === undefined ? 2 : 0;
  }
  if (sub === 'query') return await queryCommand(rest, configFile, out);
  if (sub === 'report') return await reportCommand(rest, configFile, out);
  if (sub !== 'verify') throw new UsageError(`unknown audit command "${sub}"; see sluice audit --help`);
  const { files, fromRotation } = parseVerify(rest);
  const trail = await auditSeries(files, configFile);
  try {
    const results = [];
    for (const files of trail.series) results.push(await verifySeries(files, trail.read, { fromRotation }));
    const { ok, lines } = verdict(results);
    out(lines.map((l) => l + '\n').join(''));
    return ok ? 0 : 1;
  } finally {
    await trail.close();
  }
}

/** verify takes its files and directories as arguments, or with --file as query and report do, in the order given. */
function parseVerify(args: string[]): { files: string[]; fromRotation: boolean } {
  const options = { file: { type: 'string', multiple: true }, 'from-rotation': { type: 'boolean' } } as const;
  // A first, lenient pass only to see the order; the strict one below refuses what is wrong.
  const { tokens } = parseArgs({ args, options, allowPositionals: true, strict: false, tokens: true });
  const files = tokens.flatMap((t) =>
    t.kind === 'positional' ? [t.value] : t.kind === 'option' && t.name === 'file' && t.value !== undefined ? [t.value] : [],
  );
  const { values } = parse(args, options, tokens.filter((t) => t.kind === 'positional').map(() => 'FILE'));
  return { files, fromRotation: values['from-rotation'] === true };
}

async function queryCommand(args: string[], configFile: string | undefined, out: (s: string) => void): Promise<number> {
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
  }, []);
  if (v.json && v.csv) throw new UsageError('--json and --csv exclude each other');
  const filter = auditFilter(v);
  const matches = recordMatcher(filter);
  const { placed, complete } = await readPlaced(await auditSeries(v.file ?? [], configFile), matches);
  const records = placed.sort(timeOrder).map((p) => p.record);
  if (v.json) out(records.map((r) => safeJson(r)).join('\n') + (records.length ? '\n' : ''));
  else if (v.csv) out(formatCsv(records));
  else {
    const { head, rows } = tableOf(records);
    out(textTable(head, rows));
  }
  return complete ? 0 : 1;
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
  if (v.result !== undefined && !isResult(v.result)) throw new UsageError(`--result: one of ${TRANSFER_RESULTS.join(', ')}`);
  if (v.protocol !== undefined && !AUDITED_PROTOCOLS.includes(v.protocol)) throw new UsageError(`--protocol: one of ${AUDITED_PROTOCOLS.join(', ')}`);
  let cidr: string | undefined;
  if (v.ip !== undefined) {
    try {
      cidr = parseCidr(v.ip);
    } catch (err) {
      throw new UsageError(`--ip: ${(err as Error).message}`);
    }
  }
  const since = v.since === undefined ? undefined : parseTime('since', v.since);
  const until = v.until === undefined ? undefined : parseTime('until', v.until);
  // Reversed, they answered an empty table and exit 0, as if nothing had happened then.
  if (since && until && since > until) throw new UsageError(`--since: "${v.since}" is later than --until "${v.until}": no record could match`);
  return { user: v.user, cidr, protocol: v.protocol, pathGlob: v.path, since, until, result: v.result };
}

const isResult = (text: string): text is TransferResult => (TRANSFER_RESULTS as readonly string[]).includes(text);

/** The files to read, as series (one per node's log), and how to read each: close() once read. */
interface Trail {
  series: string[][];
  read: ReadLines;
  close(): Promise<void>;
}

/**
 * The series named by `args`, files and directories, read by name; none:
 * the configured log and its rotated files, every one opened first as one
 * consistent set (openLogFiles) and read from its descriptor, so that the
 * running server's rotations while the command reads cannot skip a file or
 * give one twice.
 */
async function auditSeries(args: readonly string[], configFile: string | undefined): Promise<Trail> {
  const byName = (file: string) => readLines({ path: file, gz: file.endsWith('.gz') });
  if (args.length > 0) return { series: await collectSeries(args), read: byName, close: async () => undefined };
  const config = loadConfig({ file: configFile, makeDirs: false });
  const snapshot = await openLogFiles(resolve(config.dataDir, config.audit.file));
  const opened = new Map(snapshot.files.map((f) => [f.path, f]));
  // The live file missing: read by name, which says so, and where to run instead (found by an operator's walk: run
  // outside the server's directory, the commands said only "cannot read .../data/audit.log: ENOENT").
  const elsewhere = 'no audit log there: run this where the server runs, with its --config or SLUICE_DATA_DIR, or name the files';
  const read = (file: string) => readLines(opened.get(file) ?? { path: file, gz: false }, elsewhere);
  return { series: [snapshot.files.map((f) => f.path)], read, close: () => snapshot.close() };
}

/**
 * A log file's lines as they stream (logFileLines); a file that cannot be
 * read is a UsageError naming it (and saying `whenMissing` when it is not there), a compressed one that does not decompress
 * a DamagedFile, for the caller to report and read on.
 */
async function* readLines(file: LogFileSource, whenMissing?: string): AsyncGenerator<LogLine[]> {
  try {
    yield* logFileLines(file);
  } catch (err) {
    if (err instanceof DamagedFile) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    const hint = code === 'ENOENT' && whenMissing !== undefined ? ` (${whenMissing})` : '';
    throw new UsageError(`cannot read ${file.path}: ${code ?? (err as Error).message}${hint}`);
  }
}

async function* readRecords(file: string, read: ReadLines): AsyncGenerator<AuditRecord> {
  let n = 0;
  let torn: number | null = null;
  for await (const lines of read(file)) {
    for (const line of lines) {
      n++;
      // Whether a line that is no record was the last one shows only at the next.
      if (torn !== null) complain(`${file}:${torn}: malformed line skipped`);
      torn = null;
      if (line instanceof LongLine) {
        complain(`${file}:${n}: ${longLineReason(line.bytes)}; skipped`);
        continue;
      }
      const record = parseRecord(line);
      if (record) yield record;
      else torn = n;
    }
  }
  if (torn !== null) complain(`${file}:${torn}: truncated last line skipped`);
}

/** A line as a record, or null when it is none (torn, or not a JSON object). */
function parseRecord(line: Buffer): AuditRecord | null {
  try {
    const value = JSON.parse(line.toString('utf8')) as unknown;
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as AuditRecord) : null;
  } catch {
    return null;
  }
}

/** What one file's matching records go into: kept only once the file read to its end. */
interface FilePart<T> {
  add(record: AuditRecord): void;
  readonly value: T;
}

/**
 * Every series' records that match, read a file at a time into a part of
 * its own (`part()`); the parts of each series with the node its log names
 * last (a record from before node ids takes the node of the upgraded node
 * that wrote it). A damaged compressed file is named on stderr and its part
 * left out, records before the damage too: the other files still answer,
 * and `complete` false tells the caller the answer is not whole. The trail
 * is closed at the end.
 */
async function readMatching<T>(trail: Trail, matches: (r: AuditRecord) => boolean, part: () => FilePart<T>): Promise<{ series: { parts: T[]; node: string }[]; complete: boolean }> {
  try {
    const series: { parts: T[]; node: string }[] = [];
    let complete = true;
    for (const files of trail.series) {
      const parts: T[] = [];
      let node = '';
      for (const file of files) {
        const fromFile = part();
        let fileNode = node;
        try {
          for await (const r of readRecords(file, trail.read)) {
            if (typeof r.node === 'string') fileNode = r.node;
            if (matches(r)) fromFile.add(r);
          }
        } catch (err) {
          if (!(err instanceof DamagedFile)) throw err;
          complain(`${err.message}; its records are left out`);
          complete = false;
          continue;
        }
        node = fileNode;
        parts.push(fromFile.value);
      }
      series.push({ parts, node });
    }
    return { series, complete };
  } finally {
    await trail.close();
  }
}

/** The records that match, each placed by its node (see readMatching), held for sorting. */
async function readPlaced(trail: Trail, matches: (r: AuditRecord) => boolean): Promise<{ placed: Placed[]; complete: boolean }> {
  const { series, complete } = await readMatching(trail, matches, () => {
    const value: AuditRecord[] = [];
    return { add: (r) => value.push(r), value };
  });
  const placed: Placed[] = [];
  // One at a time: spread into push(), a series of 125,000 records overflowed the stack.
  for (const { parts, node } of series) for (const records of parts) for (const r of records) placed.push(place(r, node));
  return { placed, complete };
}

async function reportCommand(args: string[], configFile: string | undefined, out: (s: string) => void): Promise<number> {
  const { values: v } = parse(args, { since: { type: 'string' }, json: { type: 'boolean' }, file: { type: 'string', multiple: true } }, []);
  const since = v.since === undefined ? undefined : parseTime('since', v.since);
  // Counted as read: a report over a long trail holds a row per user, not the records.
  const { series, complete } = await readMatching(await auditSeries(v.file ?? [], configFile), recordMatcher({ since }), () => {
    const value = new UserTotals();
    return { add: (r) => value.add(r), value };
  });
  const totals = new UserTotals();
  for (const { parts } of series) for (const part of parts) totals.merge(part);
  const summary = totals.list();
  if (v.json) {
    out(safeJson(summary, 2) + '\n');
    return complete ? 0 : 1;
  }
  const head = ['USER', 'UPLOADS', 'UP BYTES', 'DOWNLOADS', 'DOWN BYTES', 'FAILED LOGINS', 'REFUSALS'];
  // The user name may be any a client tried: shown escaped, as in the query table.
  const rows = summary.map((u) => [u.user === '' ? '(names not recorded)' : shown(u.user), ...[u.uploads, u.uploadBytes, u.downloads, u.downloadBytes, u.failedLogins, u.refusals].map(String)]);
  out(textTable(head, rows, (column) => column > 0));
  return complete ? 0 : 1;
}
