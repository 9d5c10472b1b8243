import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { anonymousActor } from '../audit/anonymous-actor.js';
import type { Actor, AuditEvent, AuditSink, SystemEvent } from '../audit/events.js';
import { shareOf } from '../session/account.js';
import { expandArgv, hookEventOf, type HookEvent, type HookFields } from './events.js';

/** One configured action (config hooks.actions). */
export interface HookAction {
  readonly name: string;
  readonly on: readonly HookEvent[];
  /** argv template, run without a shell. */
  readonly command?: readonly string[] | undefined;
  /** Names of the server's environment variables the command is given besides those of BASE_ENV. */
  readonly env?: readonly string[] | undefined;
  /** POSTed the fields as JSON. */
  readonly url?: string | undefined;
  /** HMAC-SHA256 key of the X-Sluice-Signature header; '' for none. */
  readonly secret: string;
  /** Seconds a command or one POST may take. */
  readonly timeout: number;
  /** Further POSTs after a failed one, 1 s, 2 s, 4 s... apart. */
  readonly retries: number;
}

interface Queued {
  action: HookAction;
  fields: HookFields;
}

/** Hooks waiting for a free slot; past this, new ones are dropped (and audited) rather than held without end. */
const MAX_QUEUED = 1000;
/**
 * Of those, the most that one source may hold: each user, each anonymous FTP
 * client (see sourceOf), and failed logins all together (anyone can fail a
 * login, under any name, from as many addresses as they have; a failed login
 * as alice takes none of alice's places). One user downloading a small file
 * in a loop would otherwise fill the queue and have everyone else's hooks
 * dropped.
 */
const MAX_QUEUED_PER_SOURCE = MAX_QUEUED / 4;
/** The source of failed logins; users' are `user NAME` (an anonymous client's `user anonymous SOURCE`, see shareOf), which no name can make this. */
const FAILED_LOGINS = 'failed logins';
/**
 * What a command is given of the server's environment, when set, besides the
 * names its action lists (env). Nothing else: the server's environment holds
 * secrets (SLUICE_ADMIN_TOKEN, a store URL with its password, every other
 * SLUICE_* setting) that a hook's program has no need of.
 */
const BASE_ENV = ['PATH', 'HOME', 'LANG', 'LC_ALL', 'TZ'] as const;
/** What a failing command said on stderr, kept for the log and the audit record. */
const STDERR_KEPT = 512;
/** How long a stopping server waits for the hooks it ended to be recorded. */
const STOPPED_GRACE_MS = 1000;
/** How long a command's stderr is read after it exited, should something it started keep the pipe open. */
const STDERR_GRACE_MS = 200;

/**
 * Runs the configured actions on the events of the audit trail, as the
 * trail records them. Fire and forget: the session that caused the event
 * never waits, a slow or failing hook only fills this queue. At most
 * `concurrency` run at once; a failure (exit status, time-out, HTTP error
 * after its retries, queue full) is logged and recorded as `hook-failed`.
 */
export class Hooks implements AuditSink {
  private running = 0;
  /**
   * What waits, by source, in the order they take turns: the next hook to run
   * is the oldest of the source first here, which then goes to the back. A
   * source with a long queue delays each other one by at most one hook.
   */
  private readonly queues = new Map<string, Queued[]>();
  private queued = 0;
  private idle: (() => void) | null = null;
  /** Aborted when the server stops: running commands are killed, posts and their retries given up. */
  private readonly stopping = new AbortController();

  constructor(
    private readonly actions: readonly HookAction[],
    private readonly concurrency: number,
    private readonly log: Logger,
    private readonly failed: (event: SystemEvent) => void,
    /** What a client address is counted as by every per-client limit: the address, or its IPv6 network (BanCheck.source). */
    private readonly clientSource: (ip: string) => string,
    /** ftp.anonymous is on: the actor named `anonymous` is its login, whose clients each take their own share (anonymousActor). */
    private readonly anonymousFtp: boolean,
  ) {}

  record(actor: Actor, event: AuditEvent): void {
    const hit = hookEventOf(actor, event, new Date());
    if (!hit) return;
    const source = this.sourceOf(actor, hit.event);
    for (const action of this.actions) if (action.on.includes(hit.event)) this.enqueue(action, hit.fields, source);
  }

