import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { Coordination } from '../src/app.js';
import type { Actor } from '../src/audit/events.js';
import { RemoteCoordinator, type Channel } from '../src/coordinator/ipc-client.js';
import type { PrimaryMessage, SingleWorkerMessage, WorkerMessage } from '../src/coordinator/ipc-messages.js';
import { WorkerLink } from '../src/coordinator/ipc-server.js';
import type { Account } from '../src/session/account.js';
import { SCANS_PER_USER } from '../src/session/scanning.js';
import { primaryOnTempStore } from './helpers/in-process.js';
import { waitFor } from './helpers/quota.js';

/*
 * Issue #14 (performance): a worker's messages to the primary. The real
 * worker side (RemoteCoordinator) and primary side (WorkerLink, on the
 * primary's real coordination over a store in a temp directory) joined by a
 * channel that carries messages as the IPC channel does: serialized, in
 * order, in a later turn of the event loop; to the worker, those sent in one
 * turn arrive in one read, each handled in a process.nextTick of its own,
 * all of them before any promise continuation. What crosses it is counted.
 */

/** One worker's end of a channel to `link`, counting what it sends. */
function wire(coordination: Coordination, worker: number): { coordinator: RemoteCoordinator; link: WorkerLink; sent: WorkerMessage[] } {
  const sent: WorkerMessage[] = [];
  const listeners: ((m: PrimaryMessage) => void)[] = [];
  let arriving: PrimaryMessage[] = [];
  const toWorker = (m: PrimaryMessage) => {
    if (arriving.push(JSON.parse(JSON.stringify(m)) as PrimaryMessage) > 1) return;
    setImmediate(() => {
      const read = arriving;
      arriving = [];
      for (const message of read) process.nextTick(() => listeners.forEach((l) => l(message)));
    });
  };
  const link = new WorkerLink(worker, coordination.coordinator, coordination.quotas, toWorker);
  const channel: Channel = {
    send: (m) => {
      sent.push(m);
      const copy = JSON.parse(JSON.stringify(m)) as WorkerMessage;
      setImmediate(() => link.handle(copy));
    },
    onMessage: (l) => void listeners.push(l),
  };
  return { coordinator: new RemoteCoordinator(channel, true), link, sent };
}

const account: Account = { id: 4242, name: 'carol', home: '', quotaBytes: 0, quotaFiles: 1, rateUp: null, rateDown: null, scan: null, requireTls: false, revision: 0, readAt: 0, method: 'password', key: null, passwordMark: null, permissions: { root: new Set(), dirs: new Map() } };
const actor: Actor = { session: 's1', user: 'carol', protocol: 'sftp', ip: '127.0.0.1', port: 40000 };

describe('worker to primary: what needs no answer is batched per tick', () => {
  const { dir, primary } = primaryOnTempStore();

  it("an upload's end (its ledger notes and its record) crosses as one message, and the primary applies every part", async () => {
    const { coordinator, sent } = wire(primary(), 1);
    const ledger = await coordinator.ledgers.acquire(account);
    await ledger.checkStart({ createsFile: true, credit: 0, claim: null, lock: null });
    sent.length = 0;
    ledger.releaseFile();
    ledger.settle(0, 0, 0);
    coordinator.audit?.record(actor, { event: 'mkdir', path: '/batched-record' });
    await ledger.synced();
    // The three notes went with the question that followed them in the same tick: one message.
    assert.equal(sent.length, 1);
    assert.deepEqual(
      (sent[0] as Extract<WorkerMessage, { t: 'batch' }>).messages.map((m) => m.t),
      ['ledger-note', 'ledger-note', 'audit', 'ask'],
    );
    // The slot given back is free again: another worker can take it.
    const other = await wire(primary(), 2).coordinator.ledgers.acquire(account);
    await other.holdFile();
    other.release();
    ledger.release();
    await waitFor('the record in the audit log', () => existsSync(join(dir, 'data', 'audit.log')) && readFileSync(join(dir, 'data', 'audit.log'), 'utf8').includes('"path":"/batched-record"'));
  });

  it('what is said in one tick with no question after it still goes, once, at the end of the tick', async () => {
    const { coordinator, sent } = wire(primary(), 3);
    const ledger = await coordinator.ledgers.acquire(account);
    await ledger.holdFile();
    sent.length = 0;
    ledger.releaseFile();
    ledger.release();
    assert.equal(sent.length, 0, 'sent before the tick ended');
    await Promise.resolve();
    assert.equal(sent.length, 1);
    // Applied: the file slot is free for another worker.
    const other = await wire(primary(), 4).coordinator.ledgers.acquire(account);
    await other.holdFile();
    other.release();
  });

  it('a message of a batch that fails does not lose the ones after it', async () => {
    const { coordinator, link, sent } = wire(primary(), 5);
    const ledger = await coordinator.ledgers.acquire(account);
    await ledger.holdFile();
    const ask = sent.find((m) => m.t === 'ask' && m.op === 'ledger-ask');
    assert.ok(ask?.t === 'ask' && ask.op === 'ledger-ask');
    const broken = { t: 'audit', actor } as unknown as SingleWorkerMessage;
    assert.throws(() => link.handle({ t: 'batch', messages: [broken, { t: 'ledger-note', handle: ask.handle, method: 'releaseFile', args: [] }] }));
    const other = await wire(primary(), 6).coordinator.ledgers.acquire(account);
    await other.holdFile();
    other.release();
    ledger.release();
  });
});

