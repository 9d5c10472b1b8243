import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';

/** Descriptors a session may need at once: control, data or channel, a file, a passive listener. */
const PER_SESSION = 4;
/** The database, logs, listeners and libraries. */
const BASE = 256;

/**
 * Log the descriptor limit, and warn when limits.maxSessions could exhaust
 * it before the connection caps refuse anyone. Node itself raises the soft
 * RLIMIT_NOFILE to the hard limit at start, so the hard limit (systemd's
 * LimitNOFILE, ulimit -Hn) is the one to raise. Start-up only.
 */
export function checkDescriptorLimit(maxSessions: number, log: Logger): void {
  let text: string;
  try {
    text = readFileSync('/proc/self/limits', 'utf8');
  } catch {
    return log.warn('descriptor limit unknown (/proc/self/limits unreadable)');
  }
  const soft = /^Max open files\s+(\S+)/m.exec(text)?.[1];
  const nofile = soft === 'unlimited' ? Infinity : Number(soft);
  const needed = BASE + PER_SESSION * maxSessions;
  if (nofile < needed) {
    log.warn({ nofile, needed, maxSessions }, 'descriptor limit below what limits.maxSessions may need: raise the hard limit (LimitNOFILE) or lower limits.maxSessions');
  } else {
    log.info({ nofile }, 'descriptor limit');
  }
}
