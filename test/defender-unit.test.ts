import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import pino from 'pino';
import type { Actor, AuditEvent } from '../src/audit/events.js';
import { sourceOf } from '../src/auth/ip-rules.js';
import { configSchema } from '../src/config/schema.js';
import { BanCheck } from '../src/security/ban-check.js';
import { Defender } from '../src/security/defender.js';
import { FailureThrottle } from '../src/security/failure-throttle.js';
import { MemoryFailureTally } from '../src/security/failure-tally.js';
import { openSqliteStore } from '../src/store/sqlite/store.js';
import { cpuSince } from './helpers/cpu-time.js';

const dir = mkdtempSync(join(tmpdir(), 'sluice-defender-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function setup(name: string, defender: Record<string, unknown>) {
  const { bans } = openSqliteStore(join(dir, `${name}.db`));
  const tally = new MemoryFailureTally();
  const events: { actor: Actor; event: AuditEvent }[] = [];
  const settings = configSchema.parse({ defender }).defender;
  const check = new BanCheck(bans, settings.allowList, 64);
  const scorer = new Defender(check, tally, settings, { record: (actor, event) => events.push({ actor, event }) }, pino({ level: 'silent' }));
  // What the gate asks (banned) and what the coordinator asks (score), as one object for the cases below.
  const d = { score: scorer.score.bind(scorer), banned: check.banned.bind(check), get tracked() { return tally.tracked; } };
  /** Let the address's current ban end `ago` ms ago, as if time had passed. */
  const expire = async (ip: string, ago: number) => {
    const b = await bans.get(ip);
    assert.ok(b);
    await bans.put(ip, new Date(Date.now() - ago), b.count, b.reason);
  };
  return { d, bans, events, expire };
}

describe('defender (in process)', () => {
  it('bans at the threshold, doubles each further ban up to maxBanTime, and starts over after a quiet maxBanTime', async () => {
    const { d, bans, events, expire } = setup('escalate', { threshold: 2, banTime: 10, maxBanTime: 25 });
    const ip = '192.0.2.7';
    const seconds = () => events.filter((e) => e.event.event === 'ban').map((e) => (e.event as { seconds: number }).seconds);
    assert.equal(await d.score(ip, 'ftp', 'login-failed'), false);
    assert.equal(d.banned(ip), false);
    assert.equal(await d.score(ip, 'sftp', 'protocol-abuse'), true);
    assert.equal(d.banned(ip), true);
    assert.equal(await d.score(ip, 'sftp', 'login-failed'), false, 'a failure while banned starts a new count, no second ban');
    assert.equal(await d.score(ip, 'sftp', 'login-failed'), true, 'the same ban, not a new one');
    assert.deepEqual(seconds(), [10]);
    for (const expected of [[10, 20], [10, 20, 25]]) {
      await expire(ip, 1000);
      assert.equal(d.banned(ip), false);
      await d.score(ip, 'ftp', 'login-failed');
      await d.score(ip, 'ftp', 'login-failed');
      assert.deepEqual(seconds(), expected);
    }
    await expire(ip, 26_000);
    await d.score(ip, 'ftp', 'login-failed');
    await d.score(ip, 'ftp', 'login-failed');
    assert.deepEqual(seconds(), [10, 20, 25, 10]);
    assert.equal((await bans.get(ip))?.count, 1);
  });

  it('never bans the allow list, never scores when off, yet honours stored bans when off', async () => {
    const { d, events } = setup('allow', { threshold: 1, allowList: ['198.51.100.0/24', '2001:db8::/32'] });
    assert.equal(await d.score('198.51.100.9', 'ftp', 'login-failed'), false);
    assert.equal(await d.score('2001:db8::5', 'ftp', 'login-failed'), false);
    assert.equal(await d.score('::ffff:198.51.100.9', 'ftp', 'login-failed'), false);
    assert.equal(events.length, 0);
    const off = setup('off', { enabled: false, threshold: 1 });
    assert.equal(await off.d.score('192.0.2.1', 'ftp', 'login-failed'), false);
    await off.bans.put('192.0.2.1', null, 1, 'added by an administrator');
    assert.equal(off.d.banned('192.0.2.1'), true);
  });

  it('scores 200k distinct addresses in linear time and memory, forgetting the oldest past the cap', { timeout: 60_000 }, async () => {
    const { d } = setup('flood', { threshold: 2 });
    // Four IPv6 /48s offer this many /64s (each a source of its own), each offence a cheap HTTP verb on the FTP port.
    const ip = (i: number) => `2001:db8:${(i >>> 16).toString(16)}:${(i & 0xffff).toString(16)}::1`;
    const total = 200_000;
    // Quadratic pruning took minutes here; linear takes well under a second. Checked as it goes, so the old code fails soon.
    const budgetMs = 10_000;
    const spentMs = cpuSince();
    for (let i = 0; i < total; i++) {
      assert.equal(await d.score(ip(i), 'ftp', 'protocol-abuse'), false);
      if (i % 10_000 === 0) assert.ok(spentMs() < budgetMs, `${i} addresses took over ${budgetMs} ms of CPU`);
    }
    assert.ok(spentMs() < budgetMs, `${total} addresses took over ${budgetMs} ms of CPU`);
    assert.ok(d.tracked <= 100_000, `tracking ${d.tracked} addresses`);
    assert.equal(await d.score(ip(total - 1), 'ftp', 'protocol-abuse'), true, 'a recent address keeps its count');
    assert.equal(await d.score(ip(0), 'ftp', 'protocol-abuse'), false, 'the oldest was forgotten');
  });
});

describe('failure throttle (in process)', () => {
  it('passes ten failures per address a window, then counts the rest into one summary', () => {
    const out: AuditEvent[] = [];
    const t = new FailureThrottle({ record: (_a, e) => out.push(e) }, (ip) => ip);
    const actor = (ip: string): Actor => ({ session: 's', user: 'u', protocol: 'sftp', ip, port: 1 });
    const failed: AuditEvent = { event: 'login-failed', method: 'password', reason: 'bad-password' };
    for (let i = 0; i < 500; i++) t.record(actor('192.0.2.1'), failed);
    for (let i = 0; i < 3; i++) t.record(actor('192.0.2.2'), failed);
    t.record(actor('192.0.2.1'), { event: 'logout', duration_ms: 1 });
    assert.equal(out.filter((e) => e.event === 'login-failed').length, 13);
    assert.equal(out.filter((e) => e.event === 'logout').length, 1, 'other events pass straight through');
    t.flush();
    assert.deepEqual(out.filter((e) => e.event === 'login-failed-repeated'), [{ event: 'login-failed-repeated', count: 490, window_s: 60 }]);
    t.flush();
    assert.equal(out.filter((e) => e.event === 'login-failed-repeated').length, 1, 'a new window starts empty');
  });

  it('counts per source: an IPv6 client taking a new address of its /64 for each try gets no more lines', () => {
    const out: [Actor, AuditEvent][] = [];
    const t = new FailureThrottle({ record: (a, e) => out.push([a, e]) }, (ip) => sourceOf(ip, 64));
    const failed: AuditEvent = { event: 'login-failed', method: 'password', reason: 'bad-password' };
    for (let i = 1; i <= 500; i++) t.record({ session: 's', user: 'u', protocol: 'ftp', ip: `2001:db8:1:2::${i.toString(16)}`, port: 1 }, failed);
    assert.equal(out.length, 10);
    t.flush();
    const summary = out.at(-1);
    assert.equal(summary?.[0].ip, '2001:db8:1:2::/64');
    assert.deepEqual(summary?.[1], { event: 'login-failed-repeated', count: 490, window_s: 60 });
  });
});
