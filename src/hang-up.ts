/**
 * SIGHUP for the whole life of `sluice serve`, from its first step to its
 * last. Node's default for SIGHUP ends the process, and the reload used to be
 * listened for only while the server served: a hang-up during the start (a
 * home sweep of a large tree takes many seconds) or during the drain
 * (logrotate's postrotate, `systemctl reload`) killed the server at once,
 * its transfers and logouts never recorded and its pid file left behind
 * (found by a review). Until `reloadWith` names what a hang-up does, one is
 * noted and passed over: nothing is loaded yet that it could reload.
 */
export class HangUps {
  private reload: (() => void) | null = null;
  private note: () => void = () => undefined;
  private readonly listener = (): void => (this.reload ?? this.note)();

  constructor() {
    process.on('SIGHUP', this.listener);
  }

  /** What a hang-up before the reload is named does (a log line, once there is a log). */
  noteWith(note: () => void): void {
    this.note = note;
  }

  /** From now on, until dispose(): new certificates and keys, new log files (the drain included). */
  reloadWith(reload: () => void): void {
    this.reload = reload;
  }

  /** Node's default again: called once nothing is left that a hang-up could lose. */
  dispose(): void {
    process.off('SIGHUP', this.listener);
  }
}
