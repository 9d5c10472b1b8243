import { ApiError, ifRunning, type ApiReply, type Reach } from '../admin/client.js';
import type { LiveSessionInfo } from '../session/live.js';
import { UsageError, parse } from './args.js';
import { table } from './user.js';

export const SESSION_HELP = `Usage: sluice session <command> ...

  list [--user NAME] [--json]   logged-in sessions of the running server, with transfers in progress
  kill ID                       end one session (its uploads are recorded aborted)
  kill --user NAME              end every session of a user

These talk to the running server through its admin API (admin.listen): over
the unix socket with no token, over TCP with SLUICE_ADMIN_TOKEN.
`;

export async function sessionCommand(args: string[], reach: Reach, out: (s: string) => void): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === undefined || sub === 'help') {
    out(SESSION_HELP);
    return sub === undefined ? 2 : 0;
  }
  switch (sub) {
    case 'list': {
      const { values: v } = parse(rest, { user: { type: 'string' }, json: { type: 'boolean' } }, []);
      const query = v.user === undefined ? '' : `?user=${encodeURIComponent(v.user)}`;
      const sessions = (await ask(reach, 'GET', `/sessions${query}`)).body as LiveSessionInfo[];
      if (v.json) {
        out(JSON.stringify(sessions, null, 2) + '\n');
        return 0;
      }
      const rows = sessions.map((s) => [
        s.id,
        s.user,
        s.protocol,
        `${s.ip}:${s.port}`,
        String(s.worker),
        s.since,
        s.transfers.map((t) => `${t.direction} ${t.path} ${t.bytes} bytes`).join('; ') || '-',
      ]);
      out(table(['ID', 'USER', 'PROTOCOL', 'ADDRESS', 'WORKER', 'SINCE', 'TRANSFERS'], rows));
      return 0;
    }
    case 'kill': {
      // kill takes an ID, or --user and no ID.
      const byUser = rest.some((a) => a === '--user' || a.startsWith('--user='));
      const { values: v, positionals } = parse(rest, { user: { type: 'string' } }, byUser ? [] : ['ID']);
      if (v.user !== undefined) {
        const r = await ask(reach, 'DELETE', `/users/${encodeURIComponent(v.user)}/sessions`);
        out(`ended ${(r.body as { sessionsEnded: number }).sessionsEnded} session(s) of ${v.user}\n`);
        return 0;
      }
      const id = positionals[0] as string;
      await ask(reach, 'DELETE', `/sessions/${encodeURIComponent(id)}`);
      out(`ended session ${id}\n`);
      return 0;
    }
    default:
      throw new UsageError(`unknown session command "${sub}"; see sluice session --help`);
  }
}

/** A request that must reach the server: the API off, no server, or a refusal is an ApiError. */
async function ask(reach: Reach, method: string, path: string): Promise<ApiReply> {
  const client = reach();
  if (client === null) throw new ApiError('the admin API is off (admin.listen is empty): live sessions are only known to a running server, through its API');
  const reply = await ifRunning(() => client, method, path);
  if (reply === null) throw new ApiError(`no server is running (nothing listens on ${client.address})`);
  return reply;
}
