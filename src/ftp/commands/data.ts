import { isIP } from 'node:net';
import type { Session } from '../../session/session.js';
import type { CommandSpec, FtpControl } from '../control.js';
import { activeTargetRefusal, parseEprtArg, parsePortArg, pasvText, type HostPort } from '../data-channel/address.js';
import { ActiveEndpoint } from '../data-channel/active.js';
import { PassiveAbandoned, PassiveEndpoint } from '../data-channel/passive.js';
import { Code } from '../replies.js';

function passiveRange(c: FtpControl): [number, number] {
  const [lo = 0, hi = 0] = c.ctx.config.passivePorts.split('-').map(Number);
  return [lo, hi];
}

/**
 * A new PASV/EPSV/PORT/EPRT replaces the previous endpoint: one data channel
 * per session. A passive listener also needs the session's place among its
 * address's and its user's passive ports (PassivePlace).
 */
async function openPassive(c: FtpControl, s: Session): Promise<PassiveEndpoint | null> {
  c.setEndpoint(null);
  const place = await c.passivePlace.take(c.guest.source, s.account.name);
  // The connection closed while the coordinator answered: its close gave the place back.
  if (place === null) return null;
  if (typeof place === 'string') {
    c.refusals.warn({ per: place }, 'passive port share used up');
    c.reply(Code.CantOpenData, `Too many passive ports open for this ${place}; try again later.`);
    return null;
  }
  let foreign = 0;
  let counted = false;
  try {
    const endpoint = await PassiveEndpoint.open({
      host: c.localAddress,
      range: passiveRange(c),
      peer: c.remoteAddress,
      origin: (socket) => c.guest.dataOrigin(socket),
      timeoutMs: c.ctx.config.dataTimeout * 1000,
      tls: c.prot === 'P'
        ? { binding: c.tlsBinding, mustResume: c.ctx.config.requireTlsSessionReuse, timeoutMs: c.ctx.config.dataTimeout * 1000, closing: c.closingData }
        : null,
      onForeignPeer: (address) => {
        // One line per port, and a count when it closes: a scan of the passive range wrote a line per connect.
        // Among the connection's refusals: found by an adversarial review, a client that sent a connection from
        // a second address of its own to each passive port it asked for wrote a warn line per EPSV (1,000 a second).
        if (foreign++ === 0) c.refusals.warn({ from: address }, 'passive data connection from a foreign address refused');
      },
      onStopListening: () => {
        place.end();
        // Said once (this may be called again), with what was refused by then.
        if (foreign > 1 && !counted) c.refusals.warn({ refused: foreign }, 'passive data connections from foreign addresses refused on this port');
        counted = true;
      },
      abandoned: () => c.isClosed,
    });
    c.setEndpoint(endpoint);
    return endpoint;
  } catch (err) {
    place.end();
    if (err instanceof PassiveAbandoned) return null;
    c.refusals.warn({ err: String(err) }, 'no passive port');
    c.reply(Code.CantOpenData, 'No passive port available; try again later.');
    return null;
  }
}

function setActive(c: FtpControl, target: HostPort | null): void {
  if (!c.ctx.config.activeMode) return c.reply(Code.NotImplemented, 'Active mode is disabled; use PASV or EPSV.');
  if (c.epsvAll) return c.reply(Code.BadSequence, 'EPSV ALL in effect.');
  if (!target) return c.reply(Code.ArgumentError, 'Illegal PORT command.');
  const refusal = activeTargetRefusal(target, c.remoteAddress);
  if (refusal) {
    c.refusals.warn({ target: `${target.host}:${target.port}`, refusal }, 'active data target refused');
    return c.reply(Code.SyntaxError, 'Illegal PORT command.');
  }
  c.setEndpoint(new ActiveEndpoint(target.host, target.port, c.localAddress, c.ctx.config.dataTimeout * 1000));
  // Its passive port closed: the place it kept for the next one goes back now, not after the linger.
  c.passivePlace.giveBack();
  c.reply(Code.Ok, 'PORT command successful. Consider using PASV.');
}

export const data = {
  PASV: {
    auth: true,
    arg: 'none',
    help: 'PASV',
    async run(c, _arg, s) {
      if (c.epsvAll) return c.reply(Code.BadSequence, 'EPSV ALL in effect.');
      const announce = c.ctx.config.passiveAddress || c.localAddress;
      if (isIP(announce) !== 4) return c.reply(Code.CantOpenData, 'PASV is IPv4 only; use EPSV.');
      const endpoint = await openPassive(c, s);
      if (endpoint) c.reply(Code.EnteringPassive, `Entering Passive Mode (${pasvText(announce, endpoint.port)}).`);
    },
  },
  EPSV: {
    auth: true,
    arg: 'optional',
    feat: 'EPSV',
    help: 'EPSV [1|2|ALL]',
    async run(c, arg, s) {
      const param = arg.trim().toUpperCase();
      if (param === 'ALL') {
        c.epsvAll = true;
        return c.reply(Code.Ok, 'EPSV ALL ok.');
      }
      const family = isIP(c.localAddress) === 6 ? '2' : '1';
      if (param !== '' && param !== family) return c.reply(Code.PolicyRefused, `Network protocol not supported, use (${family}).`);
      const endpoint = await openPassive(c, s);
      if (endpoint) c.reply(Code.EnteringExtendedPassive, `Entering Extended Passive Mode (|||${endpoint.port}|).`);
    },
  },
  PORT: { auth: true, arg: 'required', help: 'PORT h1,h2,h3,h4,p1,p2', run: (c, arg) => setActive(c, parsePortArg(arg)) },
  EPRT: { auth: true, arg: 'required', feat: 'EPRT', help: 'EPRT |af|address|port|', run: (c, arg) => setActive(c, parseEprtArg(arg)) },
} satisfies Record<string, CommandSpec>;
