import assert from 'node:assert/strict';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { adminRequest, type AdminTarget } from './helpers/admin-http.js';
import { sluice } from './helpers/cli.js';
import { serverWithAdminToken } from './helpers/admin-server.js';
import type { TestServer } from './helpers/server.js';

/*
 * The `admin` audit record of each request against the real server: written
 * once per request, also when the client is gone before its reply (found by
 * a review: only Fastify's onResponse wrote it, which a reset connection
 * never reaches), and never with a credential from the URL in it.
 */

type Json = { [k: string]: unknown };

function rawRequest(token: string, method: string, path: string, body?: unknown): string {
  const text = body === undefined ? '' : JSON.stringify(body);
  const head = `${method} ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n`;
  return head + (text ? `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\n` : '') + '\r\n' + text;
}

/**
 * Sends `requests` on one connection at once (pipelined), then leaves before
 * any reply: with a TCP reset, or a FIN. Resolves to the bytes the server got
 * back to us before that (none, or the test proves nothing).
 */
function sendAndLeave(port: number, from: string, token: string, requests: string, how: 'reset' | 'fin'): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1', localAddress: from });
    let got = '';
    socket.on('data', (d: Buffer) => (got += d.toString('latin1')));
    socket.on('error', () => undefined);
    socket.once('connect', () => {
      // One request answered first: the server has accepted the connection and knows its peer (a reset
      // before the accept, on a loaded machine, leaves the kernel no address to give).
      socket.write(rawRequest(token, 'GET', '/api/v1/sessions?user=first'));
    });
    let answered = false;
    socket.on('data', () => {
      const head = /^HTTP\/1\.1 200 [^]*?content-length: (\d+)\r\n[^]*?\r\n\r\n/i.exec(got);
      if (answered || !head || got.length < head[0].length + Number(head[1])) return;
      answered = true;
      got = '';
      socket.write(requests, () => {
        // The server reads loopback bytes within a millisecond; the POST's argon2 hash takes tens.
        setTimeout(() => {
          if (how === 'reset') socket.resetAndDestroy();
          else socket.end();
          setTimeout(() => {
            socket.destroy();
            resolve(got);
          }, 50);
        }, 5);
      });
    });
    socket.once('error', reject);
  });
}

