import type { Actor, AuditEvent, AuditSink, Service } from '../audit/events.js';

/** Failed logins per source (BanCheck.source) recorded one by one in each window; the rest are counted. */
const RECORDED_PER_WINDOW = 10;
const WINDOW_MS = 60_000;
/** Addresses tracked per window; failures from any beyond these are counted together under "*". */
const MAX_ADDRESSES = 10_000;

interface Tally {
  seen: number;
  protocol: Service;
}

/**
 * Failed logins cost an attacker nothing before login; written one line
 * each they could fill the disk. Per source (an address, or an IPv6
 * network, whose client can use a new address for each try) and per minute
 * the first few are recorded in full, the rest as one
 * `login-failed-repeated` line with a count when the window ends. Everything
 * else passes straight through.
 */
export class FailureThrottle implements AuditSink {
  private tallies = new Map<string, Tally>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly inner: AuditSink,
    private readonly sourceOf: (ip: string) => string,
  ) {}

  record(actor: Actor, event: AuditEvent): void {
    if (event.event !== 'login-failed') return this.inner.record(actor, event);
    const source = this.sourceOf(actor.ip);
    const ip = this.tallies.has(source) || this.tallies.size < MAX_ADDRESSES ? source : '*';
    const tally = this.tallies.get(ip) ?? { seen: 0, protocol: actor.protocol };
    tally.seen++;
    this.tallies.set(ip, tally);
    if (!this.timer) {
      this.timer = setTimeout(() => this.flush(), WINDOW_MS);
      this.timer.unref();
    }
    if (tally.seen <= RECORDED_PER_WINDOW) this.inner.record(actor, event);
  }

  /** End the window: one summary per address that went over. Also called on shutdown. */
  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const tallies = this.tallies;
    this.tallies = new Map();
    for (const [ip, t] of tallies) {
      if (t.seen <= RECORDED_PER_WINDOW) continue;
      this.inner.record(
        { session: '', user: '', protocol: t.protocol, ip, port: 0 },
        { event: 'login-failed-repeated', count: t.seen - RECORDED_PER_WINDOW, window_s: WINDOW_MS / 1000 },
      );
    }
  }
}
