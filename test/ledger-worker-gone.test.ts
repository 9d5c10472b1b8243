import assert from 'node:assert/strict';
import { it } from 'node:test';
import { WorkerLink } from '../src/coordinator/ipc-server.js';
import type { Account } from '../src/session/account.js';
import { primaryOnTempStore } from './helpers/in-process.js';

/*
 * A ledger opens asynchronously (its user's usage may come from the
 * database), so a worker can die between asking for one and getting it. The
 * primary's real coordination on a store in a temp directory (primaryOnTempStore).
 */
const { dir, primary, admin } = primaryOnTempStore();

it('a ledger asked for by a worker that dies before the answer is closed, not kept for ever', async () => {
  const user = await admin().users.create('dora', null, {
    home: dir, enabled: true, expiresAt: null, protocols: ['sftp'], requireTls: false, requireKey: false, permissions: ['list'],
    quotaBytes: 1000, quotaFiles: 10, rateUp: null, rateDown: null, scan: null, allowIps: [], denyIps: [],
  });
  const link = new WorkerLink(1, primary().coordinator, primary().quotas, () => undefined);
  link.handle({ t: 'ask', id: 1, op: 'ledger', account: { id: user.id, quotaBytes: 1000, quotaFiles: 10, revision: 0 } });
  link.workerGone('killed', null);
  // Wait for the open the dead worker started to finish.
  await new Promise((r) => setImmediate(r));
  // A recount since: a ledger made now reads it, one the dead worker still held would not.
  await admin().users.setUsage(user.id, 500, 5);
  const account: Account = { id: user.id, name: 'dora', home: dir, quotaBytes: 1000, quotaFiles: 10, rateUp: null, rateDown: null, scan: null, requireTls: false, revision: 0, readAt: 0, method: 'password', key: null, passwordMark: null, permissions: { root: new Set(), dirs: new Map() } };
  const ledger = await primary().quotas.acquire(account);
  assert.deepEqual(await ledger.usage(), { bytes: 500, files: 5 });
  ledger.release();
});

it("a session slot a worker that dies before the answer asked for is given back, not counted for ever", async () => {
  // Found by a review: keep() held a claim answered after the worker was gone; nothing released it.
  const link = new WorkerLink(2, primary().coordinator, primary().quotas, () => undefined);
  link.handle({ t: 'ask', id: 1, op: 'claim-user', user: 'erin', max: 1 });
  link.workerGone('killed', null);
  await new Promise((r) => setImmediate(r));
  const again = await primary().coordinator.claimUser('erin', 1);
  assert.ok(again, "the dead worker's claim still counts: erin is at her limit of 1");
  again();
});

it('two transfers of one path that a session opened in the same millisecond: the one unfinished when the worker dies is recorded aborted', () => {
  // Found by a review: keyed alike, the first one's record forgot the second, which then had no record at all.
  const recorded: { event: string; result?: unknown; path?: unknown }[] = [];
  const audit = { record: (_actor: unknown, event: { event: string; result?: unknown; path?: unknown }) => recorded.push(event), system: () => undefined };
  const link = new WorkerLink(3, primary().coordinator, primary().quotas, () => undefined);
  const actor = { session: 's1', user: 'fay', protocol: 'sftp' as const, ip: '10.0.0.1', port: 2222 };
  const started = new Date().toISOString();
  for (let i = 0; i < 2; i++) link.handle({ t: 'transfer-open', actor, direction: 'download', path: '/big.iso', offset: 0, started });
  link.handle({
    t: 'audit',
    actor,
    event: { event: 'download', path: '/big.iso', bytes: 1, size: 1, offset: 0, resumed: false, started, duration_ms: 0, result: 'ok', sha256: null, type: 'binary' },
  });
  link.workerGone('worker process ended by SIGKILL', audit as never);
  assert.deepEqual(
    recorded.filter((r) => r.event === 'download').map((r) => [r.path, r.result]),
    [['/big.iso', 'aborted']],
  );
});

it('of two transfers of one key from different offsets, the record of one ends that one: the survivor is recorded aborted from its own offset', () => {
  const recorded: { event: string; offset?: unknown }[] = [];
  const audit = { record: (_actor: unknown, event: { event: string; offset?: unknown }) => recorded.push(event), system: () => undefined };
  const link = new WorkerLink(4, primary().coordinator, primary().quotas, () => undefined);
  const actor = { session: 's2', user: 'gil', protocol: 'sftp' as const, ip: '10.0.0.1', port: 2222 };
  const started = new Date().toISOString();
  for (const offset of [0, 4096]) link.handle({ t: 'transfer-open', actor, direction: 'download', path: '/f', offset, started });
  link.handle({
    t: 'audit',
    actor,
    event: { event: 'download', path: '/f', bytes: 1, size: 4097, offset: 4096, resumed: true, started, duration_ms: 0, result: 'ok', sha256: null, type: 'binary' },
  });
  link.workerGone('killed', audit as never);
  assert.deepEqual(recorded.filter((r) => r.event === 'download').map((r) => r.offset), [0]);
});

it("an upload recorded where it ended (its directory renamed while open) ends the transfer its open started: none is left to record aborted", () => {
  // Found by a review: matched by `path`, not the path of the open, the entry stayed for the worker's lifetime
  // and its exit recorded aborted an upload whose ok record was in the trail.
  const recorded: { event: string }[] = [];
  const audit = { record: (_actor: unknown, event: { event: string }) => recorded.push(event), system: () => undefined };
  const link = new WorkerLink(5, primary().coordinator, primary().quotas, () => undefined);
  const actor = { session: 's3', user: 'hal', protocol: 'sftp' as const, ip: '10.0.0.1', port: 2222 };
  const started = new Date().toISOString();
  link.handle({ t: 'transfer-open', actor, direction: 'upload', path: '/d0/f.bin', offset: 0, started });
  link.handle({
    t: 'audit',
    actor,
    event: { event: 'upload', path: '/e0/f.bin', path_at_open: '/d0/f.bin', bytes: 1, size: 1, offset: 0, resumed: false, started, duration_ms: 0, result: 'ok', sha256: null, type: 'binary' },
  });
  link.workerGone('worker process exited with code 0', audit as never);
  assert.deepEqual(recorded, []);
});
