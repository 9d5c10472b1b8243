/**
 * A login that serves several sessions, side by side or one after another
 * (an SSH connection: one per SFTP or SCP channel), and stands until its
 * connection closes: its logout is recorded once, when the connection has
 * closed and the last of its sessions has ended, so after everything they
 * recorded. Each session's end recorded a logout of its own before: GNOME's
 * gvfs, which keeps a channel for browsing and one for transfers, left two
 * logouts for one login, and an OpenSSH client multiplexing its commands
 * (ControlMaster) left uploads recorded after a logout of their login
 * (found by a run of each).
 */
export class SharedLogin {
  private readonly since = Date.now();
  private sessions = 0;
  private connected = true;
  /** Why the server ended it, if it did: the first reason given. */
  private reason: string | null = null;
  /** How the last session to end writes the logout, with its actor: null until one has ended. */
  private logout: ((durationMs: number, reason: string | null) => void) | null = null;
  /**
   * Once: a session still opening as the connection closed, which then
   * closes unserved, must not add a second logout to one written already.
   */
  private written = false;

  /** A session of the login has opened. */
  joined(): void {
    this.sessions++;
  }

  /**
   * A session that joined has ended; `reason`: why the server ended it, if
   * it did. `logout` writes the login's logout as this session's record, for
   * the login's whole length.
   */
  left(reason: string | null, logout: (durationMs: number, reason: string | null) => void): void {
    this.sessions--;
    this.reason ??= reason;
    this.logout = logout;
    this.settle();
  }

  /** The server is ending the connection for `reason` (an administrator, a stop), with or without sessions open. */
  ending(reason: string): void {
    this.reason ??= reason;
  }

  /** The connection has closed: no session opens after this. */
  disconnected(): void {
    this.connected = false;
    this.settle();
  }

  private settle(): void {
    if (this.connected || this.sessions > 0 || !this.logout || this.written) return;
    this.written = true;
    this.logout(Date.now() - this.since, this.reason);
  }
}
