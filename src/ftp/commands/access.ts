import { AuthError } from '../../auth/authenticator.js';
import { SluiceError } from '../../session/errors.js';
import { Session } from '../../session/session.js';
import type { CommandSpec, FtpControl } from '../control.js';
import { Code } from '../replies.js';

function tlsRequired(c: FtpControl): boolean {
  return c.ctx.config.tls === 'required' && !c.secure;
}

export const access = {
  USER: {
    auth: false,
    arg: 'required',
    help: 'USER <name>',
    run(c, arg) {
      if (c.session) return c.reply(Code.NotLoggedIn, 'Already logged in.');
      if (tlsRequired(c)) return c.reply(Code.NotLoggedIn, 'TLS required: use AUTH TLS (explicit FTPS) before logging in.');
      c.userName = arg;
      c.reply(Code.NeedPassword, 'Please specify the password.');
    },
  },
  PASS: {
    auth: false,
    arg: 'optional',
    help: 'PASS <password>',
    async run(c, arg) {
      if (c.session) return c.reply(Code.LoggedIn, 'Already logged in.');
      if (tlsRequired(c)) return c.reply(Code.NotLoggedIn, 'TLS required: use AUTH TLS (explicit FTPS) before logging in.');
      const username = c.userName;
      if (username === null) return c.reply(Code.BadSequence, 'Login with USER first.');
      c.userName = null;
      const request = {
        username,
        protocol: c.protocol,
        remoteAddress: c.remoteAddress,
        remotePort: c.remotePort,
        connection: c.id,
      };
      try {
        const account = await c.guest.password(request, arg);
        const where = { id: c.id, protocol: c.protocol, remoteAddress: c.remoteAddress, remotePort: c.remotePort, source: c.guest.source };
        const connection = { end: (reason: string, afterReply: boolean) => c.endByServer(reason, afterReply) };
        const session = await c.guest.enter(account.name, () => Session.open(account, where, c.ctx.sessionDeps, connection));
        // The client left while its session opened: the connection's close has passed (found by a review).
        if (c.isClosed) return void (await session.close());
        c.session = session;
        c.log.info({ user: account.name }, 'login');
        c.reply(Code.LoggedIn, 'Login successful.');
      } catch (err) {
        // The user changed while its password was verified, and may not open a session now (Session.open):
        // a refused login, not a refused file operation.
        if (err instanceof SluiceError && err.kind === 'permission-denied') return c.reply(Code.NotLoggedIn, 'Login incorrect.');
        if (!(err instanceof AuthError)) throw err;
        c.log.info({ user: username.slice(0, 64), reason: err.reason }, 'login failed');
        // The user's limit, or anonymous FTP's share per address: one text for both (found by an operator's review).
        if (err.reason === 'session-limit') return c.reply(Code.NotLoggedIn, 'Too many sessions; try again later.');
        if (c.guest.exhausted) return c.closeAfterReply(Code.ServiceUnavailable, 'Too many failed logins.');
        c.reply(Code.NotLoggedIn, 'Login incorrect.');
      }
    },
  },
  ACCT: { auth: false, arg: 'optional', help: 'ACCT (not needed)', run: (c) => c.reply(Code.NotNeeded, 'ACCT not needed.') },
  REIN: {
    auth: false,
    arg: 'none',
    help: 'REIN',
    async run(c) {
      await c.logout();
      c.reply(Code.Ready, 'Ready for a new user.');
    },
  },
  QUIT: {
    auth: false,
    arg: 'optional',
    duringTransfer: true,
    help: 'QUIT',
    async run(c) {
      // Read on meanwhile: an ABOR behind the QUIT aborts the transfer rather than wait for its end (found by a review).
      await c.transferEnded();
      await c.closeAfterReply(Code.Closing, 'Goodbye.');
    },
  },
  AUTH: {
    auth: false,
    arg: 'required',
    feat: 'AUTH TLS',
    help: 'AUTH TLS',
    async run(c, arg) {
      if (c.secure) return c.reply(Code.BadSequence, 'Already using TLS.');
      if (!/^(TLS|SSL|TLS-C|TLS-P)$/i.test(arg.trim())) return c.reply(Code.ParameterNotImplemented, 'AUTH TLS only.');
      await c.upgradeToTls();
    },
  },
  PBSZ: {
    auth: false,
    arg: 'required',
    feat: 'PBSZ',
    help: 'PBSZ 0',
    run(c) {
      if (!c.secure) return c.reply(Code.BadSequence, 'PBSZ needs a TLS connection.');
      c.pbsz = true;
      c.reply(Code.Ok, 'PBSZ=0');
    },
  },
  PROT: {
    auth: false,
    arg: 'required',
    feat: 'PROT',
    help: 'PROT C|P',
    run(c, arg) {
      if (!c.secure) return c.reply(Code.BadSequence, 'PROT needs a TLS connection.');
      if (!c.pbsz && !c.implicitTls) return c.reply(Code.BadSequence, 'PBSZ first.');
      const level = arg.trim().toUpperCase();
      if (level === 'P' || level === 'C') {
        if (level === 'C' && c.ctx.config.tls === 'required') {
          return c.reply(Code.ProtectionRefused, 'Data connections must be encrypted.');
        }
        c.prot = level;
        return c.reply(Code.Ok, `Protection level set to ${level}.`);
      }
      if (level === 'S' || level === 'E') return c.reply(Code.ProtectionRefused, 'Only PROT C and P are supported.');
      c.reply(Code.ParameterNotImplemented, 'Unknown protection level.');
    },
  },
  CCC: { auth: false, arg: 'none', help: 'CCC (refused)', run: (c) => c.reply(Code.ProtectionRefused, 'CCC refused: the control connection stays encrypted.') },
  HOST: {
    auth: false,
    arg: 'required',
    feat: 'HOST',
    help: 'HOST <name>',
    run(c) {
      if (c.session || c.userName !== null) return c.reply(Code.BadSequence, 'HOST must come before USER.');
      c.reply(Code.Ready, 'Host accepted.');
    },
  },
} satisfies Record<string, CommandSpec>;