describe('a user without a quota: an upload waits for no answer from the primary', () => {
  const { primary } = primaryOnTempStore();
  const free: Account = { ...account, id: 6001, quotaBytes: 0, quotaFiles: 0 };

  it('start, name slot, reservation and commit check are said, not asked; the primary still counts them, and a claim still asks', async () => {
    const { coordinator, link, sent } = wire(primary(), 1);
    const ledger = await coordinator.ledgers.acquire(free);
    sent.length = 0;
    assert.equal(await ledger.checkStart({ createsFile: true, credit: 0, claim: null, lock: null }), false);
    await ledger.reserve(4096, 0);
    await ledger.holdFile();
    await ledger.checkCommit(4096, 4096, 0, true);
    const asked = () => sent.flatMap((m) => (m.t === 'batch' ? m.messages : [m])).filter((m) => m.t === 'ask');
    assert.deepEqual(asked(), [], 'no question');
    await ledger.synced();
    // What was said reached the primary's handle: released with the session, it gives all of it back.
    const handle = (link as unknown as { handles: Map<number, { reserved: number; files: number }> }).handles.values().next().value!;
    assert.deepEqual([handle.reserved, handle.files], [4096, 2]);
    ledger.settle(4096, 4096, 1);
    ledger.releaseFile();
    ledger.releaseFile();
    await ledger.synced();
    assert.deepEqual([handle.reserved, handle.files], [0, 0]);
    sent.length = 0;
    assert.equal(await ledger.checkStart({ createsFile: false, credit: 10, claim: '1:99', lock: null }), true);
    assert.equal(asked().length, 1, 'a claim is asked');
    ledger.release();
  });

  it('a limited user asks as before', async () => {
    const { coordinator, sent } = wire(primary(), 2);
    const ledger = await coordinator.ledgers.acquire({ ...free, id: 6002, quotaBytes: 1 << 20 });
    sent.length = 0;
    await ledger.checkStart({ createsFile: true, credit: 0, claim: null, lock: null });
    await ledger.reserve(4096, 0);
    await ledger.checkCommit(4096, 4096, 0, true);
    assert.equal(sent.filter((m) => m.t === 'ask').length, 3);
    ledger.release();
  });
});

describe('a quota set while the user is logged in', () => {
  const { primary } = primaryOnTempStore();
  const free: Account = { ...account, id: 6101, quotaBytes: 0, quotaFiles: 0, revision: 1 };
  const limited: Account = { ...free, quotaBytes: 1000, revision: 2 };

  it("binds a worker's session opened without one, even when the login that brings it comes right behind the worker's answer", async () => {
    const coordination = primary();
    const { coordinator, link } = wire(coordination, 7);
    // The primary's answer to the worker goes out, and in the same turn another worker's login brings the quota.
    const send = (link as unknown as { send: (m: PrimaryMessage) => void }).send;
    let other: Promise<unknown> | null = null;
    (link as unknown as { send: (m: PrimaryMessage) => void }).send = (m) => {
      send(m);
      if (m.t === 'answer' && other === null) other = coordination.quotas.handle(limited).then((h) => h);
    };
    const ledger = await coordinator.ledgers.acquire(free);
    // Assigned in the send above, which TypeScript does not follow: it takes `other` for null here.
    const held = (await other) as unknown as { release(): void };
    await assert.rejects(
      (async () => {
        await ledger.reserve(5000, 0);
        await ledger.checkCommit(5000, 5000, 0, true);
      })(),
      (e: unknown) => e instanceof Error && /quota/i.test(e.message),
    );
    ledger.release();
    held.release();
  });

  it('a session that brings an older read of the user than the last one changes no limits', async () => {
    const quotas = primary().quotas;
    const fresh = await quotas.acquire({ ...limited, id: 6102 });
    await assert.rejects(fresh.reserve(5000, 0));
    // A channel of an SSH connection made before the change, or a login that read the user just before it.
    const stale = await quotas.acquire({ ...free, id: 6102 });
    await assert.rejects(fresh.reserve(5000, 0));
    await assert.rejects(stale.reserve(5000, 0));
    stale.release();
    fresh.release();
  });
});

