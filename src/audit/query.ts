import { addressAllowed } from '../auth/ip-rules.js';
import { shown } from '../session/unsafe-chars.js';
import type { TransferResult } from './events.js';

export type AuditRecord = Record<string, unknown>;

export interface AuditFilter {
  user?: string | undefined;
  cidr?: string | undefined;
  protocol?: string | undefined;
  pathGlob?: string | undefined;
  since?: Date | undefined;
  until?: Date | undefined;
  /** ok, aborted: only records with that result; failed: every transfer not ok (aborted too) and failed logins. */
  result?: TransferResult | undefined;
}

type GlobToken = { kind: 'char'; ch: string } | { kind: 'one' } | { kind: 'name' } | { kind: 'any' };

/**
 * `*` within a name, `**` across names, `?` one character; the rest literal.
 * Matched by walking every place in the pattern at once, so a path costs
 * at most its length times the pattern's, whatever the pattern: a regular
 * expression of many `.*` backtracks exponentially, and a 25-character
 * pattern from the admin API held the event loop (every session) for
 * seconds to minutes per record.
 */
export function globMatcher(glob: string): (path: string) => boolean {
  const tokens: GlobToken[] = [];
  for (let i = 0; i < glob.length; i++) {
    const ch = glob[i] as string;
    if (ch === '*') {
      const any = glob[i + 1] === '*';
      if (any) i++;
      // A run of stars matches what its widest member does.
      const last = tokens[tokens.length - 1];
      if (last?.kind === 'any') continue;
      if (last?.kind === 'name') tokens.pop();
      tokens.push({ kind: any ? 'any' : 'name' });
    } else tokens.push(ch === '?' ? { kind: 'one' } : { kind: 'char', ch });
  }
  const end = tokens.length;
  return (path) => {
    let now = new Uint8Array(end + 1);
    let next = new Uint8Array(end + 1);
    const enter = (set: Uint8Array, at: number): void => {
      // A star may match nothing: being at it is also being past it.
      for (let i = at; i <= end && !set[i]; i++) {
        set[i] = 1;
        const t = tokens[i];
        if (t?.kind !== 'name' && t?.kind !== 'any') break;
      }
    };
    enter(now, 0);
    for (let p = 0; p < path.length; p++) {
      const c = path[p] as string;
      next.fill(0);
      let alive = false;
      for (let i = 0; i < end; i++) {
        if (!now[i]) continue;
        const t = tokens[i] as GlobToken;
        const fits = t.kind === 'any' || (c !== '/' && t.kind !== 'char') || (t.kind === 'char' && t.ch === c);
        if (!fits) continue;
        alive = true;
        if (t.kind === 'name' || t.kind === 'any') enter(next, i);
        else enter(next, i + 1);
      }
      if (!alive) return false;
      [now, next] = [next, now];
    }
    return now[end] === 1;
  };
}

const pathsOf = (r: AuditRecord): string[] =>
  ['path', 'path_at_open', 'from', 'to'].map((k) => r[k]).filter((v): v is string => typeof v === 'string');

/** Pure: does one record pass every given filter? For readers that stream. */
export function recordMatcher(f: AuditFilter): (r: AuditRecord) => boolean {
  const glob = f.pathGlob === undefined ? null : globMatcher(f.pathGlob);
  return (r) => {
    if (f.user !== undefined && r.user !== f.user) return false;
    if (f.protocol !== undefined && r.protocol !== f.protocol) return false;
    if (f.cidr !== undefined && !(typeof r.ip === 'string' && addressAllowed(r.ip, [f.cidr], []))) return false;
    if (glob && !pathsOf(r).some(glob)) return false;
    const time = typeof r.time === 'string' ? Date.parse(r.time) : NaN;
    if (f.since && !(time >= f.since.getTime())) return false;
    if (f.until && !(time <= f.until.getTime())) return false;
    if ((f.result === 'ok' || f.result === 'aborted') && r.result !== f.result) return false;
    if (f.result === 'failed' && !((r.result !== undefined && r.result !== 'ok') || r.event === 'login-failed')) return false;
    return true;
  };
}

/** A record and where it stands among every node's records. */
export interface Placed {
  record: AuditRecord;
  /** Milliseconds; -Infinity when the record has no readable time (it sorts first). */
  time: number;
  /** The record's node, or for a record from before node ids the node its chain names. */
  node: string;
  seq: number;
}

