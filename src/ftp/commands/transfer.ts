import { randomBytes } from 'node:crypto';
import type { Session } from '../../session/session.js';
import { fromNetworkAscii, toNetworkAscii } from '../ascii.js';
import type { CommandSpec, FtpControl } from '../control.js';
import { PassiveEndpoint } from '../data-channel/passive.js';
import { pump } from '../data-channel/pump.js';
import { receive } from '../data-channel/receive.js';
import { runTransfer, startDataCommand } from '../data-channel/runner.js';
import { Code } from '../replies.js';

function openingText(c: FtpControl): string {
  return `Opening ${c.ascii ? 'ASCII' : 'BINARY'} mode data connection.`;
}

async function store(c: FtpControl, s: Session, path: string, mode: 'store' | 'append' | 'unique'): Promise<void> {
  const offset = startDataCommand(c);
  if (offset === null) return;
  const where = mode === 'append' ? { append: true } : mode === 'unique' ? { exclusive: true } : { offset };
  const upload = await s.openWrite(path, { ...where, convertedLineEndings: c.ascii });
  runTransfer(c, mode === 'unique' ? `FILE: ${path}` : openingText(c), upload, (data) =>
    c.ascii ? receive(data, fromNetworkAscii(), upload.writable()) : receive(data, upload.writable()),
  );
}

export const transfer = {
  RETR: {
    auth: true,
    data: true,
    arg: 'required',
    help: 'RETR <path>',
    async run(c, arg, s) {
      const offset = startDataCommand(c);
      if (offset === null) return;
      const download = await s.openRead(arg, { offset, convertedLineEndings: c.ascii });
      // Only onto a connection already in: a read ahead for one that may never come would hold its buffer
      // until the timeout. Not under TLS: a file sent at once there often met curl closing the data
      // connection on the last byte before our close_notify had gone, and ended as 426 (behind HAProxy,
      // one download in two); the read's wait keeps that window as narrow as before.
      if (c.prot !== 'P' && c.endpoint instanceof PassiveEndpoint && c.endpoint.connected) download.readAhead();
      runTransfer(c, openingText(c), download, (data) =>
        c.ascii ? pump(download.readable(), toNetworkAscii(), data) : pump(download.readable(), data),
      );
    },
  },
  STOR: { auth: true, data: true, arg: 'required', help: 'STOR <path>', run: (c, arg, s) => store(c, s, arg, 'store') },
  APPE: { auth: true, data: true, arg: 'required', help: 'APPE <path>', run: (c, arg, s) => store(c, s, arg, 'append') },
  STOU: {
    auth: true,
    data: true,
    arg: 'optional',
    help: 'STOU (stores under a new unique name)',
    run: (c, _arg, s) => store(c, s, `stou-${randomBytes(6).toString('hex')}`, 'unique'),
  },
  REST: {
    auth: true,
    arg: 'required',
    feat: 'REST STREAM',
    help: 'REST <byte offset>',
    run(c, arg) {
      if (!/^\d{1,15}$/.test(arg.trim())) {
        c.restOffset = 0;
        return c.reply(Code.ArgumentError, 'REST needs a byte offset.');
      }
      c.restOffset = Number(arg.trim());
      c.reply(Code.PendingInfo, `Restart position accepted (${c.restOffset}).`);
    },
  },
  ABOR: {
    auth: true,
    arg: 'none',
    help: 'ABOR',
    duringTransfer: true,
    async run(c) {
      const running = c.transfer;
      if (!running) {
        c.setEndpoint(null);
        return c.reply(Code.TransferComplete, 'No transfer to abort.');
      }
      await c.abortTransfer(running);
    },
  },
} satisfies Record<string, CommandSpec>;
