import { Code } from '../replies.js';
import type { CommandSpec } from '../control.js';

/** RFC 959: a quote inside a quoted path name is doubled. */
export function quotePath(path: string): string {
  return `"${path.replace(/"/g, '""')}"`;
}

const pwd: CommandSpec = {
  auth: true,
  arg: 'none',
  help: 'PWD',
  run: (c, _arg, s) => c.reply(Code.PathCreated, `${quotePath(s.cwd)} is the current directory.`),
};
const cwd: CommandSpec = {
  auth: true,
  arg: 'required',
  // Paths are one tree with `/` separators (RFC 3659 6).
  feat: 'TVFS',
  help: 'CWD <directory>',
  async run(c, arg, s) {
    await s.chdir(arg);
    c.reply(Code.FileActionOk, 'Directory successfully changed.');
  },
};
const cdup: CommandSpec = {
  auth: true,
  arg: 'none',
  help: 'CDUP',
  async run(c, _arg, s) {
    await s.chdir('..');
    c.reply(Code.FileActionOk, 'Directory successfully changed.');
  },
};

export const navigate = { PWD: pwd, XPWD: pwd, CWD: cwd, XCWD: cwd, CDUP: cdup, XCUP: cdup } satisfies Record<string, CommandSpec>;
