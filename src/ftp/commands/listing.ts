import { parentOf } from '../../session/paths.js';
import type { CommandSpec } from '../control.js';
import { startDataCommand } from '../data-channel/runner.js';
import { factList, mlsxLine } from '../facts.js';
import { entries, ftpListLine, nameList, sendListing, splitListArgs } from '../listing.js';
import { Code } from '../replies.js';

export const listing = {
  LIST: {
    auth: true,
    data: true,
    arg: 'optional',
    help: 'LIST [-flags] [path]',
    async run(c, arg, s) {
      if (startDataCommand(c) === null) return;
      const now = new Date();
      sendListing(c, await entries(s, splitListArgs(arg).path), (f) => ftpListLine(f, now));
    },
  },
  NLST: {
    auth: true,
    data: true,
    arg: 'optional',
    help: 'NLST [-flags] [path]',
    async run(c, arg, s) {
      if (startDataCommand(c) === null) return;
      const { entries, line } = await nameList(s, splitListArgs(arg).path);
      sendListing(c, entries, line);
    },
  },
  MLSD: {
    auth: true,
    data: true,
    arg: 'optional',
    help: 'MLSD [directory]',
    async run(c, arg, s) {
      if (startDataCommand(c) === null) return;
      const path = arg === '' ? '.' : arg;
      const info = await s.stat(path);
      if (info.type !== 'dir') return c.reply(Code.ArgumentError, 'Not a directory.');
      const dir = s.resolve(path);
      const list = await s.list(path);
      const here = s.permissionsIn(dir);
      const facts = c.mlstFacts;
      sendListing(c, list, (f) =>
        mlsxLine(f, f.type === 'dir' ? s.permissionsIn(`${dir === '/' ? '' : dir}/${f.name}`) : here, facts),
      );
    },
  },
  MLST: {
    auth: true,
    arg: 'optional',
    help: 'MLST [path]',
    feat: (c) => `MLST ${factList(c.mlstFacts, true)}`,
    async run(c, arg, s) {
      const asked = arg === '' ? '.' : arg;
      const path = s.resolve(asked);
      // By the path as given: resolved, `f/` lost the final `/` that says a directory is meant.
      const info = await s.stat(asked);
      const perms = s.permissionsIn(info.type === 'dir' ? path : parentOf(path));
      c.reply(Code.FileActionOk, `Listing ${path}`, ' ' + mlsxLine(info, perms, c.mlstFacts, path), 'End.');
    },
  },
} satisfies Record<string, CommandSpec>;
