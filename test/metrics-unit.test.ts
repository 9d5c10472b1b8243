// The metrics' pure parts and the registry they feed, without a server:
// what each event counts, when a certificate is too close to expiry, what
// /readyz reports. test/metrics.test.ts counts real logins and transfers.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, describe, test } from 'node:test';
import pino from 'pino';
import type { MetricEvent } from '../src/metrics/events.js';
import { certificateProblem } from '../src/certs/expiry.js';
import { readiness, ReadinessLog, ServingState, type ReadinessSources } from '../src/metrics/health.js';
import { countedReason, ServerMetrics } from '../src/metrics/registry.js';
import { parseMetrics, sample } from './helpers/prometheus.js';

const DAY = 86_400_000;
const now = new Date('2026-12-01T00:00:00Z');

test('certificateProblem: more than 7 days left is fine; 7 or fewer, or expired, is named', () => {
  const cases: [days: number, expect: RegExp | null][] = [
    [30, null],
    [7.01, null],
    [7, /expires in 7\.0 days/],
    [3, /expires in 3\.0 days \(2026-12-04T00:00:00\.000Z\), less than 7/],
    [0, /expired at/],
    [-1, /expired at 2026-11-30/],
  ];
  for (const [days, expect] of cases) {
    const got = certificateProblem(new Date(now.getTime() + days * DAY), now);
    if (expect === null) assert.equal(got, null, `${days} days`);
    else assert.match(got ?? '', expect, `${days} days`);
  }
  assert.match(certificateProblem(new Date('not a date'), now) ?? '', /no readable expiry/);
});

test('ServingState: ready only with every expected process up, and never while stopping', () => {
  const s = new ServingState();
  assert.match(s.problem() ?? '', /not serving/);
  s.expect(2);
  assert.match(s.problem() ?? '', /0 of 2/);
  s.started(1);
  assert.match(s.problem() ?? '', /1 of 2/);
  s.started(2);
  assert.equal(s.problem(), null);
  s.stopped(1);
  assert.match(s.problem() ?? '', /1 of 2/);
  s.started(3);
  assert.equal(s.problem(), null);
  s.stopping();
  assert.match(s.problem() ?? '', /not serving/);
});

test('countedReason: read by anyone, a failed login says only what its client was told', () => {
  const cases: [string, boolean, string][] = [
    ['', true, ''],
    ['session-limit', true, 'session-limit'],
    ['bad-password', true, 'refused'],
    ['unknown-user', true, 'refused'],
    ['key-required', true, 'refused'],
    ['address-not-allowed', true, 'refused'],
    ['connection-closed', true, 'refused'],
    ['bad-password', false, 'bad-password'],
    ['key-required', false, 'key-required'],
  ];
  for (const [reason, readByAnyone, counted] of cases) assert.equal(countedReason(reason, readByAnyone), counted, `${reason} ${readByAnyone}`);
});

test('ServerMetrics: each event counts where it says, and nothing else moves', async () => {
  const m = new ServerMetrics(async () => 4);
  const events: MetricEvent[] = [
    { m: 'login', protocol: 'ftp', result: 'ok', reason: '' },
    { m: 'login', protocol: 'sftp', result: 'failed', reason: 'bad-password' },
    { m: 'login', protocol: 'sftp', result: 'failed', reason: 'bad-password' },
    { m: 'session', protocol: 'sftp', change: 1 },
    { m: 'session', protocol: 'sftp', change: 1 },
    { m: 'session', protocol: 'sftp', change: -1 },
    { m: 'transfer', protocol: 'ftps', direction: 'upload', bytes: 1000, seconds: 0.5, result: 'ok' },
    { m: 'transfer', protocol: 'ftps', direction: 'upload', bytes: 24, seconds: 40, result: 'aborted' },
    { m: 'quota-refused', protocol: 'ftp' },
  ];
  for (const e of events) m.count(e);
  m.linesWritten(3);
  m.flushed(0.002);
  const s = parseMetrics(await m.text());
  const expected: [string, Record<string, string>, number][] = [
    ['sluice_logins_total', { protocol: 'ftp', result: 'ok', reason: '' }, 1],
    ['sluice_logins_total', { protocol: 'sftp', result: 'ok', reason: '' }, 0],
    ['sluice_logins_total', { protocol: 'sftp', result: 'failed', reason: 'bad-password' }, 2],
    ['sluice_sessions', { protocol: 'sftp' }, 1],
    ['sluice_sessions', { protocol: 'ftp' }, 0],
    ['sluice_transfer_bytes_total', { protocol: 'ftps', direction: 'upload' }, 1024],
    ['sluice_transfer_bytes_total', { protocol: 'ftps', direction: 'download' }, 0],
    ['sluice_transfer_files_total', { protocol: 'ftps', direction: 'upload', result: 'ok' }, 1],
    ['sluice_transfer_files_total', { protocol: 'ftps', direction: 'upload', result: 'aborted' }, 1],
    ['sluice_transfer_duration_seconds_count', { protocol: 'ftps', direction: 'upload' }, 2],
    ['sluice_transfer_duration_seconds_bucket', { protocol: 'ftps', direction: 'upload', le: '1' }, 1],
    ['sluice_transfer_duration_seconds_bucket', { protocol: 'ftps', direction: 'upload', le: '120' }, 2],
    ['sluice_quota_refusals_total', { protocol: 'ftp' }, 1],
    ['sluice_bans_active', {}, 4],
    ['sluice_audit_lines_total', {}, 3],
    ['sluice_audit_flush_seconds_count', {}, 1],
  ];
  for (const [name, labels, value] of expected) assert.equal(sample(s, name, labels), value, `${name} ${JSON.stringify(labels)}`);
});

