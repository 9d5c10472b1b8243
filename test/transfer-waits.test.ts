import assert from 'node:assert/strict';
import { constants as C, promises as fsp, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { World } from './helpers/world.js';

/*
 * Issue #13: a small file's transfer is bounded by the trips to the thread
 * pool it waits for in a row. These are the ones it no longer waits for.
 */
describe('what the end of a transfer waits for', () => {
  let world: World;
  before(async () => {
    world = await World.open();
    await world.addUser('w');
  });
  after(() => world.close());

  it("a download's end (SFTP CLOSE's answer) does not wait for its descriptor's close", async () => {
    writeFileSync(join(world.home('w'), 'f'), 'data');
    const s = await world.session('w');
    const open = fsp.open;
    const held: (() => void)[] = [];
    // The close of the downloaded file hangs until the test lets it go.
    fsp.open = (async (...args: Parameters<typeof open>) => {
      const fh = await open(...args);
      if (String(args[0]).endsWith('/f')) {
        const close = fh.close.bind(fh);
        fh.close = () => new Promise<void>((resolve, reject) => held.push(() => void close().then(resolve, reject)));
      }
      return fh;
    }) as typeof open;
    let ended: string;
    try {
      const down = await s.openRead('f');
      assert.equal((await down.read(0, 100)).toString(), 'data');
      ended = await Promise.race([down.close().then(() => 'ended'), new Promise<string>((r) => setTimeout(() => r('waiting for the close'), 1000))]);
    } finally {
      fsp.open = open;
      for (const go of held) go();
    }
    assert.equal(ended, 'ended');
    assert.equal(held.length, 1, 'the descriptor is closed all the same');
    assert.equal((await world.auditLines()).findLast((l) => l.event === 'download')?.result, 'ok');
  });

  it("a download read ahead (FTP RETR, while its data connection readies) streams a small file with no read left to wait for", async () => {
    const text = 'small file '.repeat(300);
    writeFileSync(join(world.home('w'), 'g'), text);
    const s = await world.session('w');
    const down = await s.openRead('g');
    down.readAhead();
    // The read ahead has landed; from here on, count what the stream asks the disk.
    await new Promise((r) => setTimeout(r, 50));
    const probe = await fsp.open(join(world.home('w'), 'g'));
    const proto = Object.getPrototypeOf(probe) as { read: (...args: unknown[]) => unknown };
    await probe.close();
    const read = proto.read;
    let reads = 0;
    proto.read = function (this: unknown, ...args: unknown[]) {
      reads++;
      return read.apply(this, args);
    };
    let got: string;
    try {
      const chunks: Buffer[] = [];
      for await (const chunk of down.readable()) chunks.push(chunk as Buffer);
      got = Buffer.concat(chunks).toString();
    } finally {
      proto.read = read;
    }
    await down.close();
    assert.equal(got, text);
    assert.equal(reads, 0);
    assert.equal((await world.auditLines()).findLast((l) => l.event === 'download')?.bytes, text.length);
  });

  /** fsp.open as the server sees it while `watch` looks at every open (path, flags) and may replace the handle's close. */
  async function withOpens<T>(
    watch: (path: string, flags: number, fh: fsp.FileHandle) => void,
    body: () => Promise<T>,
  ): Promise<T> {
    const open = fsp.open;
    fsp.open = (async (...args: Parameters<typeof open>) => {
      const fh = await open(...args);
      watch(String(args[0]), Number(args[1] ?? 0), fh);
      return fh;
    }) as typeof open;
    try {
      return await body();
    } finally {
      fsp.open = open;
    }
  }

  /** A close that waits until `release` is called. */
  function holdClose(fh: fsp.FileHandle, held: (() => void)[]): void {
    const close = fh.close.bind(fh);
    fh.close = () => new Promise<void>((resolve, reject) => held.push(() => void close().then(resolve, reject)));
  }

  /**
   * Runs `body` while every measure of a staged upload (an fstat of its handle, or an lstat of its
   * hidden name) hangs; `pending` holds what lets each go on. Measures are counted as they start.
   */
  async function withStagedMeasureHeld<T>(pending: (() => void)[], body: () => Promise<T>): Promise<T> {
    const hang = <R>(measure: () => Promise<R>) => new Promise<R>((resolve, reject) => pending.push(() => void measure().then(resolve, reject)));
    const lstat = fsp.lstat;
    fsp.lstat = ((...args: Parameters<typeof lstat>) =>
      String(args[0]).includes('/.sluice-upload-') ? hang(() => lstat(...args)) : lstat(...args)) as typeof lstat;
    try {
      return await withOpens(
        (path, flags, fh) => {
          if ((flags & C.O_EXCL) === 0 || !path.includes('/.sluice-upload-')) return;
          const stat = fh.stat.bind(fh);
          fh.stat = ((...args: Parameters<typeof stat>) => hang(() => stat(...args))) as typeof stat;
        },
        body,
      );
    } finally {
      fsp.lstat = lstat;
    }
  }

  const O_PATH = 0o10000000;
  const race = <T>(p: Promise<T>, ms = 1000) =>
    Promise.race([p.then(() => 'done'), new Promise<string>((r) => setTimeout(() => r('waiting'), ms))]);

  it("an overwrite's start (150, SFTP OPEN's handle) does not wait for the old mode to be set, and the new file has it", async () => {
    const path = join(world.home('w'), 'moded');
    writeFileSync(path, 'old');
    await fsp.chmod(path, 0o600);
    const s = await world.session('w');
    const proto = Object.getPrototypeOf(await fsp.open(path).then(async (fh) => (await fh.close(), fh))) as { chmod: (mode: number) => Promise<void> };
    const chmod = proto.chmod;
    const held: (() => void)[] = [];
    proto.chmod = function (this: fsp.FileHandle, mode: number) {
      return new Promise<void>((resolve, reject) => held.push(() => void chmod.call(this, mode).then(resolve, reject)));
    };
    let started: string;
    let up;
    try {
      const opening = s.openWrite('moded');
      started = await race(opening);
      for (const go of held.splice(0)) go();
      up = await opening;
    } finally {
      proto.chmod = chmod;
    }
    assert.equal(started, 'done');
    await up.write(Buffer.from('new bytes'));
    await up.close();
    assert.equal(readFileSync(path, 'utf8'), 'new bytes');
    assert.equal(statSync(path).mode & 0o777, 0o600);
  });

  it("an overwrite's end (no scan) holds the old file while the new one is still being measured, and does not wait for the hold's close", async () => {
    writeFileSync(join(world.home('w'), 'over'), 'old content');
    const s = await world.session('w');
    const stagedStat: (() => void)[] = [];
    const holdClosed: (() => void)[] = [];
    let held = false;
    let heldWhileMeasuring = false;
    let measured = 0;
    let ended: string;
    // The staged file's measure hangs until the test lets it go.
    await withStagedMeasureHeld(stagedStat, () =>
      withOpens(
        (path, flags, fh) => {
          if ((flags & O_PATH) !== 0 && path.endsWith('/over')) {
            held = true;
            holdClose(fh, holdClosed);
          }
        },
        async () => {
          const up = await s.openWrite('over');
          await up.write(Buffer.from('new content'));
          const closing = up.close();
          for (let i = 0; i < 100 && stagedStat.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
          await new Promise((r) => setTimeout(r, 100));
          heldWhileMeasuring = held;
          measured = stagedStat.length;
          for (const go of stagedStat.splice(0)) go();
          ended = await race(closing);
        },
      ),
    );
    for (const go of holdClosed.splice(0)) go();
    assert.equal(measured, 1, 'the new file was being measured');
    assert.ok(heldWhileMeasuring, 'the old file was held while the new one was being measured');
    assert.equal(ended!, 'done', "the upload's end does not wait for the close of the old file's hold");
    assert.equal(holdClosed.length, 0);
    assert.equal(readFileSync(join(world.home('w'), 'over'), 'utf8'), 'new content');
    const last = (await world.auditLines()).findLast((l) => l.event === 'upload');
    assert.equal(last?.result, 'ok');
    assert.equal(last?.bytes, 11);
  });

  it("an upload's end closes its staged file while measuring it: the close does not wait for the measure", async () => {
    const s = await world.session('w');
    for (const name of ['new-file', 'over-again']) {
      if (name === 'over-again') writeFileSync(join(world.home('w'), name), 'old content');
      const measures: (() => void)[] = [];
      let closedWhileMeasuring = false;
      await withStagedMeasureHeld(measures, () =>
        withOpens(
          (path, flags, fh) => {
            if ((flags & C.O_EXCL) === 0 || !path.includes('/.sluice-upload-')) return;
            const close = fh.close.bind(fh);
            fh.close = () => {
              closedWhileMeasuring ||= measures.length > 0;
              return close();
            };
          },
          async () => {
            const up = await s.openWrite(name);
            await up.write(Buffer.from('new content'));
            const closing = up.close();
            for (let i = 0; i < 100 && measures.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
            // Time for a close that would come only after the measure to show it does not.
            await new Promise((r) => setTimeout(r, 100));
            for (const go of measures.splice(0)) go();
            await closing;
          },
        ),
      );
      assert.ok(closedWhileMeasuring, `${name}: the staged file's close began while its measure was still under way`);
      assert.equal(readFileSync(join(world.home('w'), name), 'utf8'), 'new content');
      const last = (await world.auditLines()).findLast((l) => l.event === 'upload');
      assert.equal(last?.result, 'ok');
      assert.equal(last?.bytes, 11);
    }
  });

  it("a user without a quota claims nothing for an overwrite (with workers, a round trip to the primary at each end); one with a quota does", async () => {
    await world.addUser('limited', { quotaBytes: 1 << 20 });
    const quotas = world.services.sessionDeps.quotas;
    const acquire = quotas.acquire.bind(quotas);
    const claims: (string | null)[] = [];
    (quotas as { acquire: typeof acquire }).acquire = async (account) => {
      const ledger = await acquire(account);
      const checkStart = ledger.checkStart.bind(ledger);
      ledger.checkStart = (start) => {
        claims.push(start.claim);
        return checkStart(start);
      };
      return ledger;
    };
    try {
      for (const user of ['w', 'limited']) {
        writeFileSync(join(world.home(user), 'again'), 'old content');
        const s = await world.session(user);
        const up = await s.openWrite('again');
        await up.write(Buffer.from('new'));
        await up.close();
        assert.equal(readFileSync(join(world.home(user), 'again'), 'utf8'), 'new');
      }
    } finally {
      (quotas as { acquire: typeof acquire }).acquire = acquire;
    }
    assert.equal(claims.length, 2);
    assert.equal(claims[0], null, 'no claim without a quota');
    assert.match(String(claims[1]), /^\d+:\d+$/, 'a claim of the old file with a quota');
  });

  it("an overwrite's end that cannot hold the old file (no descriptor to spare) lands all the same", async () => {
    writeFileSync(join(world.home('w'), 'nofd'), 'old');
    const s = await world.session('w');
    const up = await s.openWrite('nofd');
    await up.write(Buffer.from('new'));
    const open = fsp.open;
    fsp.open = (async (...args: Parameters<typeof open>) => {
      if ((Number(args[1] ?? 0) & O_PATH) !== 0) throw Object.assign(new Error('EMFILE: too many open files'), { code: 'EMFILE', errno: -24, syscall: 'open' });
      return open(...args);
    }) as typeof open;
    try {
      await up.close();
    } finally {
      fsp.open = open;
    }
    assert.equal(readFileSync(join(world.home('w'), 'nofd'), 'utf8'), 'new');
    assert.equal((await world.auditLines()).findLast((l) => l.event === 'upload')?.result, 'ok');
  });

  it('an overwrite keeps the old permission bits, never a setuid or setgid bit (set from outside the server)', async () => {
    const s = await world.session('w');
    for (const [name, data] of [['suid-empty', ''], ['suid-data', '#!/bin/sh\nid\n']] as const) {
      const path = join(world.home('w'), name);
      writeFileSync(path, 'old');
      await fsp.chmod(path, 0o6750);
      const up = await s.openWrite(name);
      if (data !== '') await up.write(Buffer.from(data));
      await up.close();
      assert.equal(statSync(path).mode & 0o7777, 0o750, name);
    }
  });
});
