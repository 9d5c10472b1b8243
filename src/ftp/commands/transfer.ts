import { randomBytes } from 'node:crypto';
import { Readable, type Duplex } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { SluiceError } from '../../session/errors.js';
import type { FileInfo } from '../../session/file-info.js';
import { baseName, parentOf } from '../../session/paths.js';
import type { Session } from '../../session/session.js';
import type { Download, Upload } from '../../session/transfer.js';
import { fromNetworkAscii, toNetworkAscii } from '../ascii.js';
import type { FtpConnection } from '../connection.js';
import { DataChannelError, openDataStream } from '../data-channel/channel.js';
import { PassiveEndpoint } from '../data-channel/passive.js';
import { listLine, listable } from '../../listing/ls.js';
import { mlsxLine } from '../facts.js';
import { Code, errorReply } from '../replies.js';
import type { CommandSpec } from './spec.js';

/** 425 unless a data endpoint is set up and the protection level suits the policy. */
function dataReady(c: FtpConnection): boolean {
  if (!c.endpoint) {
    c.reply(Code.CantOpenData, 'Use PORT, PASV or EPSV first.');
    return false;
  }
  if (c.endpoint instanceof PassiveEndpoint && !c.endpoint.usable) {
    c.setEndpoint(null);
    c.reply(Code.CantOpenData, 'Data connection timed out; use PASV or EPSV again.');
    return false;
  }
  if (c.ctx.config.tls === 'required' && c.prot !== 'P') {
    c.reply(Code.PolicyRefused, 'Data connections must be encrypted: use PROT P.');
    return false;
  }
  return true;
}

/**
 * Run one data transfer in the background, so the control channel stays
 * readable (ABOR, STAT, NOOP). The caller has opened the file, so errors
 * come before 150; 150 goes out when the data channel is ready for it, and
 * 226 only after the data connection is flushed and closed.
 */
function runTransfer(
  c: FtpConnection,
  opening: string,
  transfer: Upload | Download | null,
  pump: (data: Duplex) => Promise<void>,
  cleanup?: () => Promise<void>,
): void {
  const endpoint = c.endpoint;
  c.endpoint = null;
  if (!endpoint) throw new Error('runTransfer without endpoint');
  let stream: Duplex | null = null;
  let aborted = false;
  const security = {
    tls: c.prot === 'P' ? c.tlsBinding : null,
    requireReuse: c.ctx.config.requireTlsSessionReuse,
    handshakeTimeoutMs: c.ctx.config.dataTimeout * 1000,
  };
  const done = (async () => {
    try {
      stream = await openDataStream(endpoint, security, () => c.reply(Code.FileStatusOk, opening));
      if (aborted) throw new Error('aborted');
      await pump(stream);
      await closeGracefully(stream, security.handshakeTimeoutMs);
      await transfer?.close();
      c.reply(Code.TransferComplete, 'Transfer complete.');
    } catch (err) {
      await finishFailed(c, transfer, err, aborted);
    } finally {
      (stream as Duplex | null)?.destroy();
      endpoint.close();
      await cleanup?.();
      c.transfer = null;
    }
  })();
  c.transfer = {
    done,
    bytes: () => transfer?.transferred ?? 0,
    abort() {
      aborted = true;
      (stream as Duplex | null)?.destroy();
      endpoint.close();
    },
  };
}

/**
 * End the data connection the way TLS expects: close_notify, then FIN, and
 * wait for the peer to close. An OpenSSL client that sees a TLS 1.3 connection
 * end without close_notify marks its session unresumable, and every later
 * data connection of that control connection would then fail the reuse check.
 */
async function closeGracefully(stream: Duplex, timeoutMs: number): Promise<void> {
  if (stream.destroyed) return;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      stream.destroy();
      resolve();
    }, timeoutMs);
    timer.unref();
    stream.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
    stream.on('error', () => undefined);
    // The peer may still send its own close_notify: read and drop whatever is left.
    stream.resume();
    stream.end();
  });
}

async function finishFailed(c: FtpConnection, transfer: Upload | Download | null, err: unknown, aborted: boolean): Promise<void> {
  if (aborted) {
    await transfer?.abort('aborted by client');
    return c.reply(Code.TransferAborted, 'Transfer aborted.');
  }
  if (err instanceof DataChannelError) {
    c.log.warn({ reason: err.reason, detail: err.message }, 'data connection failed');
    await transfer?.abort(`data connection: ${err.reason}`, 'failed');
    const text = err.reason === 'no-reuse'
      ? 'Data connection must resume the TLS session of the control connection.'
      : "Can't open data connection.";
    return c.reply(Code.CantOpenData, text);
  }
  if (err instanceof SluiceError) {
    await transfer?.abort(err.kind, 'failed');
    const r = errorReply(err);
    return c.reply(r.code, r.text);
  }
  c.log.info({ err: String(err) }, 'transfer interrupted');
  await transfer?.abort(`connection: ${(err as NodeJS.ErrnoException).code ?? 'closed'}`, 'failed');
  c.reply(Code.TransferAborted, 'Connection closed; transfer aborted.');
}

function openingText(c: FtpConnection): string {
  return `Opening ${c.ascii ? 'ASCII' : 'BINARY'} mode data connection.`;
}

