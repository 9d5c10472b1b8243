/**
 * curl's own race, seen by test/stress/one-account.ts: it asks SIZE, then RETR, and reads no more than
 * SIZE said. A file replaced whole between the two comes short (exit 0) when the new version is longer,
 * or fails "transfer closed with N bytes remaining" when it is shorter; the server sent the new version
 * whole, and records it so (under TLS a client's early close cannot be told from a normal one: see
 * closeGracefully in src/ftp/data-channel/runner.ts). With IGNORE=1 curl reads to the end
 * (--ignore-content-length) and every download is whole.
 *
 *   nice -n 10 node build/test/helpers/as-test-user.js build/test/stress/curl-probe.js [downloaders] [seconds]
 */
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TestServer } from '../helpers/server.js';

const srv = await TestServer.start({ env: { SLUICE_WORKERS: process.env.WORKERS ?? '2' }, users: [{ name: 'u', password: 'password1' }] });
const curl = (args: string[], input?: Buffer) =>
  new Promise<{ code: number | null; out: Buffer; err: string }>((resolve) => {
    const p = spawn('curl', ['-s', '-S', '-k', '--ssl-reqd', '--user', 'u:password1', ...args]);
    const out: Buffer[] = [];
    let err = '';
    p.stdout.on('data', (d: Buffer) => out.push(d));
    p.stderr.on('data', (d: Buffer) => (err += d));
    p.stdin.end(input);
    p.on('close', (code) => resolve({ code, out: Buffer.concat(out), err }));
  });
/** A version that says its length on its first line. */
const version = (size: number) => Buffer.concat([Buffer.from(`${size}\n`), Buffer.alloc(size - String(size).length - 1, 7)]);
const url = `ftp://127.0.0.1:${srv.ftpPort}/f`;
mkdirSync(srv.home('u'), { recursive: true });
writeFileSync(join(srv.home('u'), 'f'), version(131386));
const until = Date.now() + Number(process.argv[3] ?? 20) * 1000;
const counts = { downloads: 0, short: 0, failed: 0 };
const writer = (async () => {
  while (Date.now() < until) await curl(['-T', '-', url], version(1000 + Math.floor(Math.random() * 200_000)));
})();
await Promise.all(
  Array.from({ length: Number(process.argv[2] ?? 6) }, async () => {
    while (Date.now() < until) {
      const r = await curl([...(process.env.IGNORE ? ['--ignore-content-length'] : []), url]);
      counts.downloads++;
      if (r.code !== 0) counts.failed++;
      else if (r.out.length !== Number(r.out.subarray(0, 8).toString().split('\n')[0])) counts.short++;
    }
  }),
);
await writer;
console.log(counts);
await srv.stop();
