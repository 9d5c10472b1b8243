import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type ssh2 from 'ssh2';
import { ATTR, FXP, OPEN_FLAGS, STATUS, Writer } from '../src/sftp/codec.js';
import { SlowClamd } from './helpers/clamd.js';
import { TestServer } from './helpers/server.js';
import { initialised, sshConnect } from './helpers/ssh.js';

/*
 * A request by path waits for the CLOSEs and changes by path sent before it
 * only where their paths overlap its own (the same path, or one above the
 * other), as the drafts ask of requests relating to the same file: waiting
 * for every one held each OPEN of a client uploading several files at once
 * behind the others' OPENs and CLOSEs. A scanner that answers only when told
 * holds a CLOSE's commit, so what waits for it and what does not are told
 * apart without a race.
 */

const PASSWORD = 'gina password';

/** Replies by number, taken from `next` as they come, for as long as asked. */
class Replies {
  readonly got = new Map<number, Buffer>();
  private pending: Promise<Buffer> | null = null;

  constructor(private readonly next: () => Promise<Buffer>) {}

  /** Takes replies until those numbered `ids` have come (true) or `ms` have passed (false). */
  async until(ids: number[], ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (!ids.every((id) => this.got.has(id))) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      this.pending ??= this.next();
      let timer: NodeJS.Timeout | undefined;
      const reply = await Promise.race([this.pending, new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), left)))]);
      clearTimeout(timer);
      if (reply === null) return false;
      this.pending = null;
      this.got.set(reply.readUInt32BE(1), reply);
    }
    return true;
  }
}

const typeOf = (reply: Buffer | undefined) => (reply?.[0] === FXP.STATUS ? `STATUS ${reply.readUInt32BE(5)}` : `packet type ${String(reply?.[0])}`);
const sizeIn = (reply: Buffer | undefined) => {
  assert.equal(reply?.[0], FXP.ATTRS, `${typeOf(reply)} instead of the file's attributes`);
  assert.ok((reply.readUInt32BE(5) & ATTR.SIZE) !== 0);
  return Number(reply.readBigUInt64BE(9));
};
const handleIn = (reply: Buffer | undefined) => {
  assert.equal(reply?.[0], FXP.HANDLE, typeOf(reply));
  return reply.subarray(9, 9 + reply.readUInt32BE(5));
};