describe('admin audit records', () => {
  let srv: TestServer;
  let api: AdminTarget;
  let token: string;
  before(async () => {
    ({ srv, api, token } = await serverWithAdminToken('127.0.0.60'));
  });
  after(async () => {
    await srv.stop();
  });

  const admins = (records: Json[]) => records.filter((r) => r.event === 'admin');
  /** The trail once it holds an admin record for each of `wanted`, or after 10 s (for the assertions to say what is missing). */
  const auditWith = async (...wanted: ((r: Json) => boolean)[]): Promise<Json[]> => {
    const end = Date.now() + 10_000;
    for (;;) {
      const records = await srv.audit(200);
      if (wanted.every((w) => admins(records).some(w)) || Date.now() > end) return records;
    }
  };

  it('records requests the server acted on when the client reset the connection before the replies (pipelined)', { timeout: 60_000 }, async () => {
    assert.equal((await adminRequest(api, 'POST', '/api/v1/users', { token, body: { name: 'victim', password: 'victim-secret-1' } })).status, 201);
    const requests = rawRequest(token, 'POST', '/api/v1/users', { name: 'ghost', password: 'correct horse battery' })
      + rawRequest(token, 'DELETE', '/api/v1/users/victim');
    assert.equal(await sendAndLeave(api.port as number, '127.0.0.61', token, requests, 'reset'), '', 'no reply came before the reset');
    const records = await auditWith((r) => r.method === 'DELETE' && r.ip === '127.0.0.61', (r) => r.method === 'POST' && r.ip === '127.0.0.61');
    // The server acted on both...
    assert.equal(sluice(srv.dir, ['user', 'show', 'ghost']).code, 0, 'ghost was created');
    assert.notEqual(sluice(srv.dir, ['user', 'show', 'victim']).code, 0, 'victim was removed');
    // ...and the trail says so, once each, with the status the server set and that the client never saw it.
    const post = admins(records).filter((r) => r.method === 'POST' && r.ip === '127.0.0.61');
    const del = admins(records).filter((r) => r.method === 'DELETE' && r.path === '/api/v1/users/victim');
    assert.deepEqual(post.map((r) => [r.token, r.path, r.status, r.client_left]), [['ops', '/api/v1/users', 201, true]], JSON.stringify(records.slice(-6)));
    assert.deepEqual(del.map((r) => [r.token, r.status, r.client_left]), [['ops', 200, true]]);
    assert.equal(sluice(srv.dir, ['audit', 'verify']).code, 0);
  });

  it('records a request whose client closed (FIN) before the reply', { timeout: 60_000 }, async () => {
    const request = rawRequest(token, 'POST', '/api/v1/users', { name: 'halfway', password: 'correct horse battery' });
    assert.equal(await sendAndLeave(api.port as number, '127.0.0.62', token, request, 'fin'), '', 'no reply came before the FIN');
    const records = await srv.auditUntil((r) => r.event === 'admin' && r.ip === '127.0.0.62' && r.method === 'POST');
    assert.equal(sluice(srv.dir, ['user', 'show', 'halfway']).code, 0, 'halfway was created');
    const posts = admins(records).filter((r) => r.ip === '127.0.0.62' && r.method !== 'GET');
    assert.deepEqual(posts.map((r) => [r.method, r.status, r.client_left]), [['POST', 201, true]]);
  });

  it('records an answered request exactly once, without client_left', { timeout: 60_000 }, async () => {
    assert.equal((await adminRequest(api, 'GET', '/api/v1/sessions?user=once', { token })).status, 200);
    assert.equal((await adminRequest(api, 'GET', '/api/v1/nothing?once=2', { token })).status, 404);
    const records = await srv.auditUntil((r) => r.path === '/api/v1/nothing?once=2');
    const once = admins(records).filter((r) => /[?=]once/.test(String(r.path)));
    assert.deepEqual(once.map((r) => [r.path, r.status, 'client_left' in r]), [['/api/v1/sessions?user=once', 200, false], ['/api/v1/nothing?once=2', 404, false]]);
  });

  it('30 requests pipelined on one connection: 30 records, and no pile of listeners on its socket', { timeout: 60_000 }, async () => {
    // Found by a second review: a 'close' listener per request in flight warned MaxListenersExceeded at 11.
    const socket = net.connect({ port: api.port as number, host: '127.0.0.1', localAddress: '127.0.0.63' });
    let got = '';
    socket.on('data', (d: Buffer) => (got += d.toString('latin1')));
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    socket.write(Array.from({ length: 30 }, (_, i) => rawRequest(token, 'GET', `/api/v1/sessions?user=piped-${i}`)).join(''));
    const end = Date.now() + 20_000;
    while ((got.match(/^HTTP\/1\.1 200/gm) ?? []).length < 30 && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    socket.destroy();
    const records = await srv.auditUntil((r) => r.path === '/api/v1/sessions?user=piped-29');
    assert.equal(admins(records).filter((r) => /\?user=piped-/.test(String(r.path))).length, 30);
    assert.doesNotMatch(srv.stderr + srv.log, /MaxListenersExceeded/);
  });

  it('never writes a token sent in the query string, in the trail or the server log', { timeout: 60_000 }, async () => {
    const leaked = `sluice_${'A'.repeat(43)}`;
    const r = await adminRequest(api, 'GET', `/api/v1/users?token=${leaked}&user=alice`);
    assert.equal(r.status, 401);
    assert.equal((await adminRequest(api, 'GET', `/api/v1/users?${token}`)).status, 401);
    const records = await srv.auditUntil((rec) => rec.event === 'admin' && rec.path === '/api/v1/users?[redacted]');
    assert.ok(admins(records).some((rec) => rec.path === '/api/v1/users?token=[redacted]&user=alice' && rec.status === 401), JSON.stringify(records.slice(-3)));
    const trail = readFileSync(join(srv.dir, 'data', 'audit.log'), 'utf8');
    assert.ok(!trail.includes(leaked) && !trail.includes(token), 'no token in the trail');
    assert.ok(!srv.log.includes(leaked) && !srv.log.includes(token), 'no token in the server log');
  });
});
