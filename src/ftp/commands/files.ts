import { SluiceError } from '../../session/errors.js';
import type { CommandSpec } from '../control.js';
import { parseTimeVal, timeVal } from '../facts.js';
import { Code } from '../replies.js';
import { quotePath } from './navigate.js';

const mkd: CommandSpec = {
  auth: true,
  arg: 'required',
  help: 'MKD <path>',
  async run(c, arg, s) {
    const path = await s.mkdir(arg);
    c.reply(Code.PathCreated, `${quotePath(path)} created.`);
  },
};
const rmd: CommandSpec = {
  auth: true,
  arg: 'required',
  help: 'RMD <path>',
  async run(c, arg, s) {
    await s.rmdir(arg);
    c.reply(Code.FileActionOk, 'Remove directory operation successful.');
  },
};

export const files = {
  MKD: mkd,
  XMKD: mkd,
  RMD: rmd,
  XRMD: rmd,
  DELE: {
    auth: true,
    arg: 'required',
    help: 'DELE <path>',
    async run(c, arg, s) {
      await s.remove(arg);
      c.reply(Code.FileActionOk, 'Delete operation successful.');
    },
  },
  RNFR: {
    auth: true,
    arg: 'required',
    help: 'RNFR <path>',
    async run(c, arg, s) {
      c.renameFrom = null;
      await s.stat(arg, false);
      c.renameFrom = s.absolute(arg);
      c.reply(Code.PendingInfo, 'Ready for RNTO.');
    },
  },
  RNTO: {
    auth: true,
    arg: 'required',
    help: 'RNTO <path>',
    async run(c, arg, s) {
      const from = c.renameFrom;
      c.renameFrom = null;
      if (from === null) return c.reply(Code.BadSequence, 'RNFR required first.');
      await s.rename(from, arg, 'replace');
      c.reply(Code.FileActionOk, 'Rename successful.');
    },
  },
  SIZE: {
    auth: true,
    arg: 'required',
    feat: 'SIZE',
    help: 'SIZE <path>',
    async run(c, arg, s) {
      const info = await s.stat(arg);
      if (info.type !== 'file') throw new SluiceError('not-found', 'Not a plain file');
      c.reply(Code.FileStatus, String(info.size));
    },
  },
  MDTM: {
    auth: true,
    arg: 'required',
    feat: 'MDTM',
    help: 'MDTM <path>',
    async run(c, arg, s) {
      const info = await s.stat(arg);
      c.reply(Code.FileStatus, timeVal(info.mtime));
    },
  },
  MFMT: {
    auth: true,
    arg: 'required',
    feat: 'MFMT',
    help: 'MFMT YYYYMMDDHHMMSS <path>',
    async run(c, arg, s) {
      const space = arg.indexOf(' ');
      const when = space > 0 ? parseTimeVal(arg.slice(0, space)) : null;
      if (!when) return c.reply(Code.ArgumentError, 'Usage: MFMT YYYYMMDDHHMMSS path.');
      const path = arg.slice(space + 1);
      const kept = await s.setTimes(path, when);
      c.reply(Code.FileStatus, `Modify=${timeVal(kept)}; ${s.resolve(path)}`);
    },
  },
} satisfies Record<string, CommandSpec>;
