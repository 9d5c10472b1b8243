import type { Logger } from 'pino';
import type { AuditSink, Service } from '../audit/events.js';
import type { Config } from '../config/schema.js';
import type { Offence, Scorer } from '../coordinator/coordinator.js';
import type { FailureTally } from '../coordinator/shared-state.js';
import type { BanRecord } from '../store/records.js';
import type { BanCheck } from './ban-check.js';

/**
 * Scores failures per source (an address, an IPv6 network: BanCheck.source)
 * across every protocol and bans a source that reaches defender.threshold
 * within defender.window: for banTime, then doubling with each further ban,
 * up to maxBanTime. Bans live in the store, so they survive a restart and
 * bans added by the CLI apply at once.
 */
export class Defender implements Scorer {
  /** Bans being written, per address: offences failing at once from many connections make one ban, audited once. */
  private readonly banning = new Map<string, Promise<boolean>>();
  /** Bans the store did not take (its disk full, its server gone), per address: in force here until stored. */
  private readonly held = new Map<string, HeldBan>();
  private storing: NodeJS.Timeout | null = null;
  /** A round of storeHeld is under way: the store may take seconds, and the rounds are a second apart. */
  private storingRound = false;
  /** Held bans being written to the store, and whether an administrator lifted each meanwhile. */
  private readonly writing = new Map<HeldBan, { lifted: boolean }>();
  /** Lifted bans whose row, written meanwhile, is being removed again, per address: a new ban waits for it. */
  private readonly undoing = new Map<string, Promise<unknown>>();

  constructor(
    private readonly check: BanCheck,
    private readonly tally: FailureTally,
    private readonly settings: Config['defender'],
    private readonly audit: AuditSink | null,
    private readonly log: Logger,
  ) {}

  /** Count one offence; true when it got the address banned. */
  async score(ip: string, protocol: Service, offence: Offence): Promise<boolean> {
    if (!this.settings.enabled || this.check.allowed(ip)) return false;
    const now = Date.now();
    const source = this.check.source(ip);
    if (this.holds(source, now)) return true;
    const count = await this.tally.add(source, now, now - this.settings.window * 1000);
    if (count < this.settings.threshold) return false;
    const pending = this.banning.get(source);
    if (pending) return pending;
    const banned = this.ban(source, ip, protocol, offence, now).finally(() => this.banning.delete(source));
    this.banning.set(source, banned);
    return banned;
  }

  /** Ban `source`; `ip` is the address of its last offence. */
  private async ban(source: string, ip: string, protocol: Service, offence: Offence, now: number): Promise<boolean> {
    const { banTime, maxBanTime, threshold, window } = this.settings;
    await this.tally.clear(source);
    // Else the row of a lifted ban, still there, read as the ban in force, and its removal then took the new one with it.
    await this.undoing.get(source);
    const previous = await this.check.bans.get(source);
    // Connections admitted before the ban may still fail: that is the same ban, recorded once.
    if (previous && (previous.until === null || previous.until.getTime() > now)) return true;
    const recent = previous?.until && now - previous.until.getTime() < maxBanTime * 1000;
    const count = recent ? previous.count + 1 : 1;
    const seconds = Math.min(banTime * 2 ** Math.min(count - 1, 30), maxBanTime);
    const until = new Date(now + seconds * 1000);
    const reason = `${threshold} failures in ${window} s, the last ${offence}`;
    const ban: HeldBan = { until, count, reason, since: new Date(now) };
    // Held from now, as admission asks here (holds): the store may wait seconds for another process's lock,
    // and the address was let in meanwhile.
    this.held.set(source, ban);
    try {
      // Another's ban in force by now (an administrator's, another node's) stands, with its own record: as one found above.
      if ((await this.store(source, ban)) === 'stood') return true;
    } catch (err) {
      // Found by a review: with the store's disk full the ban was lost and the count begun again, so a
      // user who filled the disk could then guess passwords unbanned.
      this.log.error({ err, source }, 'ban not stored: in force in this process, stored again each second');
      if (this.held.get(source) === ban) this.storing ??= setInterval(() => void this.storeHeld(), HELD_RETRY_MS).unref();
    }
    this.log.warn({ ip, source, until: until.toISOString(), count, offence }, 'address banned');
    this.audit?.record({ session: '', user: '', protocol, ip, port: 0 }, { event: 'ban', address: source, until: until.toISOString(), seconds, count, offence });
    return true;
  }

