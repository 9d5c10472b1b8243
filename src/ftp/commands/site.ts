import type { Session } from '../../session/session.js';
import type { CommandSpec, FtpControl } from '../control.js';
import { Code } from '../replies.js';

interface SiteCommand {
  readonly help: string;
  run(c: FtpControl, args: string, s: Session): Promise<void> | void;
}

/** SITE subcommands; SITE HELP lists this table. */
const SITE: Readonly<Record<string, SiteCommand>> = {
  CHMOD: {
    help: 'SITE CHMOD <octal mode> <path>',
    async run(c, args, s) {
      const m = /^([0-7]{3,4})\s+(.+)$/.exec(args);
      if (!m) return c.reply(Code.ArgumentError, 'Usage: SITE CHMOD <octal mode> <path>.');
      await s.chmod(m[2] as string, parseInt(m[1] as string, 8));
      c.reply(Code.Ok, 'SITE CHMOD command ok.');
    },
  },
  HELP: {
    help: 'SITE HELP',
    run: (c) => c.reply(Code.Help, `SITE commands: ${Object.keys(SITE).join(' ')}`, 'End.'),
  },
};

export const site = {
  SITE: {
    auth: true,
    arg: 'required',
    help: 'SITE <command> [arguments]; SITE HELP lists them',
    async run(c, arg, s) {
      const space = arg.indexOf(' ');
      const sub = (space < 0 ? arg : arg.slice(0, space)).toUpperCase();
      const rest = space < 0 ? '' : arg.slice(space + 1);
      const command = Object.hasOwn(SITE, sub) ? SITE[sub] : undefined;
      if (!command) return c.reply(Code.SyntaxError, 'Unknown SITE command.');
      await command.run(c, rest, s);
    },
  },
} satisfies Record<string, CommandSpec>;
