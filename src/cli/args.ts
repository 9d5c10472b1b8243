import { parseArgs, type ParseArgsConfig } from 'node:util';
import { bytesOf } from '../config/size.js';
import { expiryOutside } from '../users/expiry.js';

/** A command-line mistake: printed as one line, exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

type Options = NonNullable<ParseArgsConfig['options']>;

/**
 * node:util parseArgs, strict, with its errors turned into one clear line.
 * `positionals` names the arguments the command takes, for the message when
 * one is missing. `--help` never reaches here: main() answers it for every
 * command (commands.ts).
 */
export function parse<O extends Options>(args: string[], options: O, positionals: readonly string[]) {
  let parsed;
  try {
    parsed = parseArgs({ args, options, allowPositionals: true, strict: true, tokens: true });
  } catch (err) {
    const message = (err as Error).message;
    // Given after the command, it is no option of the command's: where it goes, not "Unknown option".
    if (/^Unknown option '--config'/.test(message)) throw new UsageError('--config goes before the command: sluice --config FILE <command> ...');
    // A value that starts with a dash (`--rate-up -1`): parseArgs's first sentence, "argument is ambiguous",
    // said nothing of what to do (found by an operator's walk); its advice, in one line.
    const dashed = /^Option '(--[^']+)' argument is ambiguous/.exec(message);
    if (dashed) throw new UsageError(`${dashed[1]} needs a value; one that starts with a dash is given as ${dashed[1]}=-VALUE`);
    // parseArgs appends advice on `--`; the first sentence is the problem.
    throw new UsageError(message.split(/\.\s|\n/)[0] ?? 'bad arguments');
  }
  // A value given twice kept the last without a word (`--home /a --home /b` made /b, `--quota-bytes 1G --quota-bytes 2G` 2G):
  // which one was meant is for the operator to say. A flag given twice says the same twice.
  const seen = new Set<string>();
  for (const t of parsed.tokens) {
    if (t.kind !== 'option' || t.value === undefined || options[t.name]?.multiple) continue;
    if (seen.has(t.name)) throw new UsageError(`--${t.name} is given twice: give it once`);
    seen.add(t.name);
  }
  const given = parsed.positionals.length;
  if (given > positionals.length) throw new UsageError(`unexpected argument "${parsed.positionals[positionals.length]}"`);
  const missing = positionals.slice(given);
  if (missing.length > 0) throw new UsageError(`missing argument${missing.length > 1 ? 's' : ''} ${missing.join(' ')}`);
  return parsed;
}

/** `1048576`, `512M`, `10G`: a byte count. */
export function parseSize(option: string, text: string): number {
  const n = bytesOf(text);
  if (Number.isNaN(n)) throw new UsageError(`--${option}: "${text}" is not a size (e.g. 1048576, 500M, 10G)`);
  return n;
}

export function parseCount(option: string, text: string): number {
  if (!/^\d{1,15}$/.test(text)) throw new UsageError(`--${option}: "${text}" is not a whole number`);
  return Number(text);
}

const TIME = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,3})?)?(Z|[+-]\d{2}:?\d{2})?)?$/;

/**
 * ISO date or date-time: `2026-11-24`, `2026-11-24T10:00`, `2026-11-24T10:00:00Z`,
 * `2026-11-24T10:00+01:00`. In UTC unless it gives an offset, the date alone
 * too, whatever TZ says: the audit trail's times are UTC, and a date-time
 * read in local time differed from the same day given as a date (found by a
 * review: `--expires 9999-12-31T23:59:59` west of UTC was a date in 10000).
 * Each field in its range: Date rolls `2026-02-30` over to March 2, which
 * no one meant.
 */
export function parseTime(option: string, text: string): Date {
  const m = TIME.exec(text);
  const [y, mo, d, h, mi, s] = (m?.slice(1, 7) ?? []).map((f) => (f === undefined ? 0 : Number(f)));
  const valid = m !== null && mo! >= 1 && mo! <= 12 && d! >= 1 && d! <= daysIn(y!, mo!) && h! <= 23 && mi! <= 59 && s! <= 59;
  // A date-time with no offset is given one (Z): Date reads it in local time. A date alone is UTC to Date already.
  const iso = m?.[4] !== undefined && m[7] === undefined ? `${text.replace(' ', 'T')}Z` : text;
  const at = valid ? new Date(iso) : new Date(NaN);
  if (Number.isNaN(at.getTime())) throw new UsageError(`--${option}: "${text}" is not a date (YYYY-MM-DD[THH:MM[:SS]][Z|+HH:MM], UTC unless an offset is given)`);
  return at;
}

/** Days in month `month` (1-12) of `year`. */
function daysIn(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

/** ISO date or date-time (UTC unless it gives an offset), or `never`; in UTC within the years 0000 to 9999. */
export function parseExpiry(text: string): Date | null {
  if (text === 'never') return null;
  let at: Date;
  try {
    at = parseTime('expires', text);
  } catch {
    throw new UsageError(`--expires: "${text}" is not a date (YYYY-MM-DD[THH:MM[:SS]][Z|+HH:MM], UTC unless an offset is given) or "never"`);
  }
  const outside = expiryOutside(at);
  if (outside !== null) throw new UsageError(`--expires: "${text}" is, in UTC, ${outside}`);
  return at;
}
