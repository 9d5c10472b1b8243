import { SluiceError } from '../../session/errors.js';
import type { Session } from '../../session/session.js';
import type { FtpConnection } from '../connection.js';
import { parseTimeVal, timeVal } from '../facts.js';
import { Code } from '../replies.js';
import { quotePath } from './navigate.js';
import type { CommandSpec } from './spec.js';

const mkd: CommandSpec = {
  auth: true,
  arg: 'required',
  async run(c, arg, s) {
    const path = await s.mkdir(arg);
    c.reply(Code.PathCreated, `${quotePath(path)} created.`);
  },
};
const rmd: CommandSpec = {
  auth: true,
  arg: 'required',
  async run(c, arg, s) {
    await s.rmdir(arg);
    c.reply(Code.FileActionOk, 'Remove directory operation successful.');
  },
};

/** `SITE CHMOD 644 file`: mode in octal, under the chmod permission. */
export async function siteChmod(c: FtpConnection, args: string, s: Session): Promise<void> {
  const m = /^([0-7]{3,4})\s+(.+)$/.exec(args);
  if (!m) return c.reply(Code.ArgumentError, 'Usage: SITE CHMOD <octal mode> <path>.');
  await s.chmod(m[2] as string, parseInt(m[1] as string, 8));
  c.reply(Code.Ok, 'SITE CHMOD command ok.');
}

export const files = {
  MKD: mkd,
  XMKD: mkd,
  RMD: rmd,
  XRMD: rmd,
  DELE: {
    auth: true,
    arg: 'required',
    async run(c, arg, s) {
      await s.remove(arg);
      c.reply(Code.FileActionOk, 'Delete operation successful.');
    },
  },
  RNFR: {
    auth: true,
    arg: 'required',
    async run(c, arg, s) {
      c.renameFrom = null;
      await s.stat(arg, false);
      c.renameFrom = s.resolve(arg);
      c.reply(Code.PendingInfo, 'Ready for RNTO.');
    },
  },
  RNTO: {
    auth: true,
    arg: 'required',
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
    async run(c, arg, s) {
      const info = await s.stat(arg);
      if (info.type !== 'file') throw new SluiceError('not-found', 'Not a plain file');
      c.reply(Code.FileStatus, String(info.size));
    },
  },
  MDTM: {
    auth: true,
    arg: 'required',
    async run(c, arg, s) {
      const info = await s.stat(arg);
      c.reply(Code.FileStatus, timeVal(info.mtime));
    },
  },
  MFMT: {
    auth: true,
    arg: 'required',
    async run(c, arg, s) {
      const space = arg.indexOf(' ');
      const when = space > 0 ? parseTimeVal(arg.slice(0, space)) : null;
      if (!when) return c.reply(Code.ArgumentError, 'Usage: MFMT YYYYMMDDHHMMSS path.');
      const path = arg.slice(space + 1);
      await s.setTimes(path, when);
      c.reply(Code.FileStatus, `Modify=${timeVal(when)}; ${s.resolve(path)}`);
    },
  },
} satisfies Record<string, CommandSpec>;
