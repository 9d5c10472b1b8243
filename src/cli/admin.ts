import type { AdminServices } from '../admin-services.js';
import { newToken } from '../admin/tokens.js';
import { NotStored } from '../users/errors.js';
import { UsageError, parse } from './args.js';
import { table } from './user.js';

export const ADMIN_HELP = `Usage: sluice admin token <command> ...

  token create NAME   make a bearer token for the admin API over TCP and print it
                      once, alone on stdout (only its SHA-256 is stored)
  token remove NAME   revoke it; the running server refuses it at once
  token list          names, when created, when last used

Use it as:  curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8022/api/v1/server
Over the unix socket (admin.listen a path) no token is needed: see deploy/sluice.example.yaml.
`;

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export async function adminCommand(args: string[], open: () => Promise<AdminServices>, out: (s: string) => void): Promise<number> {
  const [what, sub, ...rest] = args;
  if (what === undefined || what === 'help') {
    out(ADMIN_HELP);
    return what === undefined ? 2 : 0;
  }
  if (what !== 'token') throw new UsageError(`unknown admin command "${what}"; see sluice admin --help`);
  switch (sub) {
    case 'create': {
      const { positionals } = parse(rest, {}, ['NAME']);
      const name = positionals[0] as string;
      if (!NAME.test(name)) throw new UsageError(`invalid token name "${name}": 1-64 of letters, digits, . _ - and starting with a letter or digit`);
      const { token, hash } = newToken();
      const { tokens } = await open();
      if (!(await tokens.add(name, hash))) {
        // Compared without case: the one there may be spelt otherwise.
        const taken = (await tokens.all()).find((t) => t.name.toLowerCase() === name.toLowerCase())?.name ?? name;
        throw new UsageError(`a token named "${taken}" exists already (names are compared without case); remove it first`);
      }
      out(`${token}\n`);
      return 0;
    }
    case 'remove': {
      const { positionals } = parse(rest, {}, ['NAME']);
      const name = positionals[0] as string;
      // Exit 2, as `user remove` of no such user: a name that names nothing is the operator's mistake (main.ts).
      if (!(await (await open()).tokens.remove(name))) throw new NotStored(`no token named "${name}"`);
      out(`removed token ${name}\n`);
      return 0;
    }
    case 'list': {
      parse(rest, {}, []);
      const rows = (await (await open()).tokens.all()).map((t) => [t.name, t.createdAt.toISOString(), t.lastUsed ? t.lastUsed.toISOString() : 'never']);
      out(table(['NAME', 'CREATED', 'LAST USED'], rows));
      return 0;
    }
    default:
      throw new UsageError('usage: sluice admin token create NAME | remove NAME | list');
  }
}
