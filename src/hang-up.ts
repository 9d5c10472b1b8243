import type { Logger } from 'pino';
import type { Coordination } from './app.js';

/**
 * SIGHUP for the whole life of `sluice serve`, from its first step to its
 * last. Node's default for SIGHUP ends the process, and the reload used to be
 * listened for only while the server served: a hang-up during the start (a
 * home sweep of a large tree takes many seconds) or during the drain
 * (logrotate's postrotate, `systemctl reload`) killed the server at once,
 * its transfers and logouts never recorded and its pid file left behind
 * (found by a review). What a hang-up does grows with what is open: from
 * the audit trail's opening its reopen (a rotation during a long home sweep
 * must not leave the chain in the moved file), once serving every reload;
 * before the trail opens and after it closes, a hang-up is noted and passed
 * over.
 */
export class HangUps {
  private reload: (() => void) | null = null;
  private note: () => void = () => undefined;
  private readonly listener = (): void => (this.reload ?? this.note)();

  constructor() {
    process.on('SIGHUP', this.listener);
  }

  /** What a hang-up does while no reload is named (a log line, once there is a log). */
  noteWith(note: () => void): void {
    this.note = note;
  }

  /** What a hang-up does from now on (null: only noted). */
  reloadWith(reload: (() => void) | null): void {
    this.reload = reload;
  }

  /** Node's default again: called once nothing is left that a hang-up could lose. */
  dispose(): void {
    process.off('SIGHUP', this.listener);
  }
}

/** A hang-up's part for the audit trail (and the xferlog): continue in new files if logrotate moved them. */
export function reopenTrail(coordination: Coordination, log: Logger): void {
  coordination.auditLog?.reopen().catch((err: unknown) => log.error({ err }, 'audit log reopen'));
}
