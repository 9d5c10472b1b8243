import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';

/** Soft and hard RLIMIT_NOFILE of this process, from /proc ("unlimited" as Infinity). */
function openFileLimits(): { soft: number; hard: number } | null {
  const line = /^Max open files\s+(\S+)\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  if (!line) return null;
  const n = (s: string | undefined) => (s === 'unlimited' ? Infinity : Number(s));
  return { soft: n(line[1]), hard: n(line[2]) };
}

/**
 * Raise the soft descriptor limit to the hard one, so the connection caps,
 * not the default 1,024 descriptors, decide when clients are refused. Node
 * has no setrlimit; util-linux's prlimit sets it on this process. Start-up
 * only (synchronous), and never fatal: the result is logged either way.
 */
export function raiseDescriptorLimit(log: Logger): void {
  let before;
  try {
    before = openFileLimits();
  } catch {
    before = null;
  }
  if (!before) return log.warn('descriptor limit unknown (/proc/self/limits unreadable)');
  if (before.soft >= before.hard) return log.info({ nofile: before.soft }, 'descriptor limit');
  const hard = Number.isFinite(before.hard) ? String(before.hard) : 'unlimited';
  const r = spawnSync('prlimit', ['--pid', String(process.pid), `--nofile=${hard}:${hard}`], { encoding: 'utf8', timeout: 5000 });
  const after = openFileLimits();
  if (r.status === 0 && after && after.soft > before.soft) {
    log.info({ nofile: after.soft, was: before.soft }, 'descriptor limit raised');
  } else {
    log.warn({ nofile: before.soft, hard: before.hard, err: r.error?.message ?? r.stderr.trim() }, 'could not raise the descriptor limit (prlimit)');
  }
}
