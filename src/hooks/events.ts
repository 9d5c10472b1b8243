import type { Actor, AuditEvent } from '../audit/events.js';

/** What a hook can be run on. */
export const HOOK_EVENTS = ['upload', 'download', 'delete', 'rename', 'login', 'login-failed', 'quota-exceeded'] as const;
export type HookEvent = (typeof HOOK_EVENTS)[number];

/** What a hook is told: the audit record's fields, flat, every value a string. */
export const HOOK_FIELDS = ['event', 'time', 'user', 'protocol', 'ip', 'session', 'path', 'target', 'bytes', 'size', 'sha256', 'reason'] as const;
export type HookFields = Record<(typeof HOOK_FIELDS)[number], string>;

/**
 * The hook event an audit event is, with its fields; null for events no hook
 * runs on. Transfers count only when they completed: a hook on `upload` is
 * told of files that are there.
 */
export function hookEventOf(actor: Actor, e: AuditEvent, time: Date): { event: HookEvent; fields: HookFields } | null {
  const base = { time: time.toISOString(), user: actor.user, protocol: actor.protocol, ip: actor.ip, session: actor.session, path: '', target: '', bytes: '', size: '', sha256: '', reason: '' };
  switch (e.event) {
    case 'upload':
    case 'download':
      if (e.result !== 'ok') return null;
      return { event: e.event, fields: { ...base, event: e.event, path: e.path, bytes: String(e.bytes), size: String(e.size), sha256: e.file_sha256 ?? e.sha256 ?? '' } };
    case 'delete':
    case 'quota-exceeded':
      return { event: e.event, fields: { ...base, event: e.event, path: e.path } };
    case 'rename':
      return { event: 'rename', fields: { ...base, event: 'rename', path: e.from, target: e.to } };
    case 'login':
      return { event: 'login', fields: { ...base, event: 'login' } };
    case 'login-failed':
      return { event: 'login-failed', fields: { ...base, event: 'login-failed', reason: e.reason } };
    default:
      return null;
  }
}

const PLACEHOLDER = /\{([a-z0-9]+)\}/g;

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
 */
export function expandArgv(argv: readonly string[], fields: HookFields): string[] {
  return argv.map((a) => a.replace(PLACEHOLDER, (_, name: string) => (fields[name as keyof HookFields] ?? '').replaceAll('\0', '\uFFFD')));
}
