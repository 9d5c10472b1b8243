import type { Service } from '../audit/events.js';
import type { ServerMetricsSink } from '../metrics/events.js';
import type { Ledgers } from '../session/quota.js';
import type { DataPlace, DataPlaceRefusal, DataPlaces } from '../session/data-places.js';
import type { ConnectionRegistry } from '../session/registry.js';
import { SCANS_PER_USER } from '../session/scanning.js';
import { Turns } from '../session/turns.js';
import type { AuditTrail, Coordinator, Offence, Release, Scorer, SourceShare } from './coordinator.js';
import type { UserSessionCounts } from './shared-state.js';

/**
 * The coordinator of one process: the state is here, so every answer is
 * immediate. A single-process server uses it directly; with workers, the
 * primary keeps one and answers the workers' questions from it.
 */
export class LocalCoordinator implements Coordinator {
  readonly scanTurns = new Turns(SCANS_PER_USER);
  readonly judgeTurns: Turns;
  readonly keepTurns = new Turns(1);

  constructor(
    private readonly registry: ConnectionRegistry,
    /** Sessions per user counted with the other nodes' (a shared store); null: in the registry. */
    private readonly userSessions: UserSessionCounts | null,
    private readonly defender: Scorer,
    readonly ledgers: Ledgers,
    readonly audit: AuditTrail | null,
    readonly metrics: ServerMetricsSink,
    /** defender.threshold: the login attempts of one source judged at once. */
    judgedAtOnce: number,
    /** FTP's passive ports per source and per user (ftp.maxPassivePortsPerIp, ftp.maxPassivePortsPerUser). */
    private readonly places: DataPlaces,
    /** No connection is admitted while this says so (the audit trail cannot be written: app.ts). */
    private readonly closed: () => boolean = () => false,
  ) {
    this.judgeTurns = new Turns(judgedAtOnce);
  }

  async admit(ip: string): Promise<Release | 'banned' | null> {
    if (this.defender.holds(ip)) return 'banned';
    if (this.closed()) return null;
    return this.registry.tryAcquire(ip);
  }

  async heldBan(source: string): Promise<boolean> {
    return this.defender.holds(source);
  }

  async claimUser(user: string, max?: number, from?: SourceShare): Promise<Release | null> {
    // Connections admitted before admission closed log in no more while it is (their records too would wait).
    if (this.closed()) return null;
    // The source's share first, here and at once: a client at its share takes no place of the user's, not even
    // for the round trip of a shared store (found by a review: an address at its share, trying again and again,
    // held the user's last place often enough to refuse others).
    if (!from) return this.claimUserOnly(user, max);
    const share = this.registry.tryAcquireUser(`${user} ${from.source}`, from.max);
    if (!share) return null;
    const slot = await this.claimUserOnly(user, max).catch((err: unknown) => {
      share();
      throw err;
    });
    if (!slot) {
      share();
      return null;
    }
    return () => {
      slot();
      share();
    };
  }

  private async claimUserOnly(user: string, max: number | undefined): Promise<Release | null> {
    const shared = this.userSessions;
    if (!shared) return this.registry.tryAcquireUser(user, max);
    if (!(await shared.claim(user, max ?? this.registry.maxPerUser))) return null;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      // Not waited on: a count the database does not take now is set right once it answers (store/postgres/user-sessions.ts).
      void shared.release(user).catch(() => undefined);
    };
  }

  async dataPlace(source: string, user: string): Promise<DataPlace | DataPlaceRefusal> {
    return this.places.take(source, user);
  }

  /** Wider than Coordinator's: the admin API, which runs only beside this coordinator, scores too. */
  async score(ip: string, protocol: Service, offence: Offence): Promise<boolean> {
    return this.defender.score(ip, protocol, offence);
  }
}
