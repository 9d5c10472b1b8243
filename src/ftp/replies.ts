import type { SluiceError } from '../session/errors.js';

/** Reply codes by name (RFC 959, 2228, 2428, 3659, 4217). */
export const Code = {
  FileStatusOk: 150,
  Ok: 200,
  NotNeeded: 202,
  SystemStatus: 211,
  FileStatus: 213,
  Help: 214,
  SystemType: 215,
  Ready: 220,
  Closing: 221,
  TransferComplete: 226,
  EnteringPassive: 227,
  EnteringExtendedPassive: 229,
  LoggedIn: 230,
  SecurityExchangeOk: 234,
  FileActionOk: 250,
  PathCreated: 257,
  NeedPassword: 331,
  PendingInfo: 350,
  ServiceUnavailable: 421,
  CantOpenData: 425,
  TransferAborted: 426,
  LocalError: 451,
  InsufficientStorage: 452,
  SyntaxError: 500,
  ArgumentError: 501,
  NotImplemented: 502,
  BadSequence: 503,
  ParameterNotImplemented: 504,
  NotLoggedIn: 530,
  PolicyRefused: 522,
  ProtectionRefused: 534,
  Unavailable: 550,
  ExceededStorage: 552,
  NameNotAllowed: 553,
} as const;

export interface Reply {
  code: number;
  text: string;
}

/** The one mapping from the shared layer's typed errors to FTP replies. */
export function errorReply(err: SluiceError): Reply {
  const text = err.message + '.';
  switch (err.kind) {
    case 'not-found':
    case 'permission-denied':
    case 'already-exists':
    case 'not-empty':
    case 'not-a-directory':
    case 'is-a-directory':
    case 'rejected':
    // Not met: an FTP upload always writes and is never read, and a download is never written.
    case 'not-open-for':
      return { code: Code.Unavailable, text };
    case 'quota-exceeded':
      return { code: Code.ExceededStorage, text };
    case 'invalid-path':
    case 'invalid-argument':
      return { code: Code.NameNotAllowed, text };
    case 'no-space':
      return { code: Code.InsufficientStorage, text };
    case 'unsupported':
      return { code: Code.ParameterNotImplemented, text };
    case 'failure':
      return { code: Code.LocalError, text };
    default: {
      const never: never = err.kind;
      return never;
    }
  }
}

const LINE_BREAKS = /[\r\n]/g;

/**
 * Wire form of one line of a reply: the first of several `code-`, the last
 * (or only) `code `. An inner line that starts with the code is indented: a
 * client would take it for the last.
 */
export function replyLine(code: number, text: string, at: 'first' | 'inner' | 'last'): string {
  // CR and LF end a line on the wire: inside one they would let the text a reply quotes (a name, an error's
  // message, a scanner's verdict) write replies of its own. Every reply passes here, so none can.
  const line = text.replace(LINE_BREAKS, ' ');
  if (at === 'first') return `${code}-${line}\r\n`;
  if (at === 'last') return `${code} ${line}\r\n`;
  return (line.startsWith(String(code)) ? ` ${line}` : line) + '\r\n';
}

/** Wire form of a reply; several lines become a multi-line reply (`code-` ... `code `). */
export function formatReply(code: number, lines: readonly string[]): string {
  const last = lines.length - 1;
  if (last <= 0) return replyLine(code, lines[0] ?? '', 'last');
  return lines.map((l, i) => replyLine(code, l, i === 0 ? 'first' : i === last ? 'last' : 'inner')).join('');
}
