import type { AdminServices } from '../admin-services.js';
import { ApiError, adminClient } from '../admin/client.js';
import { ConfigError } from '../config/errors.js';
import type { Config } from '../config/schema.js';
import { AdminError } from '../users/errors.js';
import { servingPid } from '../serve-pid.js';
import { StoreReadOnly } from '../store/store.js';
import { version } from '../version.js';
import { UsageError } from './args.js';
import { commandHelp, isCommand, topHelp, wantsHelp } from './commands.js';
import type { StorePlaces } from './store-places.js';
import { complain, dropOutputWhenReaderGone } from './stdio.js';

// Each command loads what it needs when it runs: `sluice version` and
// `--help` answer without loading the protocols, the store driver or the
// config schema, and `user` or `audit` load only their part.

const out = (s: string) => {
  process.stdout.write(s);
};

/** Returns the exit code: 0 ok, 1 failure, 2 bad usage or configuration. */
export async function main(argv: string[]): Promise<number> {
  dropOutputWhenReaderGone();
  let configFile: string | undefined;
  const args = [...argv];
  while (args[0] === '--config' || args[0]?.startsWith('--config=')) {
    const flag = args.shift() as string;
    // The first was dropped without a word: which file was meant is for the operator to say.
    if (configFile !== undefined) return fail(new UsageError('--config is given twice: give it once'));
    configFile = flag.includes('=') ? flag.slice('--config='.length) : args.shift();
    if (!configFile) return fail(new UsageError('--config needs a file'));
  }
  const [command, ...rest] = args;
  // Every command and subcommand answers --help alike, from the one table of commands.
  if (command !== undefined && isCommand(command) && wantsHelp(command, rest)) {
    out(await commandHelp(command));
    return 0;
  }
  switch (command) {
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      out(topHelp());
      return command === undefined ? 2 : 0;
    case 'version':
    case '--version':
      // Refused as serve and init refuse one: `sluice version --json` printed the text, exit 0.
      if (rest.length > 0) return fail(new UsageError(`unexpected argument "${rest[0]}"`));
      out(`sluice ${version()}\n`);
      return 0;
  }
  let services: Promise<AdminServices> | null = null;
  let loaded: Config | null = null;
  const { loadConfig } = await import('../config/load.js');
  // Only serving makes the data and certificate directories up front; a command that opens the store makes what
  // it needs there (storePlaces), and a failed command leaves nothing (found by a review: it left data/ and certs/).
  const config = () => (loaded ??= loadConfig({ file: configFile, makeDirs: command === 'serve' || command === 'init' }));
  const reach = () => adminClient(config());
  let unreached = false;
  /** For a change of a user: with the API off, said once the change is made, if a server runs (noteUnreached). */
  const reachForChange = () => {
    const client = reach();
    if (client === null) unreached = true;
    return client;
  };
  let places: StorePlaces | null = null;
  // Opened lazily, so --help and argument errors never touch the database.
  const open = () =>
    (services ??= import('../admin-services.js').then(async (m) => {
      const { prepareStorePlaces } = await import('./store-places.js');
      places = prepareStorePlaces(config(), (await import('../store/open.js')).sqliteFile);
      return m.openAdmin(config(), true);
    }));
  let code = 1;
  try {
    switch (command) {
      case 'serve': {
        if (rest.length > 0) throw new UsageError(`unexpected argument "${rest[0]}"`);
        const { serve } = await import('./serve.js');
        return await serve(config(), out);
      }
      case 'init': {
        if (rest.length > 0) throw new UsageError(`unexpected argument "${rest[0]}"`);
        const { init } = await import('./serve.js');
        services = init(config(), out);
        out(`initialised ${(await services).config.dataDir}\n`);
        return 0;
      }
      case 'audit':
        return await (await import('./audit.js')).auditCommand(rest, configFile, out);
      case 'admin':
        return (code = await (await import('./admin.js')).adminCommand(rest, open, out));
      case 'ban':
        return (code = await (await import('./ban.js')).banCommand(rest, () => config().limits.ipv6Prefix, open, reach, out));
      case 'user': {
        code = await (await import('./user.js')).userCommand(rest, open, reachForChange, out);
        // After the change, not before it: a change refused (an unknown user) was written nowhere.
        if (code === 0 && unreached) noteUnreached(config());
        return code;
      }
      case 'session':
        return await (await import('./session.js')).sessionCommand(rest, reach, out);
      case 'store':
        return await (await import('./store.js')).storeCommand(rest, config, out);
      default:
        throw new UsageError(`unknown command "${command}"; see sluice --help`);
    }
  } catch (err) {
    return fail(await readOnlyRefusal(err, services));
  } finally {
    // A store that failed to open has reported why already: nothing to close.
    const opened = await services?.catch(() => null);
    await opened?.close();
    settlePlaces(places, code);
  }
}