describe('what only counts (metrics, a ledger without a quota) waits for the next message, a short while at most', () => {
  const { primary } = primaryOnTempStore();
  const free: Account = { ...account, id: 6201, quotaBytes: 0, quotaFiles: 0, revision: 1 };
  const kinds = (m: WorkerMessage | undefined) => (m === undefined ? [] : m.t === 'batch' ? m.messages.map((x) => x.t) : [m.t]);
  const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

  it("a small upload's start and first write cost no message of their own: they go with its start record and its end", async () => {
    const { coordinator, sent } = wire(primary(), 1);
    const ledger = await coordinator.ledgers.acquire(free);
    sent.length = 0;
    await ledger.checkStart({ createsFile: true, credit: 0, claim: null, lock: null });
    await nextTurn();
    assert.equal(sent.length, 0, 'the step of an unlimited ledger went alone');
    coordinator.started(actor, 'upload', '/small', 0, new Date());
    await nextTurn();
    assert.deepEqual(sent.map(kinds), [['ledger-note', 'transfer-open']]);
    await ledger.reserve(4096, 0);
    coordinator.metrics.count({ m: 'session', protocol: 'sftp', change: 1 });
    await nextTurn();
    assert.equal(sent.length, 1, 'a reservation or a count went alone');
    ledger.settle(4096, 4096, 1);
    coordinator.audit?.record(actor, { event: 'mkdir', path: '/small-record' });
    await nextTurn();
    assert.deepEqual(sent.map(kinds)[1], ['ledger-note', 'metric', 'ledger-note', 'audit']);
    ledger.release();
  });

  it('with nothing after it, it still goes, within a few milliseconds', async () => {
    const { coordinator, sent } = wire(primary(), 2);
    const ledger = await coordinator.ledgers.acquire(free);
    sent.length = 0;
    await ledger.reserve(100, 0);
    await nextTurn();
    assert.equal(sent.length, 0);
    await waitFor('the lingering note sent', () => sent.length === 1);
    assert.deepEqual(kinds(sent[0]), ['ledger-note']);
    ledger.release();
  });

  it("a limited ledger's steps and an upload's start record do not wait past the tick; flushNow sends what waits at once", async () => {
    const { coordinator, sent } = wire(primary(), 3);
    const limited = await coordinator.ledgers.acquire({ ...free, id: 6202, quotaBytes: 1 << 20 });
    await limited.holdFile();
    sent.length = 0;
    limited.releaseFile();
    await Promise.resolve();
    assert.deepEqual(sent.map(kinds), [['ledger-note']]);
    coordinator.started(actor, 'upload', '/limited', 0, new Date());
    await Promise.resolve();
    assert.deepEqual(sent.map(kinds)[1], ['transfer-open']);
    coordinator.metrics.count({ m: 'session', protocol: 'sftp', change: -1 });
    coordinator.flushNow();
    assert.deepEqual(sent.map(kinds)[2], ['metric']);
    limited.release();
  });
  it('a ledger opened without a quota stops waiting once the user gets one', async () => {
    const coordination = primary();
    const { coordinator, sent } = wire(coordination, 4);
    const ledger = await coordinator.ledgers.acquire(free);
    const held = await coordination.quotas.handle({ ...free, quotaBytes: 1000, revision: 2 });
    await waitFor('the primary says the ledger has a quota', () => !ledger.unlimited);
    sent.length = 0;
    ledger.release();
    await Promise.resolve();
    assert.deepEqual(sent.map(kinds), [['ledger-note']]);
    held.release();
  });

  it('a released connection slot and a system record do not wait past the tick', async () => {
    const { coordinator, sent } = wire(primary(), 5);
    const slot = await coordinator.admit('127.0.0.9');
    assert.ok(typeof slot === 'function');
    sent.length = 0;
    slot();
    await Promise.resolve();
    assert.deepEqual(sent.map(kinds), [['release']]);
    coordinator.audit?.system({ event: 'upload-temps-removed', home: '/h', count: 0, bytes: 0 });
    await Promise.resolve();
    assert.deepEqual(sent.map(kinds)[1], ['system']);
  });
});

