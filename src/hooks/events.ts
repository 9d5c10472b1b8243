import type { Actor, AuditEvent } from '../audit/events.js';
import { shown } from '../session/unsafe-chars.js';

/** What a hook can be run on. */
export const HOOK_EVENTS = ['upload', 'upload-failed', 'download', 'delete', 'rename', 'login', 'login-failed', 'quota-exceeded'] as const;
export type HookEvent = (typeof HOOK_EVENTS)[number];

/**
 * What a hook is told: the audit record's fields, flat, every value a string. `replaced`: the size of
 * the file an upload or a rename replaced ('' none, 'unknown' for the record's replaced_unknown).
 */
export const HOOK_FIELDS = ['event', 'time', 'user', 'protocol', 'ip', 'session', 'path', 'target', 'bytes', 'size', 'sha256', 'reason', 'replaced'] as const;
export type HookFields = Record<(typeof HOOK_FIELDS)[number], string>;

/**
 * The hook event an audit event is, with its fields; null for events no hook
 * runs on. Transfers count only when they completed: a hook on `upload` is
 * told of files that are there. An upload that did not complete is
 * `upload-failed`, its result and why in `reason`: one written in place (a
 * resume, an append, an SFTP write without truncation, or any unscanned
 * upload with uploads.atomic off) leaves what arrived under its name, and a hook that
 * checks files must hear of it (found by a review: such bytes reached no
 * hook at all).
 *
 * The user is shown escaped (session/unsafe-chars.ts): a failed login of an
 * unknown user carries the name the client sent, which may hold a line break
 * (a forged line in what the hook writes), ESC or a bidi override. Stored
 * names are letters, digits, `.`, `_` and `-` (users/admin.ts), which escaping
 * leaves as they are, so only a client's name is ever changed, for commands
 * and webhooks alike. The audit trail keeps the name as sent. So is a
 * reason: an upload's may quote the client. And so are paths: a client's
 * have none of those characters (session/paths.ts), and escaping leaves them
 * as they are, but a transfer's is where its file is at the end, which names
 * a directory renamed on the host meanwhile (found by a review: renamed to
 * `Q<LF><ESC>[31mFAKE LINE`, it reached {path} as it was).
 */
export function hookEventOf(actor: Actor, e: AuditEvent, time: Date): { event: HookEvent; fields: HookFields } | null {
  const base = { time: time.toISOString(), user: shown(actor.user), protocol: actor.protocol, ip: actor.ip, session: actor.session, path: '', target: '', bytes: '', size: '', sha256: '', reason: '', replaced: '' };
  switch (e.event) {
    case 'upload':
    case 'download':
      if (e.result !== 'ok') {
        if (e.event === 'download') return null;
        // Escaped as the user is: a reason may quote the client (legacy SCP's own error line for the file,
        // `client: ...`), which may hold a carriage return, NEL, U+2028, ESC or a bidi override (found by a review).
        const reason = shown(e.reason === undefined ? e.result : `${e.result}: ${e.reason}`);
        return { event: 'upload-failed', fields: { ...base, event: 'upload-failed', path: shown(e.path), bytes: String(e.bytes), size: String(e.size), reason, replaced: replacedField(e) } };
      }
      return {
        event: e.event,
        fields: { ...base, event: e.event, path: shown(e.path), bytes: String(e.bytes), size: String(e.size), sha256: e.file_sha256 ?? e.sha256 ?? '', replaced: replacedField(e) },
      };
    case 'delete':
    case 'quota-exceeded':
      return { event: e.event, fields: { ...base, event: e.event, path: shown(e.path) } };
    case 'rename':
      return { event: 'rename', fields: { ...base, event: 'rename', path: shown(e.from), target: shown(e.to), replaced: replacedField(e) } };
    case 'login':
      return { event: 'login', fields: { ...base, event: 'login' } };
    case 'login-failed':
      return { event: 'login-failed', fields: { ...base, event: 'login-failed', reason: shown(e.reason) } };
    default:
      return null;
  }
}

function replacedField(e: { replaced?: { size: number }; replaced_unknown?: true }): string {
  return e.replaced ? String(e.replaced.size) : e.replaced_unknown ? 'unknown' : '';
}

const PLACEHOLDER = /\{([a-z0-9]+)\}/g;

/** Pure: whether an argument of an argv template has a `{field}` in it. */
export function holdsPlaceholder(arg: string): boolean {
  return arg.match(PLACEHOLDER) !== null;
}

/** Pure: the placeholders of an argv template that name no field (a config error). */
export function unknownPlaceholders(argv: readonly string[]): string[] {
  const known = new Set<string>(HOOK_FIELDS);
  return argv.flatMap((a) => [...a.matchAll(PLACEHOLDER)].map((m) => m[1] as string)).filter((p) => !known.has(p));
}

/**
 * Pure: each `{field}` replaced by its value. One argument stays one argument
 * whatever the value holds: no shell ever sees it. An argument cannot carry a
 * NUL, and one in a value (a name a client typed) would keep the command from
 * running at all, so a failed login could dodge its hook: it becomes U+FFFD.
 *
 * Nor can a value make an option: where an argument would start with a `-`
 * that a value put there, not the template (a failed login as `--version`
 * given to `ls -d {user}`), that `-` is written `\x2d`, as the escaping of
 * hookEventOf writes other characters (a backslash the client sent is
 * already doubled there, so the escape cannot be mistaken for one). Of the
 * fields only the user of a failed login can start with `-`: stored names
 * start with a letter or digit, paths with `/`, the rest are the server's.
 * A dash the template starts an argument with (`--user={user}`) is kept.
 */
export function expandArgv(argv: readonly string[], fields: HookFields): string[] {
  return argv.map((template) => {
    let out = '';
    let last = 0;
    for (const m of template.matchAll(PLACEHOLDER)) {
      out += template.slice(last, m.index);
      let value = (fields[m[1] as keyof HookFields] ?? '').replaceAll('\0', '\uFFFD');
      if (out === '' && value.startsWith('-')) value = `\\x2d${value.slice(1)}`;
      out += value;
      last = m.index + m[0].length;
    }
    return out + template.slice(last);
  });
}