async function store(c: FtpConnection, s: Session, path: string, mode: 'store' | 'append' | 'unique'): Promise<void> {
  if (!dataReady(c)) return;
  const offset = c.takeRestOffset();
  const where = mode === 'append' ? { append: true } : mode === 'unique' ? { exclusive: true } : { offset };
  const upload = await s.openWrite(path, { ...where, convertedLineEndings: c.ascii });
  runTransfer(c, mode === 'unique' ? `FILE: ${path}` : openingText(c), upload, (data) =>
    c.ascii ? pipeline(data, fromNetworkAscii(), upload.writable()) : pipeline(data, upload.writable()),
  );
}

/** LIST/NLST options (`-la`) come before the path; everything after them is the path, verbatim. */
export function splitListArgs(arg: string): { flags: string; path: string } {
  let rest = arg;
  let flags = '';
  for (;;) {
    const m = /^(-[A-Za-z1]+)(?:\s+|$)/.exec(rest);
    if (!m) break;
    flags += (m[1] as string).slice(1);
    rest = rest.slice(m[0].length);
  }
  return { flags, path: rest === '' ? '.' : rest };
}

/** Entries to list for a path: the directory's entries, or the file itself. */
export async function entries(s: Session, path: string): Promise<Entries> {
  const info = await s.stat(path);
  if (info.type !== 'dir') return (async function* () { yield { ...info, name: baseName(s.resolve(path)) }; })();
  return s.list(path);
}

type Entries = AsyncIterable<FileInfo> & { close?(): Promise<void> };

function sendLines(c: FtpConnection, source: Entries, format: (f: FileInfo) => string): void {
  runTransfer(c, 'Here comes the directory listing.', null, (data) =>
    pipeline(
      Readable.from((async function* () {
        for await (const f of source) if (listable(f.name)) yield format(f) + '\r\n';
      })()),
      data,
    ),
    () => source.close?.() ?? Promise.resolve(),
  );
}

export const transfer = {
  RETR: {
    auth: true,
    arg: 'required',
    async run(c, arg, s) {
      if (!dataReady(c)) return;
      const download = await s.openRead(arg, { offset: c.takeRestOffset(), convertedLineEndings: c.ascii });
      runTransfer(c, openingText(c), download, (data) =>
        c.ascii ? pipeline(download.readable(), toNetworkAscii(), data) : pipeline(download.readable(), data),
      );
    },
  },
  STOR: { auth: true, arg: 'required', run: (c, arg, s) => store(c, s, arg, 'store') },
  APPE: { auth: true, arg: 'required', run: (c, arg, s) => store(c, s, arg, 'append') },
  STOU: {
    auth: true,
    arg: 'optional',
    run: (c, _arg, s) => store(c, s, `stou-${randomBytes(6).toString('hex')}`, 'unique'),
  },
  REST: {
    auth: true,
    arg: 'required',
    run(c, arg) {
      if (!/^\d{1,15}$/.test(arg.trim())) return c.reply(Code.ArgumentError, 'REST needs a byte offset.');
      c.restOffset = Number(arg.trim());
      c.reply(Code.PendingInfo, `Restart position accepted (${c.restOffset}).`);
    },
  },
  ABOR: {
    auth: true,
    arg: 'none',
    duringTransfer: true,
    async run(c) {
      const running = c.transfer;
      if (!running) {
        c.setEndpoint(null);
        return c.reply(Code.TransferComplete, 'No transfer to abort.');
      }
      running.abort();
      await running.done;
      c.reply(Code.TransferComplete, 'ABOR successful.');
    },
  },
  LIST: {
    auth: true,
    arg: 'optional',
    async run(c, arg, s) {
      if (!dataReady(c)) return;
      const now = new Date();
      sendLines(c, await entries(s, splitListArgs(arg).path), (f) => listLine(f, now));
    },
  },
  NLST: {
    auth: true,
    arg: 'optional',
    async run(c, arg, s) {
      if (!dataReady(c)) return;
      sendLines(c, await entries(s, splitListArgs(arg).path), (f) => f.name);
    },
  },
  MLSD: {
    auth: true,
    arg: 'optional',
    async run(c, arg, s) {
      if (!dataReady(c)) return;
      const path = arg === '' ? '.' : arg;
      const info = await s.stat(path);
      if (info.type !== 'dir') return c.reply(Code.ArgumentError, 'Not a directory.');
      const dir = s.resolve(path);
      const listing = await s.list(path);
      const here = s.permissionsIn(dir);
      sendLines(c, listing, (f) => mlsxLine(f, f.type === 'dir' ? s.permissionsIn(`${dir === '/' ? '' : dir}/${f.name}`) : here));
    },
  },
  MLST: {
    auth: true,
    arg: 'optional',
    async run(c, arg, s) {
      const path = s.resolve(arg === '' ? '.' : arg);
      const info = await s.stat(path);
      const perms = s.permissionsIn(info.type === 'dir' ? path : parentOf(path));
      c.reply(Code.FileActionOk, `Listing ${path}`, ' ' + mlsxLine(info, perms, path), 'End.');
    },
  },
} satisfies Record<string, CommandSpec>;
