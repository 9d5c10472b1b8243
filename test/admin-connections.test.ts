import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { adminRequest } from './helpers/admin-http.js';
import { sluice } from './helpers/cli.js';
import { RawFtp } from './helpers/ftp-raw.js';
import { freePort, TestServer } from './helpers/server.js';
import { sampleProcess } from '../src/metrics/sampler.js';

/*
 * The admin API's TCP connections were counted nowhere, and a timer of the
 * process read /proc unguarded. Found by a review: 19,990 idle connections
 * to the admin port, no request sent, took the process's descriptors; FTP
 * clients got broken pipes, and the next metrics sample threw EMFILE from
 * its timer and ended the server (every worker with the primary). They now
 * have a budget of their own (64, 16 per address), apart from the
 * protocols', so that neither can lock out the other.
 */

/** An idle TCP connection from `from`: resolves once the server has closed it, or with 'open' after `ms`. */
function idle(port: number, from: string, ms: number): { socket: net.Socket; ended: Promise<'closed' | 'open'> } {
  const socket = net.connect({ port, host: '127.0.0.1', localAddress: from });
  socket.on('error', () => undefined);
  const ended = new Promise<'closed' | 'open'>((resolve) => {
    const timer = setTimeout(() => resolve('open'), ms);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve('closed');
    });
  });
  return { socket, ended };
}

describe('admin API connections have a budget of their own', () => {
  let srv: TestServer;
  let port: number;
  before(async () => {
    port = await freePort();
    // 127.0.0.5 holds 16 idle connections for a while in the first case, which the defender would score (see the third).
    srv = await TestServer.start({ env: { SLUICE_ADMIN_LISTEN: `127.0.0.1:${port}` }, yaml: 'ftp:\n  tls: optional\ndefender:\n  allowList: [127.0.0.5/32]\n' });
  });
  after(() => srv.stop());

  it('past 16 from one address an admin connection is closed at once; FTP from that address is still served; closed, they are free again', { timeout: 30_000 }, async () => {
    const held = Array.from({ length: 16 }, () => idle(port, '127.0.0.5', 60_000));
    const over = idle(port, '127.0.0.5', 3000);
    try {
      await Promise.all(held.map((h) => new Promise((r) => h.socket.once('connect', r))));
      assert.equal(await over.ended, 'closed', 'a 17th admin connection from the address');
      // Neither budget takes from the other: a flood of one cannot lock out the other.
      assert.equal(await RawFtp.greeting(srv.ftpPort, '127.0.0.5'), 220, 'an FTP connection from the same address');
      const another = idle(port, '127.0.0.6', 1000);
      assert.equal(await another.ended, 'open', 'an admin connection from another address');
      another.socket.destroy();
    } finally {
      for (const h of [...held, over]) h.socket.destroy();
    }
    await Promise.all(held.map((h) => h.ended));
    // The slots come back as the server sees the closes: the address is served again.
    const deadline = Date.now() + 10_000;
    let status: number | string = 'refused';
    while (status !== 401 && Date.now() < deadline) {
      status = await adminRequest({ port, from: '127.0.0.5' }, 'GET', '/api/v1/server').then((r) => r.status, () => 'refused');
      if (status !== 401) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(status, 401);
  });

  // Found by a review: 4 addresses of 16 requests sent a byte at a time, each cut at the request deadline and
  // sent again, held every place (and /healthz with them) and were never scored.
  it('connections never answered add their time to their address\'s, scored until it is banned; answered ones do not', { timeout: 60_000 }, async () => {
    const slow = async (from: string, count: number, ms: number) => {
      const sockets = await Promise.all(
        Array.from({ length: count }, async () => {
          const s = net.connect({ port, host: '127.0.0.1', localAddress: from });
          s.on('error', () => undefined);
          await new Promise((r) => s.once('connect', r));
          s.write('GET /healthz HTTP/1.1\r\nHost: sluice\r\n');
          return s;
        }),
      );
      await new Promise((r) => setTimeout(r, ms));
      await Promise.all(sockets.map((s) => (s.closed ? undefined : new Promise((r) => s.once('close', r).destroy()))));
    };
    // Each left well before the request deadline (10 s): together they held 64 s.
    await slow('127.0.0.8', 16, 4000);
    const deadline = Date.now() + 5_000;
    while (!srv.bans().includes('127.0.0.8') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.ok(srv.bans().includes('127.0.0.8'), `bans: ${srv.bans().join(', ')}`);
    assert.equal(await RawFtp.greeting(srv.ftpPort, '127.0.0.8'), 'closed', 'banned on every port');
    // As many answered requests, each on its connection: nothing scored.
    for (let i = 0; i < 16; i++) assert.equal((await adminRequest({ port, from: '127.0.0.9' }, 'GET', '/healthz')).status, 200);
    assert.ok(!srv.bans().includes('127.0.0.9'));
  });

  // Found by a review: one idle connection the server itself closed after 30 s scored 9 offences, and its address
  // (a browser's preconnect, a proxy's spare connection) was banned on every port.
  it('one idle connection the server closes costs one offence, not a ban', { timeout: 60_000 }, async () => {
    const lone = idle(port, '127.0.0.10', 45_000);
    lone.socket.resume(); // to see the server's close
    assert.equal(await lone.ended, 'closed', 'closed by the server when idle');
    await new Promise((r) => setTimeout(r, 500));
    assert.ok(!srv.bans().includes('127.0.0.10'), `bans: ${srv.bans().join(', ')}`);
    assert.equal((await adminRequest({ port, from: '127.0.0.10' }, 'GET', '/healthz')).status, 200);
  });
  // Found by a review: GET /audit streams that their client stopped reading and closed (a pager quit early,
  // `| head`, a client's timeout) never finished, were scored as idle connections, and banned the operator's
  // address on every port.
  it('a token holder\'s stream that its client stops reading and closes is answered, not scored', { timeout: 60_000 }, async () => {
    const created = sluice(srv.dir, ['admin', 'token', 'create', 'pager']);
    assert.equal(created.code, 0, created.stderr);
    const token = created.stdout.trim();
    // A trail far longer than every buffer between the server and a client that reads no more: each reply stays unfinished.
    const line = JSON.stringify({ seq: 0, prev: '0'.repeat(64), node: 'old', time: '2026-01-01T00:00:00Z', event: 'download', user: 'alice', path: '/x'.repeat(40), bytes: 1, result: 'ok' });
    writeFileSync(join(srv.dir, 'data', 'audit.log.1'), `${line}\n`.repeat(200_000));
    const from = '127.0.0.12';
    // 16 at once for 4 s each: 64 s held, the 6 offences of the second case's slow requests had they been unanswered.
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        const s = net.connect({ port, host: '127.0.0.1', localAddress: from });
        s.on('error', () => undefined);
        await new Promise((r) => s.once('connect', r));
        s.write(`GET /api/v1/audit HTTP/1.1\r\nHost: sluice\r\nAuthorization: Bearer ${token}\r\n\r\n`);
        const first = await new Promise<string>((r) => s.once('data', (d: Buffer) => r(d.toString('latin1'))));
        assert.match(first, /^HTTP\/1\.1 200 /);
        s.pause();
        await new Promise((r) => setTimeout(r, 4000));
        await new Promise((r) => s.once('close', r).destroy());
      }),
    );
    await new Promise((r) => setTimeout(r, 2000));
    assert.ok(!srv.bans().includes(from), `bans: ${srv.bans().join(', ')}`);
    assert.equal(await RawFtp.greeting(srv.ftpPort, from), 220);
    assert.equal((await adminRequest({ port, from }, 'GET', '/api/v1/server', { token })).status, 200);
  });
});

