import type { StartReport } from './started.js';

/** The start report, kept for whoever asks later (the admin API's /server). */
export class StartRecord {
  /** When this process began serving (the start of its uptime). */
  readonly since = new Date();
  private report: StartReport | null = null;

  /** Keeps `report` and gives it back, for logStarted. */
  keep(report: StartReport): StartReport {
    this.report = report;
    return report;
  }

  /** null until every listener is up. */
  get current(): StartReport | null {
    return this.report;
  }
}
