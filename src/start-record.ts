import type { Listening } from './listening.js';

/** Where a started server listens and what it serves with (logStarted, the admin API's /server). */
export interface StartReport {
  readonly listeners: readonly Listening[];
  readonly frontEnds: readonly string[];
  readonly certsDir: string;
  readonly dataDir: string;
  readonly workers: number;
  /** The admin API serves HTTPS, with the TLS certificate and key the FTPS listeners use. */
  readonly adminTls: boolean;
}

/** The start report, kept for whoever asks later (the admin API's /server). */
export class StartRecord {
  /** When this process began serving (the start of its uptime). */
  readonly since = new Date();
  private report: StartReport | null = null;
  private announce: () => void = () => undefined;
  /**
   * Resolves once the start line is logged: what is said only to a server
   * that started (a hint for its first user) waits for it, so a start that
   * fails (a port in use) ends on its error, not on advice.
   */
  readonly logged = new Promise<void>((resolve) => (this.announce = resolve));

  /** Keeps `report` and gives it back, for logStarted. */
  keep(report: StartReport): StartReport {
    this.report = report;
    return report;
  }

  /** The start line is out (logStarted). */
  announced(): void {
    this.announce();
  }

  /** null until every listener is up. */
  get current(): StartReport | null {
    return this.report;
  }
}