/**
 * A write refused by a store opened to read only, said naming its file and
 * why (`DATA/sluice.db cannot be written: permission denied`), not in
 * SQLite's words ('attempt to write a readonly database'). Exit 1.
 */
async function readOnlyRefusal(err: unknown, services: Promise<AdminServices> | null): Promise<unknown> {
  if (!(err instanceof StoreReadOnly)) return err;
  const why = (await services?.catch(() => null))?.store.readOnly;
  return why ? new Error(`${why}: this command changes it, and nothing was changed`) : err;
}

/**
 * A change for a running server, made with its admin API off: written to the
 * store only. On SQLite nothing tells that server (on PostgreSQL its notices
 * do), so its live sessions go on as they logged in: said, not left for the
 * operator to find out (found by a review: `user set --home` left sessions
 * in the old home, and `user disable` left a session running, silently).
 */
function noteUnreached(config: Config): void {
  if (config.store !== '') return;
  const pid = servingPid(config.dataDir);
  if (pid === null) return;
  process.stderr.write(
    `sluice: note: sluice serve (pid ${pid}) serves ${config.dataDir} with its admin API off (admin.listen): ` +
      'this change is written to the store only, and its live sessions go on as they logged in until they end ' +
      '(set admin.listen, a unix socket is enough, for changes to reach them at once; see README, Admin API)\n',
  );
}

/** After a command that opened the store: what it made is kept (and a new database said) if it succeeded, else undone. */
function settlePlaces(places: StorePlaces | null, code: number): void {
  if (places === null) return;
  const { kept } = places.settle(code === 0);
  if (places.fresh === null) return;
  if (code === 0) noteNewStore(places.fresh);
  else if (kept) noteStoreInUse(places.fresh);
  else noteNoStore(places.fresh);
}

/** A command that failed where it made a database another command (or a server) uses meanwhile: it is theirs now. */
function noteStoreInUse(file: string): void {
  process.stderr.write(`sluice: note: no user database was at ${file}: the one made is kept, another command or a server uses it now\n`);
}

/**
 * Run outside the server's directory, or without its --config or
 * SLUICE_DATA_DIR, a command made a store of its own and said nothing: an
 * operator added users the server never saw (found by an operator's review).
 */
function noteNewStore(file: string): void {
  process.stderr.write(
    `sluice: note: no user database was at ${file}: made a new one. A server reads the one of its own data ` +
      'directory: run this where it runs, with its --config or SLUICE_DATA_DIR (see README, Configuration)\n',
  );
}

/** A command that failed where no database is: maybe the operator's mistake was the directory. */
function noteNoStore(file: string): void {
  process.stderr.write(
    `sluice: note: no user database is at ${file} (none was made). A server reads the one of its own data ` +
      'directory: run this where it runs, with its --config or SLUICE_DATA_DIR (see README, Configuration)\n',
  );
}

function fail(err: unknown): number {
  // The API's 400 and 404 are the mistakes the store's AdminError reports when no server runs: the same exit code.
  const refused = err instanceof ApiError && err.status !== null && err.status >= 400 && err.status < 500 && err.status !== 401;
  if (err instanceof UsageError || err instanceof ConfigError || err instanceof AdminError || refused) {
    complain(err.message);
    return 2;
  }
  complain(err instanceof Error ? err.message : String(err));
  return 1;
}
