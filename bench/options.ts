/** The bench's command line; a wrong one is a usage error (exit 2), never a silent default. */
import { parseArgs } from 'node:util';
import { bytesOf } from '../src/config/size.js';
import type { Workload } from './workload.js';

export interface Options {
  quick: boolean;
  size: number;
  files: number;
  /** Measured runs for every workload; null: 3 (1 with --quick), or what a workload asks. */
  runs: number | null;
  workloads: Workload[];
}

const USAGE = `usage: npm run bench -- [--quick] [--only a,b] [--size 1G] [--files 1000] [--runs 3] [--list]
  --quick   smaller sizes (256M, 200 files), 1 run, only the workloads marked quick,
            no audit-off rows: under 3 minutes on an idle 2-core machine
  --only    workloads by name or group (see --list), comma-separated
  --size    the large file, and each aggregate client's (default 1G; 256M with --quick,
            of which the aggregate clients move a quarter)
  --files   the small files of 4 KiB (default 1000; 200 with --quick; at most 10000)
  --runs    measured runs per workload after one warm-up (default 3; 1 with --quick)
  --list    print the workloads and exit`;

class UsageError extends Error {}

function usage(message: string): never {
  throw new UsageError(message);
}

function positiveInt(text: string | undefined, what: string, max: number): number | null {
  if (text === undefined) return null;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > max) usage(`${what} must be a whole number from 1 to ${max}, not '${text}'`);
  return n;
}

/** Parsed options, or exits: 2 with the usage on a wrong command line, 0 after --help or --list. */
export function parseOptions(argv: string[], all: Workload[]): Options {
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: true,
      options: {
        quick: { type: 'boolean', default: false },
        only: { type: 'string' },
        size: { type: 'string' },
        files: { type: 'string' },
        runs: { type: 'string' },
        list: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
    if (positionals.length > 0) usage(`unexpected argument '${positionals[0]}'`);
    if (values.help) {
      console.log(USAGE);
      process.exit(0);
    }
    if (values.list) {
      for (const w of all) console.log(`${w.name.padEnd(18)} ${w.group.padEnd(14)} ${w.quick ? 'quick' : '     '}  ${w.title}`);
      process.exit(0);
    }
    const quick = values.quick;
    const size = bytesOf(values.size ?? (quick ? '256M' : '1G'));
    if (!(size > 0)) usage(`--size must be a size above 0 such as 256M or 1G, not '${values.size}'`);
    const files = positiveInt(values.files, '--files', 10000) ?? (quick ? 200 : 1000);
    const runs = positiveInt(values.runs, '--runs', 100) ?? (quick ? 1 : null);
    let workloads: Workload[];
    if (values.only !== undefined) {
      const wanted = values.only.split(',').map((s) => s.trim()).filter((s) => s !== '');
      for (const w of wanted) if (!all.some((x) => x.name === w || x.group === w)) usage(`no workload or group '${w}' (see --list)`);
      workloads = all.filter((x) => wanted.includes(x.name) || wanted.includes(x.group));
    } else {
      workloads = quick ? all.filter((w) => w.quick) : all;
    }
    return { quick, size, files, runs, workloads };
  } catch (err) {
    const message = err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') ? (err as Error).message : null;
    if (message === null) throw err;
    console.error(`${message}\n${USAGE}`);
    process.exit(2);
  }
}
