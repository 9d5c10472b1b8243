import { UNSAFE_CHAR_CLASS } from '../session/unsafe-chars.js';
import { anonymousActor } from './anonymous-actor.js';
import type { Actor, AuditEvent } from './events.js';

type TransferEvent = Extract<AuditEvent, { event: 'upload' | 'download' }>;

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** ctime(3) in local time, as wu-ftpd wrote it: `Tue Nov  4 09:05:01 2026`. */
function ctime(d: Date): string {
  const two = (n: number) => String(n).padStart(2, '0');
  const clock = `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
  return `${DAYS[d.getDay()]} ${MONTHS[d.getMonth()]} ${String(d.getDate()).padStart(2, ' ')} ${clock} ${d.getFullYear()}`;
}

// Blanks, and what session/unsafe-chars.ts names (C0, DEL, C1, U+2028/U+2029, bidi controls).
const NOT_IN_FIELD = new RegExp(`[\\s${UNSAFE_CHAR_CLASS}]`, 'g');

/**
 * A field of a whitespace-separated line: log analysers split on blanks, so a
 * blank or a control character in a name (a client chooses names) becomes `_`
 * rather than shift the fields or start a forged line (NEL, U+0085, ends a
 * line for many readers); a bidi control becomes `_` rather than reorder the
 * line as displayed.
 */
function field(text: string): string {
  return text.replace(NOT_IN_FIELD, '_') || '_';
}

/**
 * Pure: one transfer in the wu-ftpd xferlog(5) format, which existing
 * analysers read: current-time transfer-time remote-host file-size filename
 * transfer-type special-action direction access-mode username service-name
 * authentication-method authenticated-user-id completion-status. The file
 * size field is the bytes transferred; the name is the path the user sees.
 * Anonymous FTP's transfers have access mode `a`, so that analysers count
 * them apart from real users' (its username field is the account's name;
 * the address the client gave as its password is in the login's record):
 * `anonymousFtp` says whether ftp.anonymous is on (see anonymousActor).
 */
export function xferlogLine(actor: Actor, event: TransferEvent, end: Date, anonymousFtp: boolean): string {
  return [
    ctime(end),
    // wu-ftpd counts whole seconds and never writes 0.
    Math.max(1, Math.round(event.duration_ms / 1000)),
    actor.ip,
    event.bytes,
    field(event.path),
    event.type === 'ascii' ? 'a' : 'b',
    '_',
    event.event === 'upload' ? 'i' : 'o',
    anonymousActor(actor, anonymousFtp) ? 'a' : 'r',
    field(actor.user),
    actor.protocol,
    0,
    '*',
    event.result === 'ok' ? 'c' : 'i',
  ].join(' ');
}
