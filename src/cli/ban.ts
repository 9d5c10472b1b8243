import type { AdminServices } from '../admin-services.js';
import { banTarget, notBanTarget } from '../auth/ip-rules.js';
import { ApiError, ifRunning, type Reach } from '../admin/client.js';
import { UsageError, parse } from './args.js';
import { complain } from './stdio.js';
import { table } from './user.js';

export const BAN_HELP = `Usage: sluice ban <command> ...

  list [--json]                 bans in force
  add ADDRESS [--for DURATION]  ban an address (default: until removed)
  remove ADDRESS                lift a ban (the defender also forgets the address's past bans)

ADDRESS: an IP address, or an IPv6 network of limits.ipv6Prefix bits
(2001:db8:1:2::/64), which the defender bans for any address in it;
remove also takes a network of another size, banned before that changed.
DURATION: seconds, or a number with s, m, h or d (30m, 12h, 7d).
With the admin API on (admin.listen) and the server running, add and remove go
through it, and a ban also ends the address's live sessions at once; otherwise
they are written to the database, which the server reads at each connection.
An address locked out of the API (a ban on 127.0.0.1) is lifted through the
database: SLUICE_ADMIN_LISTEN= sluice ban remove 127.0.0.1
`;

function parseAddress(text: string, ipv6Prefix: number, anySize = false): string {
  const address = banTarget(text, ipv6Prefix, anySize);
  if (address === null) throw new UsageError(notBanTarget(text, ipv6Prefix));
  return address;
}

const UNIT: Record<string, number> = { '': 1, s: 1, m: 60, h: 3600, d: 86400 };
/** Past this a timed ban makes no sense (and far past it its end is no date at all): leave --for out instead. */
export const MAX_BAN_SECONDS = 100 * 365 * 86400;

function parseDuration(text: string): number {
  const m = /^(\d{1,9})([smhd]?)$/.exec(text.trim());
  if (!m || Number(m[1]) === 0) throw new UsageError(`--for: "${text}" is not a duration (e.g. 3600, 30m, 12h, 7d)`);
  const seconds = Number(m[1]) * (UNIT[m[2] ?? ''] ?? 1);
  if (seconds > MAX_BAN_SECONDS) throw new UsageError(`--for: "${text}" is over 100 years; leave --for out to ban until removed`);
  return seconds;
}

/** A ban as `ban list` shows it, from the API or the store. */
interface ListedBan {
  address: string;
  until: string | null;
  count: number;
  reason: string;
  createdAt: string;
  held?: boolean;
}

export async function banCommand(
  args: string[],
  ipv6Prefix: () => number,
  open: () => Promise<AdminServices>,
  reach: Reach,
  out: (s: string) => void,
): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === undefined || sub === 'help') {
    out(BAN_HELP);
    return sub === undefined ? 2 : 0;
  }
  switch (sub) {
    case 'list': {
      const { values: v } = parse(rest, { json: { type: 'boolean' } }, []);
      // Through the running server when there is one, which also lists the bans its defender holds that the store has
      // not taken. When it cannot be asked (no token for its TCP port, this host refused), the store's list, said so:
      // before, `ban list` read the store only and needed neither.
      const reply = await ifRunning(reach, 'GET', '/bans').catch((err: unknown) => {
        complain(`the running server could not be asked (${err instanceof Error ? err.message : String(err)}): the stored bans only, without those it holds unstored`);
        return null;
      });
      const bans: ListedBan[] = (reply?.body as ListedBan[] | undefined) ??
        (await (await open()).bans.active()).map((b) => ({ ...b, until: b.until?.toISOString() ?? null, createdAt: b.createdAt.toISOString() }));
      if (v.json) {
        out(JSON.stringify(bans, null, 2) + '\n');
        return 0;
      }
      const rows = bans.map((b) => [b.address, b.until ?? 'until removed', String(b.count), b.held ? `${b.reason} (held: not yet stored)` : b.reason]);
      out(table(['ADDRESS', 'UNTIL', 'COUNT', 'REASON'], rows));
      return 0;
    }
    case 'add': {
      const { values: v, positionals } = parse(rest, { for: { type: 'string' } }, ['ADDRESS']);
      const address = parseAddress(positionals[0] as string, ipv6Prefix());
      const seconds = v.for === undefined ? null : parseDuration(v.for);
      // Through the running server, which also ends the address's live sessions; else in the store, read at the next connection.
      const reply = await ifRunning(reach, 'POST', '/bans', seconds === null ? { address } : { address, seconds });
      if (reply) {
        const ban = reply.body as { until: string | null; sessionsEnded: number };
        out(`banned ${address} ${ban.until ? `until ${ban.until}` : 'until removed'}; ${ban.sessionsEnded} live session(s) ended\n`);
        return 0;
      }
      const until = seconds === null ? null : new Date(Date.now() + seconds * 1000);
      await (await open()).bans.add(address, until);
      out(`banned ${address} ${until ? `until ${until.toISOString()}` : 'until removed'}\n`);
      return 0;
    }
    case 'remove': {
      const { positionals } = parse(rest, {}, ['ADDRESS']);
      const address = parseAddress(positionals[0] as string, ipv6Prefix(), true);
      const lifted = await ifRunning(reach, 'DELETE', `/bans/${encodeURIComponent(address)}`).catch((err: unknown) => {
        if (err instanceof ApiError && err.status === 404) return false;
        throw err;
      });
      if (lifted) {
        out(`lifted the ban on ${address}\n`);
        return 0;
      }
      if (lifted === false || !(await (await open()).bans.remove(address))) {
        out(`${address} was not banned\n`);
        return 1;
      }
      out(`lifted the ban on ${address}\n`);
      return 0;
    }
    default:
      throw new UsageError(`unknown ban command "${sub}"; see sluice ban --help`);
  }
}