/** Pure: a record placed, for records read from the chain of `node` ('' when it names none). */
export function place(record: AuditRecord, node: string): Placed {
  const time = typeof record.time === 'string' ? Date.parse(record.time) : NaN;
  return {
    record,
    time: Number.isNaN(time) ? -Infinity : time,
    node: typeof record.node === 'string' ? record.node : node,
    seq: typeof record.seq === 'number' ? record.seq : 0,
  };
}

/**
 * Pure, for a stable sort: every node's records in time order; equal times by
 * node id, then by sequence number (the node's own order).
 */
export function timeOrder(a: Placed, b: Placed): number {
  if (a.time !== b.time) return a.time < b.time ? -1 : 1;
  if (a.node !== b.node) return a.node < b.node ? -1 : 1;
  return a.seq - b.seq;
}

// The hash last: an auditor compares it with the file's, and it is the widest.
const COLUMNS = ['time', 'node', 'user', 'protocol', 'ip', 'event', 'path', 'bytes', 'result', 'sha256'] as const;

function cell(r: AuditRecord, col: (typeof COLUMNS)[number]): string {
  if (col === 'path') return pathsOf(r).join(' -> ');
  if (col === 'result') return String(r.result ?? r.reason ?? '');
  const v = r[col];
  return v === undefined || v === null ? '' : String(v);
}

/** The query table's head and one row per record, each cell escaped for a terminal (see cli/table.ts). */
export function tableOf(records: readonly AuditRecord[]): { head: string[]; rows: string[][] } {
  return { head: COLUMNS.map((c) => c.toUpperCase()), rows: records.map((r) => COLUMNS.map((c) => shown(cell(r, c)))) };
}

/**
 * Pure: one CSV field (RFC 4180), exact but for formulas. A field holding a
 * quote, comma, CR or LF is quoted (a bare CR ends a row for some readers).
 * A field a spreadsheet would run as a formula (first character = + - @, tab
 * or CR; a client picks user names and paths) gets a leading `'`, as OWASP's
 * CSV injection advice has it, so it is read as text.
 */
export function csvField(text: string): string {
  const inert = /^[=+\-@\t\r]/.test(text) ? `'${text}` : text;
  return /[",\r\n]/.test(inert) ? `"${inert.replace(/"/g, '""')}"` : inert;
}

export function formatCsv(records: AuditRecord[]): string {
  return [COLUMNS.join(','), ...records.map((r) => COLUMNS.map((c) => csvField(cell(r, c))).join(','))].join('\n') + '\n';
}

export interface UserSummary {
  user: string;
  uploads: number;
  uploadBytes: number;
  downloads: number;
  downloadBytes: number;
  failedLogins: number;
  refusals: number;
}

/**
 * Per user, completed transfers (count, bytes), failed logins and refusals,
 * counted as records come: a report holds one row per user, not the
 * records. Failed logins past the throttle's share of a minute are recorded
 * only as a count per address (`login-failed-repeated`, user ''): they count
 * for user '', the names they tried not known.
 */
export class UserTotals {
  private readonly by = new Map<string, UserSummary>();

  add(r: AuditRecord): void {
    if (typeof r.user !== 'string') return;
    const bytes = typeof r.bytes === 'number' ? r.bytes : 0;
    if (r.event === 'upload' && r.result === 'ok') {
      this.of(r.user).uploads++;
      this.of(r.user).uploadBytes += bytes;
    } else if (r.event === 'download' && r.result === 'ok') {
      this.of(r.user).downloads++;
      this.of(r.user).downloadBytes += bytes;
    } else if (r.event === 'login-failed') this.of(r.user).failedLogins++;
    else if (r.event === 'login-failed-repeated' && typeof r.count === 'number') this.of(r.user).failedLogins += r.count;
    else if (r.event === 'denied' || r.event === 'quota-exceeded') this.of(r.user).refusals++;
  }

  /** Adds another's counts to these. */
  merge(other: UserTotals): void {
    for (const [user, o] of other.by) {
      const s = this.of(user);
      s.uploads += o.uploads;
      s.uploadBytes += o.uploadBytes;
      s.downloads += o.downloads;
      s.downloadBytes += o.downloadBytes;
      s.failedLogins += o.failedLogins;
      s.refusals += o.refusals;
    }
  }

  /** One row per user, by name. */
  list(): UserSummary[] {
    return [...this.by.values()].sort((a, b) => a.user.localeCompare(b.user));
  }

  private of(user: string): UserSummary {
    let s = this.by.get(user);
    if (!s) {
      s = { user, uploads: 0, uploadBytes: 0, downloads: 0, downloadBytes: 0, failedLogins: 0, refusals: 0 };
      this.by.set(user, s);
    }
    return s;
  }
}
