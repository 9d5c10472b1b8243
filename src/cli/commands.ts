/**
 * The commands of `sluice`, the one place the top-level help and every
 * command's `--help` are made from. Pure and light: `sluice --help` loads
 * nothing else; a command's detailed help is loaded from its module only
 * when asked for.
 */
export interface CommandSpec {
  /** What follows the name in the top-level list (`...` for a command with subcommands). */
  readonly args: string;
  readonly summary: string;
  /** Its subcommands, in the order its own help lists them; listed in the top-level help. */
  readonly subcommands?: readonly string[];
  /** Its own help text; without one, its line of the top-level help is its help. */
  readonly help?: () => Promise<string>;
}

export const COMMANDS = {
  serve: { args: '', summary: 'start the FTP, FTPS and SFTP front-ends (default for npm start)' },
  init: { args: '', summary: 'create the data directory, database, TLS certificate and SSH host keys' },
  user: {
    args: '...',
    summary: 'manage users',
    subcommands: ['add', 'list', 'show', 'passwd', 'set', 'enable', 'disable', 'remove', 'key', 'perm'],
    help: async () => (await import('./user.js')).USER_HELP,
  },
  ban: { args: '...', summary: 'banned addresses', subcommands: ['list', 'add', 'remove'], help: async () => (await import('./ban.js')).BAN_HELP },
  admin: {
    args: 'token ...',
    summary: 'bearer tokens of the admin API',
    subcommands: ['token create', 'token remove', 'token list'],
    help: async () => (await import('./admin.js')).ADMIN_HELP,
  },
  session: {
    args: '...',
    summary: 'live sessions of the running server',
    subcommands: ['list', 'kill'],
    help: async () => (await import('./session.js')).SESSION_HELP,
  },
  store: {
    args: '...',
    summary: 'the PostgreSQL store',
    subcommands: ['migrate-from-sqlite', 'nodes', 'forget-node'],
    help: async () => (await import('./store.js')).STORE_HELP,
  },
  audit: {
    args: '...',
    summary: 'the audit trail',
    subcommands: ['verify', 'query', 'report'],
    help: async () => (await import('./audit.js')).AUDIT_HELP,
  },
  version: { args: '', summary: 'print the version' },
} as const satisfies Record<string, CommandSpec>;

export type CommandName = keyof typeof COMMANDS;

export const isCommand = (name: string): name is CommandName => Object.hasOwn(COMMANDS, name);

const USAGE = 'Usage: sluice [--config FILE] <command>';

/** Pure: one command's line(s) in the top-level help. */
function commandLine(name: string, spec: CommandSpec): string {
  const head = `  ${`${name} ${spec.args}`.trimEnd().padEnd(17)} ${spec.summary}`;
  if (!spec.subcommands) return head;
  return `${head} (sluice ${name} --help):\n${' '.repeat(20)}${spec.subcommands.join(', ')}`;
}

/** Pure: the top-level help, every command and subcommand listed. */
export function topHelp(): string {
  const lines = Object.entries(COMMANDS).map(([name, spec]) => commandLine(name, spec));
  return `${USAGE}

Commands:
${lines.join('\n')}

Configuration: ./sluice.yaml, --config FILE or SLUICE_CONFIG, then SLUICE_* variables
(see deploy/sluice.example.yaml).
`;
}

/** A command's help: its own, or, for one without, its usage and its line of the top-level help. */
export async function commandHelp(name: CommandName): Promise<string> {
  const spec: CommandSpec = COMMANDS[name];
  if (spec.help) return spec.help();
  return `Usage: sluice [--config FILE] ${name}\n\n${commandLine(name, spec)}\n`;
}

/**
 * Pure: do a command's arguments ask for its help: `--help` or `-h` anywhere
 * before a `--`, after no subcommand or one it has (an unknown one is for
 * the command to refuse)?
 */
export function wantsHelp(name: CommandName, args: readonly string[]): boolean {
  const spec: CommandSpec = COMMANDS[name];
  const first = args[0];
  if (spec.subcommands && first !== undefined && !first.startsWith('-') && !spec.subcommands.some((s) => s.split(' ')[0] === first)) return false;
  for (const a of args) {
    if (a === '--') return false;
    if (a === '--help' || a === '-h') return true;
  }
  return false;
}
