import { pooledBytesServed, ssh2Library } from '../src/ssh2.js';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';

/*
 * src/ssh2.ts loads ssh2 with a pooled randomFillSync for its packets'
 * padding (one generator call per 16 KiB instead of per packet). ssh2 keeps
 * the function it found when its modules loaded: this shows that it is the
 * pooled one, and that the rest of the process got Node's back.
 */
test("ssh2's packets take their padding from the pool; node:crypto keeps its own randomFillSync", async () => {
  assert.equal(crypto.randomFillSync.name, 'randomFillSync');
  const { Client, Server, utils } = ssh2Library();
  const hostKey = utils.generateKeyPairSync('ed25519').private;
  const server = new Server({ hostKeys: [hostKey] }, (client) => {
    client.on('authentication', (ctx) => (ctx.method === 'password' && ctx.password === 'pw' ? ctx.accept() : ctx.reject(['password'])));
    client.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const before = pooledBytesServed();
    const client = new Client();
    await new Promise<void>((resolve, reject) => {
      client.on('ready', resolve).on('error', reject);
      client.connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, username: 'u', password: 'pw' });
    });
    client.end();
    // Key exchange, service request, authentication: each packet padded from the pool.
    assert.ok(pooledBytesServed() - before >= 4 * 8, `only ${pooledBytesServed() - before} pooled bytes served`);
  } finally {
    server.close();
  }
});
