import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import type net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { RawFtp } from './helpers/ftp-raw.js';
import { TestServer } from './helpers/server.js';

/*
 * An FTP upload's chunks are gathered into larger file writes (1 MiB). These
 * uploads cross several such batches and end inside one: every byte must
 * land in order, the last partial batch included, the audit hash must be
 * the bytes', and the quota must refuse exactly the first byte beyond it.
 */

const MiB = 1024 * 1024;
const PASSWORD = 'batch test password';
// Ends inside the third batch, at an odd byte.
const QUOTA = 2 * MiB + 500 * 1024 + 7;
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Write `data` to the socket as many small writes (over TLS, a record each), waiting for drain. */
async function sendInPieces(socket: net.Socket, data: Buffer): Promise<void> {
  let at = 0;
  let i = 0;
  while (at < data.length) {
    // 1..4096 bytes, varying, so that records and socket reads fall at no regular boundary.
    const n = Math.min(data.length - at, 1 + ((i++ * 2654435761) >>> 0) % 4096);
    if (!socket.write(data.subarray(at, at + n))) await new Promise((r) => socket.once('drain', r));
    at += n;
  }
}

/** STOR `data` over a fresh passive data connection; resolves with the final reply's code. */
async function store(c: RawFtp, secure: boolean, name: string, data: Buffer): Promise<number> {
  const pasv = await c.passive(secure);
  c.send(`STOR ${name}\r\n`);
  const data$ = await pasv.open();
  const opening = await c.read();
  assert.equal(opening?.code, 150);
  // A refusal mid-way closes the data connection: the rest of the sending fails, and the reply says why.
  await sendInPieces(data$, data).catch(() => undefined);
  data$.end();
  const final = await c.read(30_000);
  data$.destroy();
  return final?.code ?? 0;
}

describe('FTP uploads gathered into large writes', () => {
  let srv: TestServer;
  before(async () => {
    srv = await TestServer.start({
      yaml: 'ftp:\n  tls: optional\n',
      users: [
        { name: 'batch', password: PASSWORD },
        { name: 'quota', password: PASSWORD, args: ['--quota-bytes', String(QUOTA)] },
      ],
    });
  });
  after(() => srv.stop());

  for (const secure of [true, false]) {
    it(`${secure ? 'FTPS' : 'FTP'}: many small pieces land byte for byte, the last partial batch included, and the audit hash is theirs`, async () => {
      const c = secure ? await RawFtp.secureLogin(srv.ftpPort, 'batch', PASSWORD) : await RawFtp.connect(srv.ftpPort);
      if (!secure) {
        await c.read();
        assert.equal((await c.login('batch', PASSWORD)).code, 230);
      }
      await c.cmd('TYPE I');
      const data = randomBytes(3 * MiB + 12345);
      const name = secure ? 'pieces-tls.bin' : 'pieces-plain.bin';
      assert.equal(await store(c, secure, name, data), 226);
      c.close();
      const stored = readFileSync(join(srv.home('batch'), name));
      assert.equal(stored.length, data.length);
      assert.ok(stored.equals(data), 'content identical');
      const rec = (await srv.auditUntil((r) => r.event === 'upload' && r.path === `/${name}`)).find((r) => r.event === 'upload' && r.path === `/${name}`);
      assert.equal(rec?.result, 'ok');
      assert.equal(rec?.bytes, data.length);
      assert.equal(rec?.sha256, sha256(data));
    });
  }

  it('FTPS: the quota takes an upload of exactly its size and refuses one byte more, inside a batch', async () => {
    const c = await RawFtp.secureLogin(srv.ftpPort, 'quota', PASSWORD);
    await c.cmd('TYPE I');
    const over = randomBytes(QUOTA + 1);
    assert.equal(await store(c, true, 'over.bin', over), 552);
    assert.ok(!existsSync(join(srv.home('quota'), 'over.bin')), 'nothing under the final name');
    const exact = over.subarray(0, QUOTA);
    assert.equal(await store(c, true, 'exact.bin', exact), 226);
    assert.ok(readFileSync(join(srv.home('quota'), 'exact.bin')).equals(exact));
    c.close();
  });

  it('FTPS: a client that stops sending mid-upload can abort it; nothing is left and the audit says so', async () => {
    const c = await RawFtp.secureLogin(srv.ftpPort, 'batch', PASSWORD);
    await c.cmd('TYPE I');
    const pasv = await c.passive(true);
    c.send('STOR stalled.bin\r\n');
    const data$ = await pasv.open();
    assert.equal((await c.read())?.code, 150);
    // Not a whole number of batches: a part is written, a part may be only gathered.
    await sendInPieces(data$, randomBytes(2 * MiB + 300 * 1024));
    c.send('ABOR\r\n');
    const replies = [await c.read(), await c.read()].map((r) => r?.code);
    assert.deepEqual(replies, [426, 226]);
    data$.destroy();
    c.close();
    assert.ok(!existsSync(join(srv.home('batch'), 'stalled.bin')), 'nothing under the final name');
    const rec = (await srv.auditUntil((r) => r.event === 'upload' && r.path === '/stalled.bin')).find((r) => r.event === 'upload' && r.path === '/stalled.bin');
    assert.equal(rec?.result, 'aborted');
    assert.ok(Number(rec?.bytes) <= 2 * MiB + 300 * 1024);
  });
});
