import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { verifyLines, type ChainHead } from '../audit/chain.js';
import { loadConfig } from '../config/load.js';
import { UsageError, parse } from './args.js';

export const AUDIT_HELP = `Usage: sluice audit verify [FILE...]

  verify    check the hash chain and sequence of the audit log (default:
            <dataDir>/audit.log); several files are checked in the order
            given, the chain continuing from one to the next. Reports the
            first line that was altered, removed, inserted or reordered;
            exit 1 on any break.
`;

export function auditCommand(args: string[], configFile: string | undefined, out: (s: string) => void): number {
  const [sub, ...rest] = args;
  if (sub === undefined || sub === '--help' || sub === '-h') {
    out(AUDIT_HELP);
    return sub === undefined ? 2 : 0;
  }
  if (sub !== 'verify') throw new UsageError(`unknown audit command "${sub}"; see sluice audit --help`);
  const { values, positionals } = parseVerify(rest);
  if (values.help) {
    out(AUDIT_HELP);
    return 0;
  }
  const files = positionals.length > 0 ? positionals : [join(loadConfig({ file: configFile }).dataDir, 'audit.log')];
  let head: ChainHead | undefined;
  let total = 0;
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new UsageError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? err}`);
    }
    const lines = text.split('\n');
    if (lines.at(-1) === '') lines.pop();
    const result = verifyLines(lines, head);
    if (result.break) {
      out(`${file}:${result.break.line}: ${result.break.reason}\n`);
      return 1;
    }
    head = result.head ?? head;
    total += lines.length;
  }
  out(`ok: ${total} lines, chain intact\n`);
  return 0;
}

function parseVerify(args: string[]) {
  // Any number of files: parse options, keep positionals as they come.
  const parsed = parse(args.filter((a) => a.startsWith('-')), {}, 0);
  return { values: parsed.values as { help?: boolean }, positionals: args.filter((a) => !a.startsWith('-')) };
}
