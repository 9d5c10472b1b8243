import type { CommandSpec, FtpControl } from '../control.js';
import { factList, selectFacts } from '../facts.js';
import { entries, splitListArgs, statLines } from '../listing.js';
import { Code } from '../replies.js';

/** FEAT lines (RFC 2389), each from the command that implements the extension: none without its command. */
function featureLines(c: FtpControl): string[] {
  const lines = new Set<string>();
  for (const spec of Object.values(c.commands)) {
    if (spec.feat !== undefined) lines.add(typeof spec.feat === 'string' ? spec.feat : spec.feat(c));
  }
  return [...lines].sort();
}

/** The verbs for HELP, a dozen to a line. */
function verbLines(c: FtpControl): string[] {
  const verbs = Object.keys(c.commands).sort();
  const lines: string[] = [];
  for (let i = 0; i < verbs.length; i += 12) lines.push(' ' + verbs.slice(i, i + 12).join(' '));
  return lines;
}

function statusLines(c: FtpControl): string[] {
  const lines = ['FTP server status:', ` Connected to ${c.remoteAddress}`];
  lines.push(c.session ? ` Logged in as ${c.session.account.name}` : ' Not logged in');
  lines.push(` TYPE: ${c.ascii ? 'ASCII' : 'BINARY'}`);
  lines.push(` Control connection: ${c.secure ? 'TLS' : 'plain text'}; data connections: ${c.prot === 'P' ? 'TLS' : 'plain text'}`);
  lines.push(` Session timeout in seconds is ${c.ctx.config.idleTimeout}`);
  if (c.transfer) lines.push(` Transfer in progress: ${c.transfer.bytes()} bytes so far`);
  lines.push('End of status.');
  return lines;
}

export const info = {
  SYST: { auth: false, arg: 'none', help: 'SYST', run: (c) => c.reply(Code.SystemType, 'UNIX Type: L8') },
  NOOP: { auth: false, arg: 'optional', duringTransfer: true, help: 'NOOP', run: (c) => c.reply(Code.Ok, 'NOOP ok.') },
  CLNT: { auth: false, arg: 'optional', help: 'CLNT <client name>', run: (c) => c.reply(Code.Ok, 'Noted.') },
  FEAT: {
    auth: false,
    arg: 'none',
    help: 'FEAT',
    run: (c) => c.reply(Code.SystemStatus, 'Features:', ...featureLines(c).map((f) => ` ${f}`), 'End'),
  },
  HELP: {
    auth: false,
    arg: 'optional',
    help: 'HELP [verb]',
    run(c, arg) {
      const verb = arg.trim().toUpperCase();
      if (verb === '') return c.reply(Code.Help, 'The following commands are recognized.', ...verbLines(c), 'Help OK.');
      const spec = Object.hasOwn(c.commands, verb) ? c.commands[verb] : undefined;
      if (!spec) return c.reply(Code.NotImplemented, 'Unknown command.');
      c.reply(Code.Help, `Syntax: ${spec.help}`);
    },
  },
  OPTS: {
    auth: false,
    arg: 'required',
    // OPTS UTF8 is what RFC 2640's UTF8 feature promises; paths are UTF-8 always.
    feat: 'UTF8',
    help: 'OPTS UTF8 ON | OPTS MLST fact;fact;... | OPTS HASH [SHA-256]',
    run(c, arg) {
      const [option = '', ...rest] = arg.trim().split(/\s+/);
      const value = rest.join(' ');
      switch (option.toUpperCase()) {
        case 'UTF8':
        case 'UTF-8':
          if (value === '' || value.toUpperCase() === 'ON') return c.reply(Code.Ok, 'Always in UTF8 mode.');
          return c.reply(Code.ArgumentError, 'UTF8 cannot be turned off.');
        case 'HASH':
          // draft-bryan-ftpext-hash: no argument asks which is selected; SHA-256 is the only one there is.
          if (value === '' || value.toUpperCase() === 'SHA-256') return c.reply(Code.Ok, 'SHA-256');
          return c.reply(Code.ParameterNotImplemented, 'Only SHA-256 is supported.');
        case 'MLST':
          c.mlstFacts = selectFacts(value);
          return c.reply(Code.Ok, `MLST OPTS ${factList(c.mlstFacts, false)}`.trimEnd());
        default:
          return c.reply(Code.ArgumentError, 'Option not understood.');
      }
    },
  },
  TYPE: {
    auth: true,
    arg: 'required',
    help: 'TYPE A|I',
    run(c, arg) {
      const t = arg.trim().toUpperCase().replace(/\s+/g, ' ');
      if (t === 'A' || t === 'A N') {
        c.ascii = true;
        return c.reply(Code.Ok, 'Switching to ASCII mode.');
      }
      if (t === 'I' || t === 'L 8') {
        c.ascii = false;
        return c.reply(Code.Ok, 'Switching to Binary mode.');
      }
      c.reply(Code.ParameterNotImplemented, 'Unrecognised TYPE command.');
    },
  },
  MODE: {
    auth: true,
    arg: 'required',
    help: 'MODE S',
    run: (c, arg) => (arg.trim().toUpperCase() === 'S' ? c.reply(Code.Ok, 'Mode set to S.') : c.reply(Code.ParameterNotImplemented, 'Bad MODE command.')),
  },
  STRU: {
    auth: true,
    arg: 'required',
    help: 'STRU F',
    run: (c, arg) => (arg.trim().toUpperCase() === 'F' ? c.reply(Code.Ok, 'Structure set to F.') : c.reply(Code.ParameterNotImplemented, 'Bad STRU command.')),
  },
  ALLO: { auth: true, arg: 'optional', help: 'ALLO (ignored)', run: (c) => c.reply(Code.NotNeeded, 'ALLO command ignored.') },
  STAT: {
    auth: true,
    arg: 'optional',
    duringTransfer: true,
    help: 'STAT [path]',
    async run(c, arg, s) {
      if (arg.trim() === '') return c.reply(Code.SystemStatus, ...statusLines(c));
      const { path } = splitListArgs(arg);
      await c.streamReply(Code.FileStatus, statLines(s.resolve(path || '.'), await entries(s, path)));
    },
  },
} satisfies Record<string, CommandSpec>;