  /**
   * Whose share of the queue a hook takes: its user's, an anonymous FTP
   * client's own (shareOf; one client downloading a small file in a loop
   * had every other anonymous client's hooks dropped), or failed logins'.
   */
  private sourceOf(actor: Actor, event: HookEvent): string {
    if (event === 'login-failed') return FAILED_LOGINS;
    return `user ${shareOf(actor.user, anonymousActor(actor, this.anonymousFtp), this.clientSource(actor.ip))}`;
  }

  /**
   * The server stops: resolves once nothing runs or waits, or after `ms`; then
   * what has not started is dropped and what still runs is ended, each
   * recorded as failed, so a slow hook with a full queue cannot keep a
   * stopping server alive (a command is killed, a post given up).
   */
  async drain(ms: number): Promise<void> {
    await this.idleWithin(ms);
    this.stopping.abort();
    const waiting = [...this.queues.values()].flat();
    this.queues.clear();
    this.queued = 0;
    for (const { action, fields } of waiting) this.fail(action, fields, 'server stopping');
    // The ended ones say so as they exit, before the audit log closes.
    await this.idleWithin(STOPPED_GRACE_MS);
  }

  private async idleWithin(ms: number): Promise<void> {
    if (this.running === 0 && this.queued === 0) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.idle = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  /**
   * A source past its share has its new hook dropped. A full queue (four
   * sources at their share) makes room for a source holding fewer by
   * dropping the newest hook of the source holding the most: the flooding
   * source loses its own, never the others. Each drop is recorded.
   */
  private enqueue(action: HookAction, fields: HookFields, source: string): void {
    if (this.stopping.signal.aborted) return this.fail(action, fields, 'server stopping');
    const mine = this.queues.get(source) ?? [];
    if (mine.length >= MAX_QUEUED_PER_SOURCE || this.queued >= MAX_QUEUED) {
      const [flooding, most] = this.queued >= MAX_QUEUED ? this.mostQueued() : ['', []];
      if (most.length <= mine.length) return this.dropped({ action, fields });
      this.dropped(most.pop() as Queued);
      this.queued--;
      if (most.length === 0) this.queues.delete(flooding);
    }
    mine.push({ action, fields });
    this.queued++;
    if (mine.length === 1) this.queues.set(source, mine);
    this.pump();
  }

  private mostQueued(): [string, Queued[]] {
    let most: [string, Queued[]] = ['', []];
    for (const entry of this.queues) if (entry[1].length > most[1].length) most = entry;
    return most;
  }

  private dropped({ action, fields }: Queued): void {
    this.fail(action, fields, fields.event === 'login-failed' ? 'queue full of failed logins' : 'queue full');
  }

  private pump(): void {
    while (this.running < this.concurrency && this.queued > 0) {
      const [source, q] = this.queues.entries().next().value as [string, Queued[]];
      const { action, fields } = q.shift() as Queued;
      this.queued--;
      // Its turn is over: to the back, or gone when it has nothing left.
      this.queues.delete(source);
      if (q.length > 0) this.queues.set(source, q);
      this.running++;
      void this.run(action, fields).finally(() => {
        this.running--;
        this.pump();
        if (this.running === 0 && this.queued === 0) this.idle?.();
      });
    }
  }

  private async run(action: HookAction, fields: HookFields): Promise<void> {
    try {
      const { signal } = this.stopping;
      if (action.command) await runCommand(expandArgv(action.command, fields), hookEnv(action.env ?? []), action.timeout * 1000, signal);
      if (action.url) await post(action.url, fields, action.secret, action.timeout * 1000, action.retries, signal);
    } catch (err) {
      this.fail(action, fields, (err as Error).message);
    }
  }

  private fail(action: HookAction, fields: HookFields, reason: string): void {
    this.log.warn({ hook: action.name, trigger: fields.event, user: fields.user, path: fields.path, reason }, 'hook failed');
    this.failed({ event: 'hook-failed', hook: action.name, trigger: fields.event, user: fields.user, path: fields.path, reason });
  }
}

/**
 * A command in a process group of its own: a time-out or the server's stop
 * kills the whole group, so a script's own children (a shell's `sleep`) do
 * not outlive it, holding its stderr open and with it the hook's slot and the
 * stopping server. The hook ends when the command exits, and so does what it
 * left running in its group (found by a review: a shell's `job &` ran on
 * after the command's exit, past hooks.concurrency, the time-out and the
 * server's stop, one more for each event).
 */
function runCommand(argv: string[], env: NodeJS.ProcessEnv, timeoutMs: number, stopping: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'], detached: true, env });
    let stderr = '';
    let ended: 'timeout' | 'stopping' | null = null;
    const killGroup = (why: 'timeout' | 'stopping') => {
      ended ??= why;
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    };
    const timer = setTimeout(() => killGroup('timeout'), timeoutMs);
    const onStop = () => killGroup('stopping');
    stopping.addEventListener('abort', onStop, { once: true });
    if (stopping.aborted) onStop();
    const done = () => {
      clearTimeout(timer);
      stopping.removeEventListener('abort', onStop);
      // What the group's survivors would still write is not waited for.
      child.stderr.destroy();
    };
    child.stderr.on('data', (d: Buffer) => {
      if (stderr.length < STDERR_KEPT) stderr += d.toString('utf8').slice(0, STDERR_KEPT - stderr.length);
    });
    child.on('error', (err) => {
      done();
      reject(new Error(ended === 'stopping' ? 'command ended: server stopping' : `command: ${err.message}`));
    });
    child.on('exit', (code, signal) => {
      // The group outlives its leader while anything in it runs, so its id is no other process's yet.
      if (child.pid !== undefined) {
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {
          // Nothing left in it.
        }
      }
      const settle = () => {
        done();
        if (code === 0 && ended === null) return resolve();
        if (ended === 'stopping') return reject(new Error('command ended: server stopping'));
        const why = ended === 'timeout' ? `timed out after ${timeoutMs / 1000} s` : signal ? `ended by ${signal}` : `exit status ${code}`;
        reject(new Error(`command ${why}${stderr.trim() === '' ? '' : `: ${stderr.trim()}`}`));
      };
      // Its last words may still be in the pipe: read them, unless a survivor keeps the pipe open.
      if (child.stderr.closed) return settle();
      const late = setTimeout(settle, STDERR_GRACE_MS);
      child.stderr.once('close', () => {
        clearTimeout(late);
        settle();
      });
    });
  });
}