  holds(source: string, now = Date.now()): boolean {
    const ban = this.held.get(source);
    if (!ban) return false;
    if (ban.until.getTime() > now) return true;
    this.held.delete(source);
    return false;
  }

  /** The bans held here, in force and not yet stored, as the ban list shows bans. */
  heldBans(now = Date.now()): BanRecord[] {
    return [...this.held].filter(([source]) => this.holds(source, now)).map(([address, b]) => ({ address, until: b.until, count: b.count, reason: b.reason, createdAt: b.since }));
  }

  /** An administrator lifts the held ban on `source`; false: none was held. */
  lift(source: string): boolean {
    const ban = this.held.get(source);
    if (!ban) return false;
    this.held.delete(source);
    const writing = this.writing.get(ban);
    if (writing) writing.lifted = true;
    return true;
  }

  /**
   * The held `ban` into the store, no longer held once it is there; throws what the store refused with.
   * 'lifted': an administrator lifted it meanwhile, whose removal found nothing yet, so it is removed again.
   * 'stood': a ban another wrote while this one waited for the store (an administrator's, `sluice ban add`)
   * stands, and this one is dropped: found by a review of 5deb893, the waiting write replaced a permanent ban
   * made meanwhile with its minutes, and when lifted meanwhile, its removal took the administrator's ban with it.
   */
  private async store(source: string, ban: HeldBan): Promise<'stored' | 'lifted' | 'stood'> {
    const writing = { lifted: false };
    this.writing.set(ban, writing);
    let written: boolean;
    try {
      written = await this.check.bans.putUnlessBanned(source, ban.until, ban.count, ban.reason, ban.since);
    } finally {
      this.writing.delete(ban);
    }
    if (writing.lifted) {
      // Not waited for here: the address offending again meanwhile is a new ban (see ban), not this one's.
      if (written) this.undo(source, ban);
      return 'lifted';
    }
    if (this.held.get(source) === ban) this.held.delete(source);
    if (written) return 'stored';
    this.log.info({ source }, 'another ban on the address was stored meanwhile: it stands');
    return 'stood';
  }

  /** Remove the row of the lifted `ban`, written while it was lifted. */
  private undo(source: string, ban: HeldBan): void {
    const undone = this.check.bans
      .removeOwn(source, ban.since)
      .catch((err: unknown) => this.log.error({ err, source }, 'a held ban lifted while it was stored is still in the store'))
      .finally(() => {
        if (this.undoing.get(source) === undone) this.undoing.delete(source);
      });
    this.undoing.set(source, undone);
  }

  /** Each held ban into the store, oldest first; one the store still refuses waits, with those after it, for the next round. */
  private async storeHeld(): Promise<void> {
    if (this.storingRound) return;
    this.storingRound = true;
    try {
      for (const [source, ban] of [...this.held]) {
        if (!this.holds(source) || this.held.get(source) !== ban || this.writing.has(ban)) continue;
        if ((await this.store(source, ban)) === 'stored') this.log.info({ source }, 'held ban stored');
      }
    } catch {
      return;
    } finally {
      this.storingRound = false;
    }
    if (this.held.size === 0 && this.storing) {
      clearInterval(this.storing);
      this.storing = null;
    }
  }
}

interface HeldBan {
  readonly until: Date;
  readonly count: number;
  readonly reason: string;
  readonly since: Date;
}

/** How often bans the store refused are offered to it again. */
const HELD_RETRY_MS = 1000;