describe('a request by path and the CLOSEs and changes by path sent before it', () => {
  const clamd = new SlowClamd(0, Infinity, { held: true });
  let srv: TestServer;
  let conn: ssh2.Client;
  let ch: ssh2.ClientChannel;
  let replies: Replies;
  let home: string;
  let id = 1000;
  before(async () => {
    await clamd.start();
    srv = await TestServer.start({
      yaml: `uploads:\n  scan: clamd\n  clamdSocket: ${clamd.socket}\n  scanTimeout: 60\n`,
      users: [{ name: 'gina', password: PASSWORD, args: ['--perms', 'all'] }],
    });
    home = srv.home('gina');
    conn = await sshConnect({ port: srv.sftpPort, username: 'gina', password: PASSWORD });
    const channel = await initialised(conn);
    ch = channel.ch;
    replies = new Replies(channel.next);
  });
  after(async () => {
    conn?.end();
    await srv?.stop();
    await clamd.cleanup();
  });

  /** Sends `requests` in one message, so that the server starts them in one turn. */
  const send = (...requests: Writer[]) => ch.write(Buffer.concat(requests.map((w) => w.finish())));

  /** Opens `path` for an upload and writes `content` through it: its handle. */
  async function uploading(path: string, content = 'first\n'): Promise<Buffer> {
    const opening = id++;
    send(new Writer(FXP.OPEN, opening).string(path).uint32(OPEN_FLAGS.WRITE | OPEN_FLAGS.CREAT | OPEN_FLAGS.TRUNC).uint32(0));
    assert.ok(await replies.until([opening], 10_000));
    const handle = handleIn(replies.got.get(opening));
    const writing = id++;
    send(new Writer(FXP.WRITE, writing).bytes(handle).uint64(0).bytes(Buffer.from(content)));
    assert.ok(await replies.until([writing], 10_000));
    assert.equal(typeOf(replies.got.get(writing)), `STATUS ${STATUS.OK}`);
    return handle;
  }

  /** Once the scanner holds `n` streams in all: the CLOSEs sent are held in their commits. */
  async function scannerHolds(n: number): Promise<void> {
    for (let i = 0; i < 200 && clamd.streams < n; i++) await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(clamd.streams, n, 'the scanner got the uploads');
  }

  it('answers the requests on other paths while a CLOSE commits, and holds those on its path and above it', { timeout: 60_000 }, async () => {
    mkdirSync(join(home, 'd'));
    mkdirSync(join(home, 'dd'));
    writeFileSync(join(home, 'other.txt'), 'other\n');
    const handle = await uploading('/d/f.txt');
    send(
      new Writer(FXP.CLOSE, 99).bytes(handle),
      new Writer(FXP.STAT, 10).string('/other.txt'),
      new Writer(FXP.OPEN, 11).string('/g.txt').uint32(OPEN_FLAGS.WRITE | OPEN_FLAGS.CREAT | OPEN_FLAGS.TRUNC).uint32(0),
      // A name beginning as the directory's does, and not below it.
      new Writer(FXP.LSTAT, 12).string('/dd'),
      new Writer(FXP.STAT, 20).string('/d/f.txt'),
      // The same path, as the session resolves it.
      new Writer(FXP.STAT, 21).string('d//x/.././f.txt'),
      new Writer(FXP.OPENDIR, 22).string('/d'),
    );
    await scannerHolds(1);
    try {
      // Before: all three waited for the commit, and came only after the scanner's verdict.
      assert.ok(await replies.until([10, 11, 12], 5_000), `requests on other paths held behind the CLOSE: only ${[...replies.got.keys()].join(', ')} answered`);
      assert.equal(sizeIn(replies.got.get(10)), 6);
      handleIn(replies.got.get(11));
      assert.equal(replies.got.get(12)?.[0], FXP.ATTRS, typeOf(replies.got.get(12)));
      assert.deepEqual(
        [99, 20, 21, 22].filter((n) => replies.got.has(n)),
        [],
        'the CLOSE, and the requests on its path and above it, wait for the scanner',
      );
    } finally {
      // Let go whatever came of it: the cases after this one are on the same channel.
      clamd.answerHeld();
    }
    assert.ok(await replies.until([99, 20, 21, 22], 10_000));
    assert.equal(typeOf(replies.got.get(99)), `STATUS ${STATUS.OK}`);
    assert.equal(sizeIn(replies.got.get(20)), 6);
    assert.equal(sizeIn(replies.got.get(21)), 6);
    handleIn(replies.got.get(22));
  });

  it('holds a look under the new name of a directory renamed while an upload in it was open, until its CLOSE has committed it', { timeout: 60_000 }, async () => {
    mkdirSync(join(home, 'm'));
    const handle = await uploading('/m/f.txt');
    send(new Writer(FXP.RENAME, 30).string('/m').string('/n'));
    assert.ok(await replies.until([30], 10_000));
    assert.equal(typeOf(replies.got.get(30)), `STATUS ${STATUS.OK}`);
    const streams = clamd.streams;
    send(new Writer(FXP.CLOSE, 98).bytes(handle), new Writer(FXP.STAT, 31).string('/n/f.txt'));
    await scannerHolds(streams + 1);
    // By the name it was opened with (/m/f.txt), the CLOSE was not this look's: it ran beside the commit, and missed the file.
    const early = await replies.until([31], 500);
    clamd.answerHeld();
    assert.equal(early, false, `the look did not wait for the commit: ${typeOf(replies.got.get(31))}`);
    assert.ok(await replies.until([98, 31], 10_000));
    assert.equal(typeOf(replies.got.get(98)), `STATUS ${STATUS.OK}`);
    assert.equal(sizeIn(replies.got.get(31)), 6);
  });

  it('holds a look under the new name of a directory after a CLOSE sent after the RENAME, while it waited', { timeout: 60_000 }, async () => {
    mkdirSync(join(home, 'p'));
    const first = await uploading('/p/a.txt', 'first\n');
    const second = await uploading('/p/b.txt', 'other\n');
    const streams = clamd.streams;
    send(
      new Writer(FXP.CLOSE, 40).bytes(first),
      // Waits for the first CLOSE (its file is below /p); the second CLOSE runs beside it, on its handle only,
      // and the STAT waits for the RENAME (its target is above /q/b.txt).
      new Writer(FXP.RENAME, 41).string('/p').string('/q'),
      new Writer(FXP.CLOSE, 42).bytes(second),
      new Writer(FXP.STAT, 43).string('/q/b.txt'),
    );
    await scannerHolds(streams + 2);
    let early: boolean;
    try {
      clamd.answerHeld((data) => data.toString() === 'first\n');
      assert.ok(await replies.until([40, 41], 10_000));
      assert.equal(typeOf(replies.got.get(41)), `STATUS ${STATUS.OK}`);
      // The second upload, still held, is now below /q: the look waits for it (before: it ran once the RENAME was done).
      early = await replies.until([43], 500);
    } finally {
      clamd.answerHeld();
    }
    assert.equal(early, false, `the look did not wait for the second CLOSE: ${typeOf(replies.got.get(43))}`);
    assert.ok(await replies.until([42, 43], 10_000));
    for (const n of [40, 42]) assert.equal(typeOf(replies.got.get(n)), `STATUS ${STATUS.OK}`, `request ${n}`);
    assert.equal(sizeIn(replies.got.get(43)), 6);
  });
});