test('ServerMetrics: process samples per worker; CPU grows by each sample\'s difference; a gone worker leaves no series', async () => {
  const m = new ServerMetrics(async () => 0);
  m.sampled('0', { rssBytes: 100, cpuSeconds: 1.5, loopDelayP99Seconds: 0.01, loopDelayMaxSeconds: 0.02 });
  m.sampled('1', { rssBytes: 200, cpuSeconds: 2, loopDelayP99Seconds: 0, loopDelayMaxSeconds: 0 });
  m.sampled('1', { rssBytes: 300, cpuSeconds: 2.5, loopDelayP99Seconds: 0.03, loopDelayMaxSeconds: 0.04 });
  let s = parseMetrics(await m.text());
  assert.equal(sample(s, 'sluice_process_resident_memory_bytes', { worker: '0' }), 100);
  assert.equal(sample(s, 'sluice_process_resident_memory_bytes', { worker: '1' }), 300);
  assert.equal(sample(s, 'sluice_process_cpu_seconds_total', { worker: '1' }), 2.5);
  assert.equal(sample(s, 'sluice_event_loop_delay_p99_seconds', { worker: '1' }), 0.03);
  assert.equal(sample(s, 'sluice_event_loop_delay_max_seconds', { worker: '0' }), 0.02);
  m.workerGone('1');
  s = parseMetrics(await m.text());
  assert.equal(s.has('sluice_process_resident_memory_bytes{worker="1"}'), false);
  assert.equal(s.has('sluice_process_cpu_seconds_total{worker="1"}'), false);
  assert.equal(sample(s, 'sluice_process_resident_memory_bytes', { worker: '0' }), 100);
});

/** A pino logger whose lines are kept as `LEVEL MESSAGE`. */
function recorder(): { log: pino.Logger; lines: string[] } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      const { level, msg } = JSON.parse(chunk.toString()) as { level: number; msg: string };
      lines.push(`${level} ${msg}`);
      done();
    },
  });
  return { log: pino({}, sink), lines };
}

describe('readiness, on real files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-ready-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const cert = (name: string, days: number) => {
    const file = join(dir, `${name}.pem`);
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', join(dir, `${name}.key`), '-out', file, '-days', String(days), '-subj', '/CN=localhost'], { stdio: 'ignore' });
    return file;
  };
  const long = cert('long', 90);
  const short = cert('short', 3);
  mkdirSync(join(dir, 'audit'));
  writeFileSync(join(dir, 'audit', 'audit.log'), '');
  const serving = new ServingState();
  serving.expect(1);
  serving.started(0);
  const base: ReadinessSources = { serving, storeAnswers: async () => undefined, auditFile: join(dir, 'audit', 'audit.log'), certFile: long };

  test('all well: ready, no reasons', async () => {
    assert.deepEqual(await readiness(base), { ready: true, reasons: [], warnings: [] });
  });

  test('each problem is named', async () => {
    // The reason is a fixed label (/readyz is public); the detail, for the log, says what and where.
    const cases: [string, Partial<ReadinessSources>, string, RegExp][] = [
      ['no certificate', { certFile: join(dir, 'none.pem') }, 'certificate unreadable', /^certificate unreadable: ENOENT on .*none\.pem$/],
      ['store fails', { storeAnswers: async () => { throw new Error('database is locked'); } }, 'store unavailable', /^store does not answer: database is locked$/],
      ['audit directory missing', { auditFile: join(dir, 'gone', 'audit.log') }, 'audit log not writable', /^audit log not writable: ENOENT on .*gone$/],
      ['audit file a directory', { auditFile: join(dir, 'audit') }, 'audit log not writable', /^audit log not writable: .*audit is not a file$/],
    ];
    for (const [what, change, reason, detail] of cases) {
      const { log, lines } = recorder();
      const r = await readiness({ ...base, ...change, details: new ReadinessLog(log) });
      assert.equal(r.ready, false, what);
      assert.deepEqual(r.reasons, [reason], what);
      assert.equal(lines.length, 1, what);
      assert.match(lines[0]?.replace(/^40 not ready: /, '') ?? '', detail, what);
    }
  });

  test('a certificate within 7 days of its end is a warning: still ready, and logged', async () => {
    const { log, lines } = recorder();
    const r = await readiness({ ...base, certFile: short, details: new ReadinessLog(log) });
    assert.deepEqual(r, { ready: true, reasons: [], warnings: ['certificate expires within 7 days'] });
    assert.equal(lines.length, 1);
    assert.match(lines[0] ?? '', /^40 ready, but: certificate .*short\.pem expires at \d{4}-.*, within 7 days$/);
  });

  test('the details are logged when they change, not at every probe', async () => {
    const { log, lines } = recorder();
    const details = new ReadinessLog(log);
    const broken = { ...base, certFile: short, details };
    await readiness(broken);
    await readiness(broken);
    await readiness({ ...base, details });
    await readiness({ ...base, details });
    assert.equal(lines.length, 2, lines.join('\n'));
    assert.match(lines[0] ?? '', /^40 ready, but: certificate .*short\.pem expires at/);
    assert.match(lines[1] ?? '', /^30 ready/);
  });

  test('audit directory replaced by a file: not writable, however privileged the server', async () => {
    renameSync(join(dir, 'audit'), join(dir, 'audit.moved'));
    writeFileSync(join(dir, 'audit'), 'not a directory');
    try {
      const r = await readiness(base);
      assert.deepEqual(r.reasons, ['audit log not writable']);
    } finally {
      rmSync(join(dir, 'audit'));
      renameSync(join(dir, 'audit.moved'), join(dir, 'audit'));
    }
  });
});
