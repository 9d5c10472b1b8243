import type { FtpConnection } from '../connection.js';
import { listLine, listable } from '../../listing/ls.js';
import { Code } from '../replies.js';
import { siteChmod } from './files.js';
import type { CommandSpec } from './spec.js';
import { entries, splitListArgs } from './transfer.js';

/** FEAT lines (RFC 2389); each names an extension this server implements. */
export const FEATURES = [
  'AUTH TLS',
  'PBSZ',
  'PROT',
  'EPRT',
  'EPSV',
  'HOST',
  'MDTM',
  'MFMT',
  'MLST type*;size*;modify*;perm*;unique*;unix.mode*;',
  'REST STREAM',
  'SIZE',
  'TVFS',
  'UTF8',
];

function statusLines(c: FtpConnection): string[] {
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
  SYST: { auth: false, arg: 'none', run: (c) => c.reply(Code.SystemType, 'UNIX Type: L8') },
  NOOP: { auth: false, arg: 'optional', duringTransfer: true, run: (c) => c.reply(Code.Ok, 'NOOP ok.') },
  CLNT: { auth: false, arg: 'optional', run: (c) => c.reply(Code.Ok, 'Noted.') },
  FEAT: {
    auth: false,
    arg: 'none',
    run: (c) => c.reply(Code.SystemStatus, 'Features:', ...FEATURES.map((f) => ` ${f}`), 'End'),
  },
  HELP: {
    auth: false,
    arg: 'optional',
    run: (c) =>
      c.reply(
        Code.Help,
        'The following commands are recognized.',
        ' ABOR ACCT ALLO APPE AUTH CCC CDUP CLNT CWD DELE EPRT EPSV FEAT HELP HOST LIST MDTM MFMT MKD MLSD',
        ' MLST MODE NLST NOOP OPTS PASS PASV PBSZ PORT PROT PWD QUIT REIN REST RETR RMD RNFR RNTO SITE SIZE',
        ' STAT STOR STOU STRU SYST TYPE USER XCUP XCWD XMKD XPWD XRMD',
        'Help OK.',
      ),
  },
  OPTS: {
    auth: false,
    arg: 'required',
    run(c, arg) {
      const [option = '', ...rest] = arg.trim().split(/\s+/);
      const value = rest.join(' ');
      switch (option.toUpperCase()) {
        case 'UTF8':
        case 'UTF-8':
          if (value === '' || value.toUpperCase() === 'ON') return c.reply(Code.Ok, 'Always in UTF8 mode.');
          return c.reply(Code.ArgumentError, 'UTF8 cannot be turned off.');
        case 'MLST':
          return c.reply(Code.Ok, 'MLST OPTS type;size;modify;perm;unique;unix.mode;');
        default:
          return c.reply(Code.ArgumentError, 'Option not understood.');
      }
    },
  },
  TYPE: {
    auth: true,
    arg: 'required',
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
    run: (c, arg) => (arg.trim().toUpperCase() === 'S' ? c.reply(Code.Ok, 'Mode set to S.') : c.reply(Code.ParameterNotImplemented, 'Bad MODE command.')),
  },
  STRU: {
    auth: true,
    arg: 'required',
    run: (c, arg) => (arg.trim().toUpperCase() === 'F' ? c.reply(Code.Ok, 'Structure set to F.') : c.reply(Code.ParameterNotImplemented, 'Bad STRU command.')),
  },
  ALLO: { auth: true, arg: 'optional', run: (c) => c.reply(Code.NotNeeded, 'ALLO command ignored.') },
  STAT: {
    auth: true,
    arg: 'optional',
    duringTransfer: true,
    async run(c, arg, s) {
      if (arg.trim() === '') return c.reply(Code.SystemStatus, ...statusLines(c));
      const { path } = splitListArgs(arg);
      const now = new Date();
      const lines = [`Status of ${s.resolve(path)}:`];
      for await (const f of await entries(s, path)) if (listable(f.name)) lines.push(listLine(f, now));
      lines.push('End of status.');
      c.reply(Code.FileStatus, ...lines);
    },
  },
  SITE: {
    auth: true,
    arg: 'required',
    async run(c, arg, s) {
      const space = arg.indexOf(' ');
      const sub = (space < 0 ? arg : arg.slice(0, space)).toUpperCase();
      const rest = space < 0 ? '' : arg.slice(space + 1);
      if (sub === 'CHMOD') return siteChmod(c, rest, s);
      if (sub === 'HELP') return c.reply(Code.Help, 'SITE commands: CHMOD HELP', 'End.');
      c.reply(Code.SyntaxError, 'Unknown SITE command.');
    },
  },
} satisfies Record<string, CommandSpec>;