describe('admin API at a stop', () => {
  for (const tls of [false, true]) {
    it(`an idle admin connection${tls ? ' (TLS, no handshake begun)' : ''} does not hold up the stop`, { timeout: 60_000 }, async () => {
      const port = await freePort();
      const srv = await TestServer.start({ env: { SLUICE_ADMIN_LISTEN: `127.0.0.1:${port}` }, ...(tls ? { yaml: 'admin:\n  tls: true\n' } : {}) });
      const held = idle(port, '127.0.0.7', 60_000);
      try {
        await new Promise((r) => held.socket.once('connect', r));
        const began = Date.now();
        await srv.stop();
        assert.ok(Date.now() - began < 10_000, `the stop took ${Date.now() - began} ms`);
        assert.equal(await held.ended, 'closed');
      } finally {
        held.socket.destroy();
      }
    });
  }
});

describe('the process sampler', () => {
  it('skips a sample it cannot take (out of descriptors) instead of throwing from its timer', () => {
    const rss = process.memoryUsage.rss;
    const samples: number[] = [];
    process.memoryUsage.rss = () => {
      throw Object.assign(new Error('EMFILE: too many open files, uv_resident_set_memory'), { code: 'EMFILE' });
    };
    let stop: () => void = () => undefined;
    try {
      stop = sampleProcess((s) => samples.push(s.rssBytes));
    } finally {
      process.memoryUsage.rss = rss;
      stop();
    }
    assert.equal(samples.length, 0);
    const again = sampleProcess((s) => samples.push(s.rssBytes));
    again();
    assert.equal(samples.length, 1);
  });
});
