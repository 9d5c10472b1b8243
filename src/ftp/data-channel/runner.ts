import type { Duplex } from 'node:stream';
import { SluiceError } from '../../session/errors.js';
import { Download, Upload } from '../../session/transfer.js';
import type { FtpControl } from '../control.js';
import { Code, errorReply } from '../replies.js';
import { NoCloseNotifyError } from '../tls-close-notify.js';
import { DataChannelError, openDataStream } from './channel.js';
import { PassiveEndpoint } from './passive.js';
import { drainRefused } from './receive.js';

/** How long a refused upload's client may go on sending before its data connection is closed. */
const REFUSED_DRAIN_MS = 5000;

/**
 * Where every data command (a transfer or a listing) begins: the REST
 * offset is taken, for this command whatever happens next, and the data
 * endpoint checked. The offset when the command may go on (0 without a
 * REST); null once refused with 425 or 521. Taken before the checks, as
 * vsftpd does: found by a review, an offset left behind by a RETR refused for
 * want of PASV made a later STOR write over the old file from that byte on.
 */
export function startDataCommand(c: FtpControl): number | null {
  const offset = c.takeRestOffset();
  return dataReady(c) ? offset : null;
}

/** 425 unless a data endpoint is set up and the protection level suits the policy. */
function dataReady(c: FtpControl): boolean {
  if (!c.endpoint) {
    c.reply(Code.CantOpenData, 'Use PORT, PASV or EPSV first.');
    return false;
  }
  if (c.endpoint instanceof PassiveEndpoint && !c.endpoint.usable) {
    c.setEndpoint(null);
    c.reply(Code.CantOpenData, 'Data connection timed out; use PASV or EPSV again.');
    return false;
  }
  // A user made with --require-tls moves files only under TLS, on a server that lets others use plain FTP
  // too: the login alone was guarded, and a client that never sent PROT P (or sent PROT C) after AUTH TLS
  // had its files carried in clear (found by a review).
  if (c.prot !== 'P' && (c.ctx.config.tls === 'required' || c.session?.account.requireTls === true)) {
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
export function runTransfer(
  c: FtpControl,
  opening: string,
  transfer: Upload | Download | null,
  pump: (data: Duplex) => Promise<void>,
  cleanup?: () => Promise<void>,
): void {
  const endpoint = c.endpoint;
  c.endpoint = null;
  if (!endpoint) {
    // The control connection closed while the command opened its file or directory (its close drops the
    // endpoint): there is nobody to answer, and the session's end closes what was opened.
    if (c.isClosed) return;
    throw new Error('runTransfer without endpoint');
  }
  let stream: Duplex | null = null;
  /** The data connection is open and bytes flow: what an idle look may judge (ActiveTransfer.moved). */
  let flowing = false;
  let aborted = false;
  let draining: Promise<void> | null = null;
  const security = {
    tls: c.prot === 'P' ? c.tlsBinding : null,
    requireReuse: c.ctx.config.requireTlsSessionReuse,
    needCloseNotify: c.ctx.config.requireTlsCloseNotify,
    handshakeTimeoutMs: c.ctx.config.dataTimeout * 1000,
  };
  const done = (async () => {
    try {
      stream = await openDataStream(endpoint, security, transfer instanceof Upload, () => c.reply(Code.FileStatusOk, opening));
      if (aborted) throw new Error('aborted');
      flowing = true;
      await pump(stream);
      flowing = false;
      if (transfer instanceof Download) {
        // The last byte left the server, not yet the client's socket buffer: a download is complete
        // only once its connection closed well (see closeGracefully), and is recorded after that.
        await closeGracefully(stream, security.handshakeTimeoutMs, security.tls === null, true);
        // ABOR while the server waited for that close: the client had not read to the end (it closes when it has).
        if (aborted) throw new Error('aborted');
        // Its connection closed as after a whole file: only the reply tells the client it got less (found by a review:
        // a file emptied by another session mid-download was 226, recorded ok).
        if (transfer.shortBy > 0) {
          // The failure's own abort below finds it ended.
          await transfer.shrunk();
          throw new SluiceError('failure', 'File changed while being read');
        }
        await transfer.close();
      } else {
        // Every byte has arrived: the file's end (close, rename, audit) needs nothing more from the data
        // connection, so it runs while the connection closes.
        const [, ended] = await Promise.allSettled([closeGracefully(stream, security.handshakeTimeoutMs, false, false), transfer?.close()]);
        if (ended.status === 'rejected') throw ended.reason;
      }
      c.reply(Code.TransferComplete, 'Transfer complete.');
    } catch (err) {
      await finishFailed(c, transfer, err, aborted);
      // An upload refused while its client still sends (see receive): the reply is out, let the rest
      // arrive. Not waited for: the client's next command need not wait on a data connection it may
      // hold open without sending. Held as a connection closing (ClosingData): before, a client that had
      // its uploads refused one after another held a data connection for each for REFUSED_DRAIN_MS,
      // its control connection's close included (found by a review).
      if (stream && err instanceof SluiceError && transfer instanceof Upload && c.closingData.hold(stream, REFUSED_DRAIN_MS)) {
        draining = drainRefused(stream, transfer.leftovers(), REFUSED_DRAIN_MS);
      }
    } finally {
      // The endpoint holds the accepted connection too: closed once the drain is over.
      if (draining) void draining.finally(() => endpoint.close());
      else {
        (stream as Duplex | null)?.destroy();
        endpoint.close();
      }
      await cleanup?.();
      c.transfer = null;
    }
  })();
  c.transfer = {
    done,
    bytes: () => transfer?.transferred ?? 0,
    moved: () => {
      const s = stream as (Duplex & { bytesRead: number; bytesWritten: number }) | null;
      return flowing && s ? s.bytesRead + s.bytesWritten : null;
    },
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
 *
 * `resetFails`: a reset instead of the peer's close fails the transfer. In
 * clear, a client that closes with bytes of ours unread resets the
 * connection (one that read to our FIN closes it), and a file that fits in
 * the socket buffers has left the server whole by then: a client that read
 * a tenth of 2 MiB and left got 226, recorded ok (found by an operator's
 * review). Under TLS a reset says nothing: our close_notify, sent after the
 * last byte, meets a client that closed as soon as it had them (curl).
 *
 * `timeoutFails`: a peer that has not closed by `timeoutMs` fails the
 * transfer. A client closes a download's connection once it has read to its
 * end; one that keeps it open has not, and the rest of the file, in the
 * socket buffers, is lost with the connection (found by a review: a client
 * that read a tenth of 2 MiB and then held the connection got 226, recorded
 * ok, at the data timeout).
 */
async function closeGracefully(stream: Duplex, timeoutMs: number, resetFails: boolean, timeoutFails: boolean): Promise<void> {
  if (stream.destroyed) return;
  await new Promise<void>((resolve, reject) => {
    let failure: Error | null = null;
    const timer = setTimeout(() => {
      stream.destroy();
      if (timeoutFails) reject(Object.assign(new Error('data connection not closed by the client in time'), { code: 'ETIMEDOUT' }));
      else resolve();
    }, timeoutMs);
    timer.unref();
    stream.once('close', () => {
      clearTimeout(timer);
      if (failure) reject(failure);
      else resolve();
    });
    stream.on('error', (err: Error) => {
      if (resetFails) failure ??= err;
    });
    // The peer may still send its own close_notify: read and drop whatever is left.
    stream.resume();
    // A download's pipe has ended it already: another end() would only build an ERR_STREAM_ALREADY_FINISHED
    // (with its stack) that nobody reads, once per file.
    if (!stream.writableEnded) stream.end();
  });
}

async function finishFailed(c: FtpControl, transfer: Upload | Download | null, err: unknown, aborted: boolean): Promise<void> {
  if (aborted) {
    await transfer?.abort('aborted by client');
    return c.reply(Code.TransferAborted, 'Transfer aborted.');
  }
  if (err instanceof DataChannelError) {
    c.refusals.warn({ reason: err.reason, detail: err.message }, 'data connection failed');
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
  await transfer?.abort(`data connection ${interruption((err as NodeJS.ErrnoException).code)}`, 'failed');
  const text = err instanceof NoCloseNotifyError ? 'Data connection closed without TLS close_notify; transfer aborted.' : 'Connection closed; transfer aborted.';
  c.reply(Code.TransferAborted, text);
}

/** The audit record's words for how a data connection broke off (Node's own codes mean nothing to a reader). */
function interruption(code: string | undefined): string {
  switch (code) {
    case 'ECONNRESET':
      return 'reset by the client';
    case 'EPIPE':
    case 'ERR_STREAM_PREMATURE_CLOSE':
      return 'closed by the client before the end';
    case 'ETIMEDOUT':
      return 'not closed by the client in time: it may not have read it all';
    case 'ERR_TLS_NO_CLOSE_NOTIFY':
      return 'closed without TLS close_notify: the file may be cut short';
    case undefined:
      return 'closed';
    default:
      return `failed (${code})`;
  }
}