/** Pure: the environment of a hook's command: BASE_ENV and the names given, those of them the server has. */
export function hookEnv(names: readonly string[], from: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const name of [...BASE_ENV, ...names]) if (from[name] !== undefined) env[name] = from[name];
  return env;
}

/** The receiver checks X-Sluice-Signature: "sha256=" and the HMAC-SHA256 of the exact body with the shared secret. */
export function signature(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

async function post(url: string, fields: HookFields, secret: string, timeoutMs: number, retries: number, stopping: AbortSignal): Promise<void> {
  const body = JSON.stringify(fields);
  const headers: Record<string, string> = { 'content-type': 'application/json', 'x-sluice-event': fields.event };
  if (secret !== '') headers['x-sluice-signature'] = signature(secret, body);
  let last = '';
  for (let attempt = 0; attempt <= retries; attempt++) {
    if (stopping.aborted) throw new Error('webhook: server stopping');
    if (attempt > 0) await sleep(1000 * 2 ** (attempt - 1), undefined, { signal: stopping }).catch(() => undefined);
    try {
      const res = await fetch(url, { method: 'POST', headers, body, signal: AbortSignal.any([AbortSignal.timeout(timeoutMs), stopping]), redirect: 'error' });
      await res.body?.cancel();
      if (res.ok) return;
      last = `HTTP ${res.status}`;
    } catch (err) {
      last = stopping.aborted ? 'server stopping' : (err as Error).name === 'TimeoutError' ? `timed out after ${timeoutMs / 1000} s` : (err as Error).message;
    }
  }
  throw new Error(`webhook: ${last} (${retries + 1} attempts)`);
}