describe("an upload's start: claim, check and in-place lock in one round trip, held across workers", () => {
  const { primary } = primaryOnTempStore();
  const user = (id: number, quotaBytes: number, quotaFiles: number): Account => ({ ...account, id, quotaBytes, quotaFiles });

  it("an overwrite's claim counts its credit on one worker only; the other is refused, and wins once it is given back", async () => {
    const carol = user(5001, 100, 0);
    const filler = await wire(primary(), 1).coordinator.ledgers.acquire(carol);
    await filler.reserve(100, 0);
    const a = wire(primary(), 2);
    const b = wire(primary(), 3);
    const [la, lb] = await Promise.all([a.coordinator.ledgers.acquire(carol), b.coordinator.ledgers.acquire(carol)]);
    const start = { createsFile: false, credit: 50, claim: '1:77', lock: null };
    a.sent.length = 0;
    assert.equal(await la.checkStart(start), true);
    assert.equal(a.sent.length, 1, 'claim and check: one question');
    // Without the claim, no credit: the quota is full.
    await assert.rejects(lb.checkStart(start), { kind: 'quota-exceeded' });
    la.unclaim('1:77');
    await la.synced();
    assert.equal(await lb.checkStart(start), true);
    for (const l of [filler, la, lb]) l.release();
  });

  it('the in-place lock is one writer across workers; a refused start keeps no name slot', async () => {
    const dave = user(5002, 0, 1);
    const a = await wire(primary(), 4).coordinator.ledgers.acquire(dave);
    const b = await wire(primary(), 5).coordinator.ledgers.acquire(dave);
    assert.equal(await a.checkStart({ createsFile: false, credit: 0, claim: null, lock: '1:88' }), false);
    await assert.rejects(b.checkStart({ createsFile: true, credit: 0, claim: null, lock: '1:88' }), { kind: 'failure' });
    // The slot b asked for went back with the refusal: the one name dave may add is still there.
    await b.holdFile();
    a.unlockInPlace('1:88');
    await a.synced();
    b.releaseFile();
    assert.equal(await b.checkStart({ createsFile: true, credit: 0, claim: null, lock: '1:88' }), false);
    for (const l of [a, b]) l.release();
  });
});

describe("a user's turns at the scanner are the primary's, whichever worker asks", () => {
  const { primary } = primaryOnTempStore();
  const never = new AbortController().signal;
  /** The single messages of `sent`, batches opened. */
  const flat = (sent: WorkerMessage[]): SingleWorkerMessage[] => sent.flatMap((m) => (m.t === 'batch' ? m.messages : [m]));

  it("a worker's turns count against another's; a wait given up takes none, nor does the turn of a worker gone", async () => {
    const a = wire(primary(), 1);
    const b = wire(primary(), 2);
    const held = await Promise.all(Array.from({ length: SCANS_PER_USER }, () => a.coordinator.scanTurns.take('erin', never)));
    // b's wait, given up: it rejects with the reason, and the primary is told.
    const givenUp = new AbortController();
    const abandoned = b.coordinator.scanTurns.take('erin', givenUp.signal);
    let came = false;
    const next = b.coordinator.scanTurns.take('erin', never).then((release) => ((came = true), release));
    await waitFor("b's two questions at the primary", () => flat(b.sent).filter((m) => m.t === 'ask').length === 2);
    givenUp.abort(new Error('deadline'));
    await assert.rejects(abandoned, /deadline/);
    await waitFor('the cancel sent', () => flat(b.sent).some((m) => m.t === 'cancel'));
    assert.equal(came, false, "a's turns are all of erin's");
    // a's first turn given back goes to b's wait still there, not to the one given up.
    held[0]?.();
    const turn = await next;
    assert.equal(flat(b.sent).filter((m) => m.t === 'release').length, 0, 'no turn came to the wait given up');
    // a worker gone gives back its turns: b takes another at once.
    a.link.workerGone('SIGKILL', null);
    const more = await b.coordinator.scanTurns.take('erin', AbortSignal.timeout(5000));
    turn();
    more();
  });
});
